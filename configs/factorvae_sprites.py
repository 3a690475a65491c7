"""FactorVAE (Kim & Mnih 2018) on the built-in sprites: a discriminator as second player.

  python -m experiments.train --config configs/factorvae_sprites.py
"""
from configs import common


def get_config(arg: str = ""):
  config = common.base_config()
  config.workdir = "workdirs/factorvae_sprites"
  config.objective.name = "factor_vae"
  config.objective.disc_width = 1000  # the paper's discriminator: 6 layers of 1000 units
  config.objective.disc_depth = 6
  # gamma weighs the total correlation; the discriminator's Adam: discriminator_lr,
  # betas (0.5, 0.9) as the paper
  config.hp = dict(gamma=10.0, lr=1e-4, discriminator_lr=1e-4)
  config.train.steps = 2000
  return common.finalize(config, arg)
