"""beta_tcvae on the built-in sprites data.

  python -m experiments.train --config configs/betatcvae_sprites.py
"""
from configs import common


def get_config(arg: str = ""):
  config = common.base_config()
  config.workdir = "workdirs/betatcvae_sprites"
  config.data.name = "sprites"
  config.objective.name = "beta_tcvae"
  config.hp = dict(alpha=1.0, beta=6.0, gamma=1.0, lr=1e-3)
  config.train.steps = 2000
  return common.finalize(config, arg)
