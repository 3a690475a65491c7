"""Sparse-autoencoder training throughput: lsx against plain PyTorch, and a sweep against
sequential runs, measured side by side in one run.

  python benchmarks/sae_throughput.py                      # d=512, 8192 latents, k=32, batch 4096
  python benchmarks/sae_throughput.py --small              # d=128, 2048 latents, batch 1024

Model and loss as lsx.sae's TopK SAE: pre = (x - b_dec) W_enc + b_enc, the k largest
ReLU'd, x^ = f W_dec + b_dec, loss = sum-of-squares error + aux_coeff * AuxK, Adam,
decoder rows renormalized after every step. No latent is dead in these few steps, so
both skip AuxK (it is 0 without gradient then). The PyTorch model is the plain dense
form (matmuls, torch.topk, scatter); lsx computes the same numbers with k-of-m gathers
for the decoder and the encoder's gradient (lsx.sae.bottlenecks.sparse_topk/sparse_decode). Fixed random activations; the first steps
(compilation, allocation) are excluded. Prints steps/s, activations/s, peak resident
memory, then `ratio lsx/pytorch: R` and `ratio sweep/sequential: R` (16 members, k x
seed, reading one batch per step, against the same 16 runs one after another).
PyTorch is a benchmark-only extra: pip install "torch==2.13.0+cpu".
"""
from __future__ import annotations

import argparse
import os
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np


def peak_rss_gb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def lsx_setup(d, m, k_max, batch, members=None, ks=None, seeds=None, chunk=1, strategy="map"):
  from lsx import sae as ls
  from lsx.train import TrainState, make_optimizer, make_train_step
  from lsx.train.state import make_shared_chunk, make_train_chunk
  from lsx.train.sweep import lift, stack_init
  x_all = jax.random.normal(jax.random.key(0), (8, batch, d))
  sample = lambda rng, n: (x_all[0, :n], None)
  sample_at = lambda t, n: (x_all[t % 8, :n], None)
  sae = ls.SAE(dim=d, max_width=m, bottleneck="topk", k_max=k_max, aux_k=min(512, m),
               dead_tokens=10 ** 9)
  obj = ls.make_objective(sae, sample, median_samples=min(batch, 1024))
  opt = make_optimizer("adam")
  step = make_train_step(obj, opt)
  init = lambda rng: TrainState.create(obj.init(rng), opt, jax.random.fold_in(rng, 1))
  hp = {"k": jnp.float32(k_max), "width": jnp.float32(m), "aux_coeff": jnp.float32(1 / 32),
        "lr": jnp.float32(1e-4)}
  if members is None:
    return init(jax.random.key(0)), hp, make_train_chunk(step, sample, batch, chunk,
                                                           sample_at=sample_at), init, step
  states = stack_init(init, jnp.asarray(seeds, jnp.uint32))
  hps = {k: jnp.full((members,), v) for k, v in hp.items()}
  hps["k"] = jnp.asarray(ks, jnp.float32)
  fn = make_shared_chunk(step, sample_at, batch, chunk, lift(strategy))
  return states, hps, fn, init, step


def time_chunk(chunk, state, hp, steps, per_call=1):
  fn = jax.jit(chunk, donate_argnums=0)
  state, _ = fn(state, hp)  # compile + first step
  jax.block_until_ready(state)
  t = time.perf_counter()
  for _ in range(steps):
    state, m = fn(state, hp)
  jax.block_until_ready(state)
  return steps * per_call / (time.perf_counter() - t)


