"""ae on the built-in sprites data.

  python -m experiments.train --config configs/ae_sprites.py
"""
from configs import common


def get_config(arg: str = ""):
  config = common.base_config()
  config.workdir = "workdirs/ae_sprites"
  config.data.name = "sprites"
  config.objective.name = "ae"
  config.hp = dict(lr=1e-3)
  config.train.steps = 2000
  return common.finalize(config, arg)
