"""Sample quality of a denoiser run, per sampler, beside fresh data and a VAE's prior samples.

  python -m experiments.samples --workdir workdirs/diffusion_sprites --samplers ddim:10,ddim:50,ddpm --num 256

Each row is `lsx.metrics.sample_quality` on `--num` images: validity (the share the
factor oracle reads within the 99th percentile of blurred data) and the total-variation
distance of each factor's read distribution to the data's. The row "data" scores `--num`
fresh data images the same way: it is the floor a perfect generator reaches at this
number of samples (a TV distance between two finite samples is not 0; with 32 bins and
64 samples it is about 0.3), so a generator's TV is read against it. `--vae_workdir` adds
a VAE run's prior samples (rendered at the denoiser's size or averaged down to it).
Samplers: `ddim:N` (deterministic DDIM over N steps), `ddim:N:eta` (η > 0: stochastic),
`ddpm` (ancestral, every timestep). Writes sample_quality.json in the workdir.
"""
from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from lsx import cli, metrics as lm, traversal_eval
from lsx.diffusion import process
from lsx.metrics.sample_quality import sample_quality, validity_threshold

_WORKDIR = flags.DEFINE_string("workdir", None, "A denoiser run (configs/diffusion_*.py).")
_SAMPLERS = flags.DEFINE_list("samplers", ["ddim:10", "ddim:50", "ddim:100"],
                              "ddim:N, ddim:N:eta or ddpm (module doc).")
_NUM = flags.DEFINE_integer("num", 256, "Samples per row.")
_BATCH = flags.DEFINE_integer("batch", 256, "Samples generated per call.")
_REFERENCE = flags.DEFINE_integer("reference", 10000, "Fresh data factors each TV is "
                                  "measured against.")
_SEED = flags.DEFINE_integer("seed", 0, "Key of the noise (and of the data row).")
_POOL = flags.DEFINE_integer("oracle_pool", 2, "The grid oracle's pooling (as "
                             "configs/hspace_sprites.py reads a 32 x 32 denoiser's images).")
_STEP = flags.DEFINE_integer("step", None, "A checkpoint of the run (default: its latest).")
_VAE = flags.DEFINE_string("vae_workdir", "", "A VAE run of the same data: its prior "
                           "samples as a row.")


def parse_sampler(spec: str) -> tuple[str, int, float]:
  """('ddim', steps, eta) or ('ddpm', 0, 0.0) from a --samplers entry, or a ValueError."""
  parts = spec.strip().split(":")
  try:
    if parts == ["ddpm"]:
      return "ddpm", 0, 0.0
    if parts[0] == "ddim" and len(parts) in (2, 3):
      steps, eta = int(parts[1]), float(parts[2]) if len(parts) == 3 else 0.0
      if steps >= 1 and eta >= 0:
        return "ddim", steps, eta
  except ValueError:
    pass
  raise ValueError(f"--samplers entry {spec!r}: write ddim:N (N >= 1 steps), ddim:N:eta "
                   f"(eta >= 0) or ddpm.")


def sampler_fn(den, kind: str, steps: int, eta: float):
  """A jitted (x_T, key) -> images in [0, 1] for one parsed sampler."""
  if kind == "ddpm":
    def run(x_T, key):
      noises = jax.random.normal(key, (den.schedule.num_steps,) + x_T.shape)
      return process.to_image(process.ddpm_sample(den.eps_fn, den.schedule, x_T, noises))
  else:
    def run(x_T, key):
      return process.to_image(process.ddim_sample(den.eps_fn, den.schedule, x_T, steps,
                                                  eta=eta, rng=key))
  return jax.jit(run)


def generate(fn, shape, num: int, batch: int, seed: int) -> np.ndarray:
  """`num` images from `fn` in batches of `batch`, from the noise of key `seed`."""
  key = jax.random.key(seed)
  out = []
  for i, start in enumerate(range(0, num, batch)):
    n = min(batch, num - start)
    k_x, k_n = jax.random.split(jax.random.fold_in(key, i))
    out.append(np.asarray(fn(jax.random.normal(k_x, (n,) + shape), k_n)))
  return np.concatenate(out)


def main(argv):
  del argv
  samplers = [(s, *parse_sampler(s)) for s in _SAMPLERS.value]
  if _NUM.value < 1 or _BATCH.value < 1 or _REFERENCE.value < 1:
    raise ValueError(f"--num, --batch and --reference must be >= 1, got {_NUM.value}, "
                     f"{_BATCH.value}, {_REFERENCE.value}.")
  setup, state, den = traversal_eval.load_denoiser(_WORKDIR.value, "samples", _STEP.value)
  vae = None
  if _VAE.value:  # refused (absent, wrong size) before anything is sampled
    if not os.path.exists(os.path.join(_VAE.value, "config.json")):
      raise ValueError(f"--vae_workdir {_VAE.value} holds no run (no config.json): train "
                       f"one first (python -m experiments.train --config configs/...).")
    vae = traversal_eval.vae_prior(_VAE.value, "", den.image_shape)
  oracle = lm.make_oracle(setup.dataset, "grid", pool=_POOL.value)
  threshold = validity_threshold(oracle, setup.dataset, jax.random.key(0))
  score = lambda x: sample_quality(jnp.asarray(x), oracle, setup.dataset, threshold=threshold,
                                   reference=_REFERENCE.value, rng=jax.random.key(1))
  rows = {}
  data, _ = setup.dataset.sample(jax.random.key(_SEED.value + 1000), _NUM.value)
  rows["data"] = score(data)
  for spec, kind, steps, eta in samplers:
    t0 = time.time()
    images = generate(sampler_fn(den, kind, steps, eta), den.image_shape, _NUM.value,
                      _BATCH.value, _SEED.value)
    rows[f"denoiser {spec}"] = {**score(images), "seconds": round(time.time() - t0, 1)}
  if vae is not None:
    name, gen = vae
    rows[name] = score(gen(jax.random.key(_SEED.value), _NUM.value))
  names = list(setup.dataset.factor_names)
  print(f"{'samples':40s} {'validity':>8s} {'TV mean':>8s}  " + " ".join(f"{n[:6]:>6s}" for n in names))
  for name, q in rows.items():
    print(f"{name:40s} {q['validity']:8.3f} {q['tv_mean']:8.3f}  "
          + " ".join(f"{q['tv'][n]:6.3f}" for n in names))
  with open(os.path.join(_WORKDIR.value, "sample_quality.json"), "w") as f:
    json.dump({"num": _NUM.value, "reference": _REFERENCE.value, "seed": _SEED.value,
               "threshold": threshold, "step": int(np.asarray(state.step)), "rows": rows},
              f, indent=1)


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  cli.run(main)