def bench_torch(d, m, k, batch, steps):
  import torch
  torch.manual_seed(0)
  x = torch.randn(batch, d)
  w_dec = torch.nn.functional.normalize(torch.randn(m, d), dim=1)
  params = {"W_enc": w_dec.T.clone().requires_grad_(), "b_enc": torch.zeros(m, requires_grad=True),
            "W_dec": w_dec.clone().requires_grad_(), "b_dec": x.median(0).values.clone().requires_grad_()}
  opt = torch.optim.Adam(params.values(), lr=1e-4)
  dead = torch.zeros(m, dtype=torch.bool)  # none dead in a few steps: AuxK sees no latent
  aux_k = min(512, m)

  def step():
    pre = (x - params["b_dec"]) @ params["W_enc"] + params["b_enc"]
    vals, idx = torch.topk(pre, k, dim=-1)
    f = torch.zeros_like(pre).scatter(-1, idx, torch.relu(vals))
    x_hat = f @ params["W_dec"] + params["b_dec"]
    mse = ((x - x_hat) ** 2).sum(-1).mean()
    loss = mse
    if dead.any():  # AuxK only while some latent is dead, as lsx (and SAELens) do
      pre_dead = torch.where(dead, pre, torch.full_like(pre, -float("inf")))
      av, ai = torch.topk(pre_dead, aux_k, dim=-1)
      fa = torch.zeros_like(pre).scatter(-1, ai, torch.relu(torch.nan_to_num(av, neginf=0.0)))
      e = (x - x_hat).detach()
      loss = loss + ((e - fa @ params["W_dec"]) ** 2).sum(-1).mean() / 32
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    with torch.no_grad():
      params["W_dec"].div_(params["W_dec"].norm(dim=1, keepdim=True).clamp_min(1e-8))
    return loss

  step()
  t = time.perf_counter()
  for _ in range(steps):
    step()
  return steps / (time.perf_counter() - t)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--small", action="store_true")
  ap.add_argument("--steps", type=int, default=5)
  ap.add_argument("--members", type=int, default=16)
  ap.add_argument("--skip-torch", action="store_true")
  ap.add_argument("--skip-sweep", action="store_true")
  ap.add_argument("--chunk", type=int, default=None,
                  help="training steps per compiled call (default: 5 with --small, else 1)")
  ap.add_argument("--strategy", default="auto", choices=("auto", "vmap", "map"),
                  help="how the sweep lifts the step over members (auto: map on CPU, as "
                       "lsx.train.sweep picks, vmap on accelerators)")
  a = ap.parse_args()
  d, m, k, batch = (128, 2048, 32, 1024) if a.small else (512, 8192, 32, 4096)
  chunk_len = a.chunk or (5 if a.small else 1)
  strategy = a.strategy if a.strategy != "auto" else ("map" if jax.default_backend() == "cpu" else "vmap")
  dev = jax.devices()[0]
  print(f"device: {dev.device_kind} ({jax.default_backend()}), {os.cpu_count()} cores; "
        f"TopK SAE d={d}, {m} latents, k={k}, batch {batch}; {a.steps} timed calls of "
        f"{chunk_len} steps; sweep lifted by {strategy}")
  rows = []
  state, hp, chunk, _, _ = lsx_setup(d, m, k, batch, chunk=chunk_len)
  lsx_rate = time_chunk(chunk, state, hp, a.steps, chunk_len)
  rows.append(("lsx, one SAE", lsx_rate, 1))
  del state
  torch_rate = None
  if not a.skip_torch:
    try:
      import torch
      torch.set_num_threads(os.cpu_count() or 1)
      torch_rate = bench_torch(d, m, k, batch, a.steps * chunk_len)
      rows.append((f"PyTorch {torch.__version__}, one SAE", torch_rate, 1))
    except ImportError:
      print("(PyTorch not installed: pip install \"torch==2.13.0+cpu\" for its row)")
  seq_rate = sweep_rate = None
  if not a.skip_sweep:
    n = a.members
    ks = [k // 2 + (k // 2) * (i % 4) // 3 for i in range(n)]  # 4 values of k in [k/2, k]
    seeds = [i // 4 for i in range(n)]
    states, hps, sweep_chunk, init, step = lsx_setup(d, m, k, batch, n, ks, seeds, chunk_len,
                                                     strategy)
    sweep_rate = time_chunk(sweep_chunk, states, hps, a.steps, chunk_len)
    del states
    rows.append((f"lsx sweep, {n} members (k x seed, {strategy}), one batch per step", sweep_rate, n))
    # the same 16 runs one after another: one compiled single-run step, reused
    one, one_hp, one_chunk, _, _ = lsx_setup(d, m, k, batch, chunk=chunk_len)
    fn = jax.jit(one_chunk, donate_argnums=0)
    s, _ = fn(one, one_hp)
    jax.block_until_ready(s)
    elapsed = 0.0
    for i in range(n):  # each run's init outside the timing, as the sweep's is
      s = jax.block_until_ready(init(jax.random.key(seeds[i])))
      h = dict(one_hp, k=jnp.float32(ks[i]))
      t = time.perf_counter()
      for _ in range(a.steps):
        s, _ = fn(s, h)
      jax.block_until_ready(s)
      elapsed += time.perf_counter() - t
    seq_rate = n * a.steps * chunk_len / elapsed
    rows.append((f"lsx sequential, the same {n} runs one after another", seq_rate, 1))
  print("| what | member-steps/s | activations/s |")
  print("| --- | --- | --- |")
  for name, rate, mult in rows:
    print(f"| {name} | {rate * mult:.3f} | {rate * mult * batch:,.0f} |")
  print(f"peak resident memory: {peak_rss_gb():.2f} GB")
  if torch_rate:
    print(f"ratio lsx/pytorch: {lsx_rate / torch_rate:.2f}")
  if sweep_rate:
    print(f"ratio sweep/sequential: {sweep_rate * a.members / seq_rate:.2f}")


if __name__ == "__main__":
  main()
