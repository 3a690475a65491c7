"""Post-hoc potential-flow training step: the forms of lsx.flows side by side in one run.

  python benchmarks/flows_throughput.py                 # on workdirs/vae_sprites_wide (d = 226)
  python benchmarks/flows_throughput.py --batch 64 --widths 32

The config is configs/flows_sprites.py:reference (the public objective, K = 16, 5 path
steps) on the wide sprites VAE (trained first when absent). Rows: lsx's potentials with
lsx's MLP frame classifier, the public potentials with it, and the public conv frame
classifier at each width of --widths (0: the latent width, as the public code). Each row
times a jitted loss-and-gradient on one batch of z ~ N(0, I) after one call that compiles;
prints seconds a step, steps/s and the ratio to the first row.
"""
from __future__ import annotations

import argparse
import time

import jax


def step_time(opts: dict, batch: int, reps: int) -> tuple[float, float]:
  from lsx.train import config as config_lib, ensure_trained
  from lsx.runs import build
  c = config_lib.load_config("configs/flows_sprites.py:reference")
  ensure_trained(c.decoder.workdir, c.decoder.config)
  with c.unlocked():
    c.flows.update(opts)
  setup = build(c)
  params = setup.init_state().params
  z, _ = setup.sample(jax.random.key(0), batch)
  fn = jax.jit(jax.grad(lambda p: setup.objective.loss(p, z, jax.random.key(1), setup.hp)[0]))
  t = time.perf_counter()
  jax.block_until_ready(fn(params))
  compile_s = time.perf_counter() - t
  t = time.perf_counter()
  for _ in range(reps):
    g = fn(params)
  jax.block_until_ready(g)
  return (time.perf_counter() - t) / reps, compile_s


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--batch", type=int, default=256)
  ap.add_argument("--reps", type=int, default=3)
  ap.add_argument("--widths", type=int, nargs="*", default=[32, 0],
                  help="conv frame classifier widths (0: the latent width)")
  a = ap.parse_args()
  rows = [("lsx potentials, MLP classifier", dict(potential_net="lsx", speed="log", classifier="mlp")),
          ("public potentials, MLP classifier", dict(potential_net="reference", speed="direct",
                                                     classifier="mlp"))]
  rows += [(f"public potentials, conv classifier width {w or 'd'}",
            dict(potential_net="reference", speed="direct", classifier="conv", classifier_width=w))
           for w in a.widths]
  print(f"device: {jax.devices()[0].device_kind} x {jax.device_count()}; batch {a.batch}")
  print(f"| form | s / step | steps/s | compile s | ratio to row 1 |\n| --- | --- | --- | --- | --- |")
  first = None
  for name, opts in rows:
    s, comp = step_time(opts, a.batch, a.reps)
    first = first or s
    print(f"| {name} | {s:.3f} | {1 / s:.2f} | {comp:.1f} | {s / first:.2f} |", flush=True)


if __name__ == "__main__":
  main()
