"""Training throughput of the default conv beta-VAE: lsx against plain PyTorch.

Same network (Locatello et al. conv encoder/decoder, d=10), batch 64 of 64x64x1,
Bernoulli likelihood, Adam; one optimizer step per image batch, fixed input batch for
both. Prints a table and ends with `ratio lsx/pytorch: R`.

  python benchmarks/train_throughput.py [--steps 40] [--chunk 10] [--layers]
PyTorch is a benchmark-only extra: pip install torch==2.13.0 (CPU build).
`--layers` first prints forward+backward milliseconds of every conv layer of the network
for each lsx form (`s2d`, `patch`, `xla`, `native`) and PyTorch. The cotangent is a runtime input:
with a constant one XLA folds half of the backward pass away and the numbers flatter.
"""
from __future__ import annotations

import argparse
import platform
import time

import jax
import functools

import jax.numpy as jnp


PEAKS = {"H100": {"float32": 67e12, "bfloat16": 989e12},  # dense, spec sheets
         "H200": {"float32": 67e12, "bfloat16": 989e12},
         "A100": {"float32": 19.5e12, "bfloat16": 312e12}}


def peak_flops(dtype: str) -> tuple[float, str]:
  """The device's peak FLOP/s for `dtype`: a GPU's spec sheet, or on a CPU the measured
  throughput of a 2048 x 2048 matmul (the best this host's XLA reaches)."""
  kind = jax.devices()[0].device_kind
  for name, peaks in PEAKS.items():
    if name in kind:
      return peaks[dtype], f"{kind} spec sheet, dense {dtype}"
  a = jnp.ones((2048, 2048), jnp.dtype(dtype))
  mm = jax.jit(lambda a: a @ a)
  jax.block_until_ready(mm(a))
  t = time.perf_counter()
  for _ in range(10):
    out = mm(a)
  jax.block_until_ready(out)
  return 10 * 2 * 2048 ** 3 / (time.perf_counter() - t), f"measured 2048x2048 {dtype} matmul"


def bench_lsx(conv_impl: str, steps: int, chunk: int, batch: int = 64,
              precision: str = "float32") -> tuple[float, float]:
  """(images/s, FLOPs per step from XLA's cost analysis of the compiled step)."""
  from lsx import models
  from lsx.train import TrainState, make_optimizer, make_train_step, xla_options

  model = models.make_autoencoder((64, 64, 1), 10, "conv", "gaussian", conv_impl)
  obj = models.make_objective("beta_vae", model)
  opt = make_optimizer("adam")
  from lsx.train.state import PRECISIONS
  step = make_train_step(obj, opt, PRECISIONS[precision])
  hp = {"beta": jnp.float32(1.0), "lr": jnp.float32(1e-4)}
  x = (jax.random.uniform(jax.random.key(1), (batch, 64, 64, 1)) > 0.8).astype(jnp.float32)

  @functools.partial(xla_options.jit, arch="conv")
  def run(state, x, key):
    def body(s, k):
      return step(s, hp, x, k)
    return jax.lax.scan(body, state, jax.random.split(key, chunk))

  state = TrainState.create(model.init(jax.random.key(0)), opt, jax.random.key(2))
  cost = jax.jit(step).lower(state, hp, x, jax.random.key(0)).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get("flops", float("nan")))
  state, _ = run(state, x, jax.random.key(3))  # compile + warm up
  jax.block_until_ready(state)
  n = max(1, steps // chunk)
  t = time.perf_counter()
  for i in range(n):
    state, m = run(state, x, jax.random.key(i))
  jax.block_until_ready(state)
  return batch * n * chunk / (time.perf_counter() - t), flops


def bench_torch(steps: int, batch: int = 64) -> float | None:
  try:
    import torch
    import torch.nn as tnn
    import torch.nn.functional as F
  except ImportError:
    return None
  torch.manual_seed(0)
  d, c = 10, 1
  enc = tnn.Sequential(
      tnn.Conv2d(c, 32, 4, 2, 1), tnn.ReLU(), tnn.Conv2d(32, 32, 4, 2, 1), tnn.ReLU(),
      tnn.Conv2d(32, 64, 4, 2, 1), tnn.ReLU(), tnn.Conv2d(64, 64, 4, 2, 1), tnn.ReLU(),
      tnn.Flatten(), tnn.Linear(1024, 256), tnn.ReLU(), tnn.Linear(256, 2 * d))
  dec = tnn.Sequential(
      tnn.Linear(d, 256), tnn.ReLU(), tnn.Linear(256, 1024), tnn.ReLU(), tnn.Unflatten(1, (64, 4, 4)),
      tnn.ConvTranspose2d(64, 64, 4, 2, 1), tnn.ReLU(), tnn.ConvTranspose2d(64, 32, 4, 2, 1), tnn.ReLU(),
      tnn.ConvTranspose2d(32, 32, 4, 2, 1), tnn.ReLU(), tnn.ConvTranspose2d(32, c, 4, 2, 1))
  params = list(enc.parameters()) + list(dec.parameters())
  opt = torch.optim.Adam(params, 1e-4)
  x = (torch.rand(batch, c, 64, 64) > 0.8).float()

  def step():
    opt.zero_grad()
    h = enc(x)
    mu, lv = h[:, :d], h[:, d:]
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * lv)
    rec = F.binary_cross_entropy_with_logits(dec(z), x, reduction="sum") / batch
    kl = 0.5 * (mu ** 2 + lv.exp() - 1 - lv).sum(1).mean()
    (rec + kl).backward()
    opt.step()

  for _ in range(5):
    step()
  t = time.perf_counter()
  for _ in range(steps):
    step()
  return batch * steps / (time.perf_counter() - t)


