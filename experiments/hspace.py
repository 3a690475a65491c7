"""Directions in a denoiser's h-space, scored beside each other (lsx.traversal_eval.hspace).

  python -m experiments.hspace --config configs/hspace_sprites.py

Writes hspace_<method>.png (labelled traversals) and scores.json/csv/png in config.workdir.
"""
from absl import flags
from ml_collections import config_flags

from lsx import cli, traversal_eval

_CONFIG = config_flags.DEFINE_config_file("config", None, "h-space config file.",
                                          lock_config=True)


def main(argv):
  del argv
  traversal_eval.hspace(_CONFIG.value)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  cli.run(main)
