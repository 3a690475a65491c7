"""Do a sweep's members learn the same latent space? Similarity and zero-shot stitching.

  python -m experiments.compare_spaces --workdir workdirs/ae_sprites_sweep [--stitch]

Every pair of members (lsx.compare_spaces): k-NN Jaccard@10, MRR, matched cosine and linear CKA
of the absolute codes and of relative representations -> similarity.csv/png. --stitch
trains a relative decoder per member (encoders frozen; WORKDIR/relative, resumable) and
decodes every member's codes with every member's decoder (absolute, Procrustes-translated,
relative) -> stitching.csv/png. A relative autoencoder's run (family 'relative_ae',
configs/relative_ae_sprites.py) is stitched directly: its decoders already read relative
codes. docs/similarity.md.
"""
import jax
from absl import flags

from lsx import cli, compare_spaces as compare, records, viz
from lsx.train import build, load_run, sweep, train

_WORKDIR = flags.DEFINE_string("workdir", None, "A sweep's workdir (two or more members).")
_N = flags.DEFINE_integer("samples", 10000, "Samples every member encodes.")
_ANCHORS = flags.DEFINE_integer("anchors", 300, "Anchors of the relative representations.")
_REPS = flags.DEFINE_integer("repetitions", 3, "Anchor draws.")
_RETRIEVAL = flags.DEFINE_integer("retrieval", 2000, "Samples for Jaccard and MRR.")
_STITCH = flags.DEFINE_bool("stitch", False, "Train relative decoders and stitch every pair.")
_STEPS = flags.DEFINE_integer("stitch_steps", 2000, "Relative decoder training steps.")


def main(argv):
  del argv
  wd = _WORKDIR.value
  st = records.require_run(wd, "experiments.compare_spaces", ("autoencoder", "relative_ae"))
  if records.num_members(st.config) < 2:
    raise records.WorkdirError(
        f"{wd} holds one model: experiments.compare_spaces compares the latent spaces of a "
        f"sweep's members (two or more); train a sweep (e.g. --config.sweep.seed=0,1,2).")
  setup, state = load_run(wd)
  one = sweep.plan(setup.config, setup.hp) is None
  params = jax.tree.map(lambda a: a[None], state.params) if one else state.params
  images = setup.dataset.sample(jax.random.key(2024), _N.value)[0]
  codes = compare.encode_members(setup.model, params, images)
  table = compare.similarity_table(codes, num_anchors=_ANCHORS.value,
                                   repetitions=_REPS.value, retrieval=_RETRIEVAL.value)
  compare.write_similarity(table, wd, log=viz.log)
  if setup.config.family == "relative_ae":  # decoders that read relative codes: stitch now
    info = setup.objective.info
    errs = compare.stitch_errors(setup.model, params, images[:2000], info["anchor_images"],
                                 rel_decode=info["rel_decode"], rel_params=params,
                                 absolute=False)
    compare.write_stitching(errs, wd, log=viz.log)
  elif _STITCH.value:
    c = compare.relative_decoder_config(wd, codes.shape[0], num_anchors=_ANCHORS.value,
                                        steps=_STEPS.value,
                                        strategy=setup.config.get("sweep_strategy", "auto"))
    rsetup = build(c)
    init = compare.source_params(rsetup, params)
    rstate, _ = train(c, setup=rsetup, init_params=jax.tree.map(lambda a: a[0], init) if one
                      else init)
    rparams = jax.tree.map(lambda a: a[None], rstate.params) if one else rstate.params
    info = rsetup.objective.info
    errs = compare.stitch_errors(setup.model, params, images[:2000], info["anchor_images"],
                                 rel_decode=info["rel_decode"], rel_params=rparams)
    compare.write_stitching(errs, wd, log=viz.log)


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  cli.run(main)
