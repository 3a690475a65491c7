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
from absl import flags
from ml_collections import config_flags

from lsx import cli, traversal_eval

_CONFIG = config_flags.DEFINE_config_file("config", None, "Directions config file.",
                                          lock_config=True)
_COMPARE = flags.DEFINE_bool("compare", False, "Compare every method in config.compare.")


def main(argv):
  del argv
  traversal_eval.discover(_CONFIG.value, compare=_COMPARE.value)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  cli.run(main)
