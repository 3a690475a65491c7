"""beta-VAE on the built-in sprites (dSprites-like) data: lsx's main job.

  python -m experiments.train --config configs/betavae_sprites.py
  python -m experiments.train --config configs/betavae_sprites.py --config.train.steps=4000
"""
from configs import common


def get_config(arg: str = ""):
  config = common.base_config()
  config.workdir = "workdirs/betavae_sprites"
  config.data.name = "sprites"
  config.objective.name = "beta_vae"
  config.hp = dict(beta=4.0, lr=1e-3)
  config.train.steps = 2000
  return common.finalize(config, arg)
