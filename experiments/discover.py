"""Discover interpretable directions in a trained decoder's latent space and score them.

  python -m experiments.discover --config configs/latentclr_sprites.py
  python -m experiments.discover --config configs/latentclr_sprites.py --compare

One method (config.directions.method), trained through lsx.train in config.workdir (one
member per seed of config.sweep, resumable), or every method of config.compare.methods
(in workdir/<method>) plus the reference rows (random directions, the latent axes of
this decoder and of a plain AE decoder, the supervised factor directions). Every member
is scored with direction-factor attribution and variation predictability in one oracle
pass; writes directions.png, scores.json, scores.csv, scores.png and readings.npz (the
oracle's raw readings per row: factors [members, K, N, S, F], distance, anisotropy).
"""
import os

import jax
import numpy as np
from absl import flags
from ml_collections import config_flags

from lsx import cli, directions as ld, metrics as lm, runs, viz
from lsx.directions import family
from lsx.train import ensure_trained

_CONFIG = config_flags.DEFINE_config_file("config", None, "Directions config file.",
                                          lock_config=True)
_COMPARE = flags.DEFINE_bool("compare", False, "Compare every method in config.compare.")


def main(argv):
  del argv
  c, log = _CONFIG.value, viz.log
  lm.check_oracle(c.eval.oracle)
  ld.protocols.check_protocol(c.eval)
  methods = tuple(c.compare.methods) if _COMPARE.value else (c.directions.method,)
  for m in methods:
    family.method_kind(m)  # an unknown name fails before anything trains
  dec = runs.load_decoder(ensure_trained(c.decoder.workdir, c.decoder.config),
                            int(c.eval.data))
  oracle = lm.make_oracle(dec.dataset, c.eval.oracle, pool=int(c.eval.oracle_pool),
                          steps=int(c.eval.oracle_steps), rng=jax.random.key(7), log=log)
  sub = lambda m: os.path.join(c.workdir, m) if _COMPARE.value else c.workdir
  sets = {m: (*family.fit(c, m, dec, sub(m)), dec) for m in methods}
  if _COMPARE.value:
    span, s = float(c.eval.span) * dec.sd, int(c.eval.steps)
    sets.update(ld.reference_sets(dec, c.directions.num, c.compare.random_seeds, span=span,
                                  num_steps=s, supervised=True, suffix=" (decoder)"))
    ae = runs.load_decoder(ensure_trained(c.compare.ae_workdir, c.compare.ae_config),
                             int(c.eval.data))
    sets.update(ld.reference_sets(ae, c.directions.num, 0, span=float(c.eval.span) * ae.sd,
                                  num_steps=s, suffix=" (plain AE)"))
  scored, readings = ld.score_traversals(sets, oracle, anchors=c.eval.anchors,
                                         vp_anchors=c.eval.vp_anchors,
                                         readable_orientation=c.eval.readable_orientation)
  # eval.protocol='reference': the papers' protocols, every set's shift matched to the
  # first method's image change
  ld.protocols.add_protocol_scores(scored, sets, oracle, c.eval)
  trav, params, _ = sets[methods[0]]
  viz.save_traversal_grid(ld.traversal_frames(trav, ld.take(params, 0), dec.generate, dec.z[:3]),
                          os.path.join(c.workdir, "directions.png"))
  ld.write_score_table(scored, c.workdir, oracle_info=lm.oracle_info(oracle),
                        factor_names=list(dec.dataset.factor_names), log=log)
  np.savez_compressed(os.path.join(c.workdir, "readings.npz"),
                      **{f"{n}/{f}": getattr(r, f) for n, r in zip(sets, readings)
                         for f in ("factors", "distance", "anisotropy")})


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  cli.run(main)
