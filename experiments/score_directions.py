"""Score the reference directions of a trained decoder with direction-factor attribution.

  python -m experiments.score_directions --workdir workdirs/betavae_sprites

Traverses N anchors (encoder means) along (a) the latent axes and (b) K random unit
directions over steps -S..S (in units of the latents' std), reads the factors of the
decoded images with the nearest-neighbour oracle over the dataset's rendered grid, and
writes directions_baseline.json with D, C, direction-MIG, coverage and off-manifold
distance for each, and variation predictability (VP). These are the reference rows every direction-discovery method is
compared against.
"""
from __future__ import annotations

import json
import logging
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from lsx import directions as ld, metrics as lm
from lsx.train import load_run

_WORKDIR = flags.DEFINE_string("workdir", None, "A trained single-run workdir.")
_ANCHORS = flags.DEFINE_integer("anchors", 8, "Anchor images.")
_STEPS = flags.DEFINE_integer("steps", 3, "S: traverse -S..S steps.")
_SPAN = flags.DEFINE_float("span", 2.0, "Traversal reaches +-span latent standard deviations.")
_VP = flags.DEFINE_integer("vp_anchors", 300, "Anchors per direction for VP pairs (10% train).")
_SEEDS = flags.DEFINE_integer("random_seeds", 3, "Random direction sets.")
_READABLE = flags.DEFINE_bool(
    "readable_orientation", True,
    "An orientation read from an image no turn changes (a round blob) is not a change "
    "(lsx.metrics.rotation_anisotropy; False: every reading counts).")


def score_directions(decode, oracle, anchors, directions, steps, ds, vp_anchors):
  images = lm.traverse_linear(decode, anchors, directions, steps)
  (factors, dist, aniso), = ld.read_in_one_pass(oracle, [images])
  res = lm.dataset_dfa(ds, factors, np.asarray(steps), off_manifold=dist,
                       anisotropy=aniso if _READABLE.value else None)
  diffs, labels = lm.variation_pairs(decode, vp_anchors, directions, jax.random.key(11),
                                     max_step=float(steps[-1]), min_step=float(steps[-1]) / 4)
  res["vp"] = lm.variation_predictability(diffs, labels, jax.random.key(12))["vp"]
  return res


def main(argv):
  del argv
  logging.getLogger("absl").setLevel(logging.WARNING)
  t0 = time.perf_counter()
  setup, state = load_run(_WORKDIR.value)
  ds, model, params = setup.dataset, setup.model, state.params
  if not getattr(ds, "has_render", False):
    raise SystemExit("the factor oracle needs a dataset with a rendered factor grid")
  images, _ = ds.sample(jax.random.key(7), 2000)
  z = np.asarray(jax.jit(model.represent)(params, images))
  active = ld.active_latents(z)
  sd = z.std(0)[active].mean()  # the active latents' scale
  anchors = jnp.asarray(z[:_ANCHORS.value])
  vp_anchors = jnp.asarray(z[-_VP.value:])
  steps = jnp.linspace(-_SPAN.value * sd, _SPAN.value * sd, 2 * _STEPS.value + 1)
  decode = jax.jit(lambda zz: jax.nn.sigmoid(model.decode(params, zz)))
  oracle = lm.grid_oracle(ds)
  d = z.shape[1]
  rows = {}
  axes = np.eye(d)[active]
  rows["latent axes (active)"] = score_directions(decode, oracle, anchors, jnp.asarray(axes),
                                                  steps, ds, vp_anchors)
  for s in range(_SEEDS.value):
    dirs = jax.random.normal(jax.random.key(100 + s), (axes.shape[0], d))
    rows[f"random (seed {s})"] = score_directions(decode, oracle, anchors, dirs, steps, ds,
                                                  vp_anchors)
  keep = ("disentanglement", "completeness", "direction_mig", "coverage", "vp", "off_manifold")
  out = {name: {k: r[k] for k in keep} | {"matches": r["matches"]} for name, r in rows.items()}
  out["factor_names"] = list(ds.factor_names)
  with open(os.path.join(_WORKDIR.value, "directions_baseline.json"), "w") as f:
    json.dump(out, f, indent=1)
  print(f"{'directions':24s} " + " ".join(f"{k[:13]:>13s}" for k in keep))
  for name, r in rows.items():
    print(f"{name:24s} " + " ".join(f"{float(r[k]):13.3f}" for k in keep))
  print(f"wrote directions_baseline.json in {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  app.run(main)
