"""Train a run of any family from a config file; re-running resumes from the last checkpoint.

  python -m experiments.train --config configs/betavae_sprites.py [--workdir DIR]
      [--config.train.steps=4000] [--config.hp.beta=8]
  python -m experiments.train --config configs/diffusion_sprites.py    # config.family selects

The family (config.family: autoencoder, directions, flows, sae, relative_ae,
relative_decoder, diffusion) is built by lsx.runs; every config key: docs/configs.md.
"""
from __future__ import annotations

import logging

from absl import flags
from ml_collections import config_flags

from lsx import cli
from lsx.train import train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: config.workdir).")
_SKIP = flags.DEFINE_bool("skip_corrupt_checkpoint", False, "If the latest checkpoint is "
                          "corrupt, move it to WORKDIR/corrupt_checkpoints/ and resume from "
                          "the previous one.")
_ALLOW = flags.DEFINE_bool("allow_config_change", False, "Resume a run with a changed config "
                           "(recorded in the workdir's history.jsonl).")


def main(argv):
  del argv
  logging.getLogger("absl").setLevel(logging.WARNING)
  config = _CONFIG.value
  train(config, _WORKDIR.value or config.workdir, allow_config_change=_ALLOW.value,
        skip_corrupt_checkpoint=_SKIP.value)
  print(f"done: {_WORKDIR.value or config.workdir}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  cli.run(main)
