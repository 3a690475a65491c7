"""Real images through a denoiser run and back: DDIM inversion then DDIM sampling at each
number of steps, and the exact DPM-Encoder (lsx.diffusion.properties.inversion_quality).

  python -m experiments.inversion --workdir workdirs/diffusion_sprites_2k --steps 10,50,100,200

Prints per-pixel MSE and the share of reconstructions the factor oracle (the grid oracle,
`--oracle_pool`) reads as the same factors as their originals; writes inversion.json in
the workdir.
"""
from __future__ import annotations

import json
import os

import jax
from absl import flags

from lsx import cli, metrics as lm, traversal_eval
from lsx.diffusion import properties

_WORKDIR = flags.DEFINE_string("workdir", None, "A denoiser run (configs/diffusion_*.py).")
_STEPS = flags.DEFINE_list("steps", ["10", "50", "100", "200"], "DDIM step counts.")
_IMAGES = flags.DEFINE_integer("images", 32, "Data images inverted (a fixed draw).")
_EXACT = flags.DEFINE_bool("exact", True, "Also the exact DPM-Encoder round trip.")
_SEED = flags.DEFINE_integer("seed", 7, "Key of the data images.")
_POOL = flags.DEFINE_integer("oracle_pool", 2, "The grid oracle's pooling (as "
                             "configs/hspace_sprites.py reads a 32 x 32 denoiser's images).")


def main(argv):
  del argv
  steps = [int(s) for s in _STEPS.value]
  if not steps or min(steps) < 1 or _IMAGES.value < 1:
    raise ValueError(f"--steps must list positive step counts and --images be >= 1, got "
                     f"{_STEPS.value} and {_IMAGES.value}.")
  setup, _, den = traversal_eval.load_denoiser(_WORKDIR.value, "inversion")
  oracle = lm.make_oracle(setup.dataset, "grid", pool=_POOL.value)
  images, _ = setup.dataset.sample(jax.random.key(_SEED.value), _IMAGES.value)
  out = {f"ddim_{n}": properties.inversion_quality(den, images, oracle, steps=n) for n in steps}
  if _EXACT.value:
    out["exact"] = properties.inversion_quality(den, images, oracle, exact=True)
  print(f"{'round trip':16s} {'MSE / pixel':>12s} {'same factors':>13s}")
  for name, r in out.items():
    print(f"{name:16s} {r['mse']:12.2e} {r['same_factors']:13.3f}")
  with open(os.path.join(_WORKDIR.value, "inversion.json"), "w") as f:
    json.dump({"images": _IMAGES.value, "seed": _SEED.value, **out}, f, indent=1)


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  cli.run(main)
