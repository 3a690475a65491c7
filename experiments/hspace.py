"""Directions in a denoiser's h-space, scored beside each other (lsx.traversal_eval.hspace).

  python -m experiments.hspace --config configs/hspace_sprites.py

Writes hspace_<method>.png (labelled traversals) and scores.json/csv/png in config.workdir;
with config.diffusion.workdirs (one denoiser run per seed), each run's in
config.workdir/<run> and their mean ± std in scores_seeds.json (lsx.hspace_seeds).
"""
from absl import flags
from ml_collections import config_flags

from lsx import cli, hspace_seeds, traversal_eval

_CONFIG = config_flags.DEFINE_config_file("config", None, "h-space config file.",
                                          lock_config=True)


def main(argv):
  del argv
  c = _CONFIG.value
  if c.diffusion.get("workdirs"):
    hspace_seeds.hspace_seeds(c)
  else:
    traversal_eval.hspace(c)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  cli.run(main)
