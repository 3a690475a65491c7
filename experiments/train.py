"""Train an autoencoder from a config file; re-running resumes from the last checkpoint.

  python -m experiments.train --config configs/betavae_sprites.py [--workdir DIR]
      [--config.train.steps=4000] [--config.hp.beta=8]
"""
from __future__ import annotations

import logging
import re

from absl import flags
from ml_collections import config_flags

from lsx import cli
from lsx.train import train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: config.workdir).")
_ALLOW = flags.DEFINE_bool("allow_config_change", False, "Resume a run with a changed config "
                           "(recorded in the workdir's history.jsonl).")


def main(argv):
  del argv
  logging.getLogger("absl").setLevel(logging.WARNING)
  config = _CONFIG.value
  train(config, _WORKDIR.value or config.workdir, allow_config_change=_ALLOW.value)
  print(f"done: {_WORKDIR.value or config.workdir}")


def _parse(argv):
  """absl parsing, with config mistakes (a misspelled field) reported in one line."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    msg = re.sub(r"[\\'\"]+", "'", str(e).replace("\\n", " ").replace("\n", " ")).strip("' ")
    raise SystemExit(f"config error: unknown field '{msg}") from None


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  cli.run(main, flags_parser=_parse)
