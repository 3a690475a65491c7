"""The denoiser's training throughput: lsx against the same U-Net in plain PyTorch, and
DDIM sampling, measured side by side in one run.

  python benchmarks/diffusion_throughput.py              # configs/diffusion_sprites.py's U-Net
  python benchmarks/diffusion_throughput.py --steps 10 --batch 64

Both sides train configs/diffusion_sprites.py's U-Net (lsx.diffusion.unet: widths 32-64-64,
timestep MLP of 128, GroupNorm/SiLU residual blocks, stride-2 4x4 down and transposed
up convolutions, h = the middle block's output) on 32 x 32 single-channel images: the
ε-prediction loss at uniform timesteps of DDPM's linear schedule, Adam 2e-4 with the
gradient clipped to norm 1, an EMA of the weights after every step. lsx trains through
its runner's compiled chunk (images rendered on device inside it); PyTorch on a fixed
batch (its data cost is left out, in PyTorch's favour). The first calls (compilation,
allocation) are excluded. One lsx row per `--impls` form (diffusion.conv_impl: 'native',
the configs' default, and 'gemm'). Prints steps/s, images/s, the ratio of each form, then
`ratio lsx/pytorch: R` (the first form) and DDIM images/s (`--ddim-steps` steps, 64
images). One core: `OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/diffusion_throughput.py`.
PyTorch is a benchmark-only extra: pip install "torch==2.13.0+cpu".
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def lsx_steps_per_s(batch: int, steps: int, chunk: int, impl: str) -> float:
  from configs import common
  from lsx.diffusion.family import build_diffusion
  from lsx.train import TrainState, make_train_step
  from lsx.train.config import set_fields
  from lsx.train.state import make_train_chunk
  config = set_fields(common.load("configs/diffusion_sprites.py"),
                      **{"train.batch_size": batch, "diffusion.conv_impl": impl})
  setup = build_diffusion(config)
  obj, opt = setup.objective, setup.optimizer
  # the EMA starts as the weights' own arrays: copied, so the chunk may donate both
  state = jax.tree.map(jnp.copy, TrainState.create(obj.init(jax.random.key(0)), opt,
                                                   jax.random.key(1)))
  hp = {k: jnp.float32(v) for k, v in setup.hp.items()}
  fn = jax.jit(make_train_chunk(make_train_step(obj, opt), setup.dataset.sample, batch, chunk),
               donate_argnums=0)
  state, _ = fn(state, hp)
  jax.block_until_ready(state)
  t = time.perf_counter()
  for _ in range(steps):
    state, _ = fn(state, hp)
  jax.block_until_ready(state)
  return steps * chunk / (time.perf_counter() - t)


def lsx_ddim_images_per_s(ddim_steps: int, impl: str, n: int = 64) -> float:
  from configs import common
  from lsx.diffusion import process
  from lsx.diffusion.family import build_diffusion, denoiser
  from lsx.train.config import set_fields
  setup = build_diffusion(set_fields(common.load("configs/diffusion_sprites.py"),
                                    **{"diffusion.conv_impl": impl}))
  params = setup.objective.init(jax.random.key(0))
  den = denoiser(setup, params, {k: jnp.float32(v) for k, v in setup.hp.items()})
  fn = jax.jit(lambda x: process.ddim_sample(den.eps_fn, den.schedule, x, ddim_steps))
  x = jax.random.normal(jax.random.key(0), (n,) + den.image_shape)
  jax.block_until_ready(fn(x))
  t = time.perf_counter()
  jax.block_until_ready(fn(x))
  return n / (time.perf_counter() - t)


def torch_steps_per_s(batch: int, steps: int, widths=(32, 64, 64), emb_dim: int = 128) -> float:
  import torch
  from torch import nn
  torch.manual_seed(0)

  def temb(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32) / half)
    a = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(a), torch.sin(a)], -1)

  class Res(nn.Module):
    def __init__(self, c_in, c):
      super().__init__()
      self.n1, self.c1 = nn.GroupNorm(min(8, c_in), c_in), nn.Conv2d(c_in, c, 3, padding=1)
      self.e = nn.Linear(emb_dim, c)
      self.n2, self.c2 = nn.GroupNorm(min(8, c), c), nn.Conv2d(c, c, 3, padding=1)
      self.skip = nn.Identity() if c_in == c else nn.Conv2d(c_in, c, 1)

    def forward(self, x, e):
      h = self.c1(nn.functional.silu(self.n1(x))) + self.e(nn.functional.silu(e))[:, :, None, None]
      return self.skip(x) + self.c2(nn.functional.silu(self.n2(h)))

  class UNet(nn.Module):
    def __init__(self):
      super().__init__()
      self.emb = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
      self.stem = nn.Conv2d(1, widths[0], 3, padding=1)
      self.down = nn.ModuleList([Res(a, a) for a in widths[:-1]])
      self.pool = nn.ModuleList([nn.Conv2d(a, b, 4, 2, 1) for a, b in zip(widths[:-1], widths[1:])])
      self.mid = Res(widths[-1], widths[-1])
      rev = widths[::-1]
      self.upc = nn.ModuleList([nn.ConvTranspose2d(a, b, 4, 2, 1) for a, b in zip(rev[:-1], rev[1:])])
      self.up = nn.ModuleList([Res(2 * b, b) for b in rev[1:]])
      self.out_n, self.out = nn.GroupNorm(min(8, widths[0]), widths[0]), nn.Conv2d(widths[0], 1, 3, padding=1)

    def forward(self, x, t):
      e = self.emb(temb(t, emb_dim))
      h, skips = self.stem(x), []
      for res, pool in zip(self.down, self.pool):
        h = res(h, e)
        skips.append(h)
        h = pool(h)
      h = self.mid(h, e)
      for upc, res in zip(self.upc, self.up):
        h = res(torch.cat([upc(h), skips.pop()], 1), e)
      return self.out(nn.functional.silu(self.out_n(h)))

  net = UNet()
  ema = [p.detach().clone() for p in net.parameters()]
  opt = torch.optim.Adam(net.parameters(), lr=2e-4)
  betas = torch.linspace(1e-4, 0.02, 1000)
  abar = torch.cumprod(1 - betas, 0)
  x0 = torch.rand(batch, 1, 32, 32) * 2 - 1

  def step():
    t = torch.randint(0, 1000, (batch,))
    eps = torch.randn_like(x0)
    a = abar[t][:, None, None, None]
    loss = ((net(a.sqrt() * x0 + (1 - a).sqrt() * eps, t) - eps) ** 2).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    opt.step()
    with torch.no_grad():
      for e, p in zip(ema, net.parameters()):
        e.mul_(0.999).add_(p.detach(), alpha=0.001)

  step()
  step()
  t0 = time.perf_counter()
  for _ in range(steps):
    step()
  return steps / (time.perf_counter() - t0)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--batch", type=int, default=32)
  ap.add_argument("--steps", type=int, default=4, help="timed calls (lsx: of --chunk steps)")
  ap.add_argument("--chunk", type=int, default=5)
  ap.add_argument("--ddim-steps", type=int, default=20)
  ap.add_argument("--impls", default="native,gemm",
                  help="lsx conv forms (diffusion.conv_impl), the first one the ratio's")
  ap.add_argument("--skip-torch", action="store_true")
  a = ap.parse_args()
  impls = a.impls.split(",")
  dev = jax.devices()[0]
  print(f"device: {dev.device_kind} ({jax.default_backend()}), {os.cpu_count()} cores "
        f"({len(os.sched_getaffinity(0))} usable); U-Net of configs/diffusion_sprites.py, "
        f"batch {a.batch}, 32 x 32 x 1")
  rows = [(f"lsx, conv_impl={i!r}", lsx_steps_per_s(a.batch, a.steps, a.chunk, i))
          for i in impls]
  if not a.skip_torch:
    import torch
    rows.append((f"PyTorch {torch.__version__} ({torch.get_num_threads()} threads)",
                 torch_steps_per_s(a.batch, a.steps * a.chunk)))
  print(f"{'train step':44s} {'steps/s':>8s} {'images/s':>9s}")
  for name, s in rows:
    print(f"{name:44s} {s:8.2f} {s * a.batch:9.1f}")
  if not a.skip_torch:
    for name, s in rows[:-1]:
      print(f"ratio lsx/pytorch ({name[5:]}): {s / rows[-1][1]:.2f}")
    print(f"ratio lsx/pytorch: {rows[0][1] / rows[-1][1]:.2f}")
  for i in impls:
    print(f"DDIM sampling (conv_impl={i!r}), {a.ddim_steps} steps, 64 images: "
          f"{lsx_ddim_images_per_s(a.ddim_steps, i):.1f} images/s")


if __name__ == "__main__":
  main()
