"""iwae on the built-in sprites data.

  python -m experiments.train --config configs/iwae_sprites.py
"""
from configs import common


def get_config(arg: str = ""):
  config = common.base_config()
  config.workdir = "workdirs/iwae_sprites"
  config.data.name = "sprites"
  config.objective.name = "iwae"
  config.objective.iwae_k = 5
  config.hp = dict(lr=1e-3)
  config.train.steps = 2000
  return common.finalize(config, arg)