LAYERS = [("conv", 64, 1, 32), ("conv", 32, 32, 32), ("conv", 16, 32, 64), ("conv", 8, 64, 64),
          ("convT", 4, 64, 64), ("convT", 8, 64, 32), ("convT", 16, 32, 32), ("convT", 32, 32, 1)]


def _ms(fn, *args, n=20):
  jax.block_until_ready(fn(*args))
  t = time.perf_counter()
  for _ in range(n):
    out = fn(*args)
  jax.block_until_ready(out)
  return (time.perf_counter() - t) / n * 1e3


def bench_layers(batch: int = 64):
  """Forward+backward ms per conv layer (input and weight gradients), lsx forms vs PyTorch."""
  from lsx.nn import conv_transpose4s2, conv4s2
  from lsx.nn.conv import gemm_form
  try:
    import torch
  except ImportError:
    torch = None
  forms = ("s2d", "patch", "xla", "native")
  print(f"{'layer (batch %d, fwd+bwd ms)' % batch:<32}" + "".join(f"{f:>8}" for f in forms)
        + f"{'gemm picks':>11}{'pytorch':>9}")
  for kind, h, c, o in LAYERS:
    op = conv4s2 if kind == "conv" else conv_transpose4s2
    x = jax.random.normal(jax.random.key(0), (batch, h, h, c))
    w = 0.1 * jax.random.normal(jax.random.key(1), (4, 4, c, o))
    ct = op(x, w, impl="xla")
    row = []
    for f in forms:
      vjp = jax.jit(lambda x, w, ct, f=f: jax.vjp(lambda x, w: op(x, w, impl=f), x, w)[1](ct))
      row.append(_ms(vjp, x, w, ct))
    picked = gemm_form(kind == "convT", c, o)
    t_ms = float("nan")
    if torch is not None:
      tx = torch.randn(batch, c, h, h, requires_grad=True)
      m = (torch.nn.Conv2d if kind == "conv" else torch.nn.ConvTranspose2d)(c, o, 4, 2, 1)
      for _ in range(3):
        m(tx).sum().backward()
      t = time.perf_counter()
      for _ in range(20):
        m(tx).sum().backward()
      t_ms = (time.perf_counter() - t) / 20 * 1e3
    name = f"{kind} {h}x{h}x{c}->{o}"
    print(f"{name:<32}" + "".join(f"{v:8.1f}" for v in row) + f"{picked:>11}{t_ms:9.1f}")


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--steps", type=int, default=40)
  p.add_argument("--chunk", type=int, default=10)
  p.add_argument("--skip-xla", action="store_true", help="skip the lax.conv reference row")
  p.add_argument("--layers", action="store_true", help="first print per-layer fwd+bwd times")
  p.add_argument("--bf16", action="store_true", help="add the train.precision='bfloat16' row")
  a = p.parse_args()
  dev = jax.devices()[0]
  print(f"device: {dev.device_kind} ({dev.platform}), {jax.device_count()} device(s); "
        f"host {platform.machine()} {platform.processor() or ''}; jax {jax.__version__}")
  if a.layers:
    bench_layers()
  rows = []
  torch_ips = bench_torch(a.steps)
  rows.append(("pytorch (plain nn.Conv2d/ConvTranspose2d)", torch_ips, None, "float32"))
  lsx_ips, flops = bench_lsx("gemm", a.steps, a.chunk)
  rows.append(("lsx (conv_impl='gemm', default)", lsx_ips, flops, "float32"))
  rows.append(("lsx (conv_impl='native')", *bench_lsx("native", a.steps, a.chunk), "float32"))
  if not a.skip_xla:
    rows.append(("lsx (conv_impl='xla', lax.conv)", *bench_lsx("xla", a.steps, a.chunk), "float32"))
  if a.bf16:
    rows.append(("lsx (gemm, train.precision='bfloat16')",
                 *bench_lsx("gemm", a.steps, a.chunk, precision="bfloat16"), "bfloat16"))
  peaks = {dt: peak_flops(dt) for dt in sorted({r[3] for r in rows})}
  for dt, (peak, how) in peaks.items():
    print(f"peak {dt}: {peak / 1e9:,.0f} GFLOP/s ({how})")
  print(f"{'implementation':<45} {'images/s':>10} {'MFU':>7}")
  for name, ips, fl, dt in rows:
    mfu = "" if fl is None else f"{fl * ips / 64 / peaks[dt][0]:7.1%}"
    print(f"{name:<45} {('n/a' if ips is None else f'{ips:.1f}'):>10} {mfu:>7}")
  if torch_ips is None:
    print("pytorch not installed (pip install torch==2.13.0): no ratio")
    print("ratio lsx/pytorch: nan")
  else:
    print(f"ratio lsx/pytorch: {lsx_ips / torch_ips:.2f}")


if __name__ == "__main__":
  main()
