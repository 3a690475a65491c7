"""Do a sweep's members learn the same latent space? Similarity and zero-shot stitching.

  python -m experiments.compare_spaces --workdir workdirs/ae_sprites_sweep
  python -m experiments.compare_spaces --workdir workdirs/ae_sprites_sweep --stitch

Every pair of members (lsx.compare, lsx.similarity): k-NN Jaccard@10, MRR, matched cosine
and linear CKA of the absolute codes and of relative representations (cosines to
--anchors anchors, --repetitions draws) -> similarity.csv, similarity.png. --stitch also
trains a relative decoder per member (encoder frozen; in WORKDIR/relative, resumable) and
decodes every member's codes with every member's decoder: absolute, Procrustes-translated
and relative -> stitching.csv, stitching.png.
"""
import csv
import os

import jax
import numpy as np
from absl import flags

from lsx import cli, compare, viz
from lsx.train import build, load_run, sweep, train
from lsx.train.config import run_config

_WORKDIR = flags.DEFINE_string("workdir", None, "A sweep (or single-run) workdir.")
_N = flags.DEFINE_integer("samples", 10000, "Samples every member encodes.")
_ANCHORS = flags.DEFINE_integer("anchors", 300, "Anchors of the relative representations.")
_REPS = flags.DEFINE_integer("repetitions", 3, "Anchor draws.")
_RETRIEVAL = flags.DEFINE_integer("retrieval", 2000, "Samples for Jaccard and MRR.")
_STITCH = flags.DEFINE_bool("stitch", False, "Train relative decoders and stitch every pair.")
_STEPS = flags.DEFINE_integer("stitch_steps", 2000, "Relative decoder training steps.")


def main(argv):
  del argv
  wd = _WORKDIR.value
  setup, state = load_run(wd)
  params = state.params if sweep.plan(setup.config, setup.hp) else jax.tree.map(
      lambda a: a[None], state.params)  # members stacked on a leading axis
  images = setup.dataset.sample(jax.random.key(2024), _N.value)[0]
  codes = compare.encode_members(setup.model, params, images)
  table = compare.similarity_table(codes, num_anchors=_ANCHORS.value,
                                   repetitions=_REPS.value, retrieval=_RETRIEVAL.value)
  rows = [{"space": space, "repetition": r, "i": i, "j": j,
           **{m: float(v[i, j, k]) for k, m in enumerate(compare.MEASURES)}}
          for space, reps in (("absolute", table["absolute"][None]), ("relative", table["relative"]))
          for r, v in enumerate(reps) for i in range(v.shape[0]) for j in range(v.shape[1])]
  _write_csv(os.path.join(wd, "similarity.csv"), rows)
  viz.save_matrices({f"{m} ({s})": (table[s] if s == "absolute" else table[s].mean(0))[..., k]
                     for k, m in enumerate(compare.MEASURES) for s in ("absolute", "relative")},
                    os.path.join(wd, "similarity.png"), cols=2)
  ab, rel = compare.off_diagonal_mean(table["absolute"]), compare.off_diagonal_mean(
      table["relative"].transpose(1, 2, 0, 3)).mean(0)
  for k, m in enumerate(compare.MEASURES):
    viz.log(f"cross-member {m:11s} absolute {ab[k]:.3f}  relative {rel[k]:.3f}  gap {rel[k] - ab[k]:+.3f}")
  if _STITCH.value:
    stitch(setup, params, images[:2000], os.path.join(wd, "relative"), wd)


def stitch(setup, params, images, rel_wd, out):
  members = jax.tree.leaves(params)[0].shape[0]
  c = run_config()
  c.family, c.workdir, c.seed = "relative_decoder", rel_wd, 0
  c.source = dict(workdir=os.path.dirname(rel_wd))
  c.relative = dict(num_anchors=_ANCHORS.value, anchor_seed=1234)
  c.hp = {"lr": 1e-3}
  c.train.update(steps=_STEPS.value, batch_size=64)
  c.sweep.seed = tuple(range(members)) if members > 1 else ()
  c.sweep_strategy = setup.config.get("sweep_strategy", "auto")
  rsetup = build(c)
  init = compare.source_params(rsetup, params)
  if members == 1:
    init = jax.tree.map(lambda a: a[0], init)
  rstate, _ = train(c, rel_wd, setup=rsetup, init_params=init)
  rparams = rstate.params if members > 1 else jax.tree.map(lambda a: a[None], rstate.params)
  info = rsetup.objective.info
  errs = compare.stitch_errors(setup.model, params, images, info["anchor_images"],
                               rel_decode=info["rel_decode"], rel_params=rparams)
  rows = [{"kind": k, "i": i, "j": j, "error": float(v[i, j])}
          for k, v in errs.items() for i in range(v.shape[0]) for j in range(v.shape[1])]
  _write_csv(os.path.join(out, "stitching.csv"), rows)
  viz.save_matrices({f"{k} stitching": v for k, v in errs.items()},
                    os.path.join(out, "stitching.png"), cols=3)
  for k, v in errs.items():
    same, cross = np.diag(v).mean(), compare.off_diagonal_mean(v)
    viz.log(f"{k:11s} stitching error: i = j {same:.4f}, i != j {cross:.4f} (x{cross / same:.2f})")


def _write_csv(path, rows):
  with open(path, "w", newline="") as f:
    w = csv.DictWriter(f, list(rows[0]))
    w.writeheader()
    w.writerows(rows)


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  cli.run(main)
