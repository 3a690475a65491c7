"""beta-VAE on the built-in sprites (dSprites-like) data: lsx's main job.

  python -m experiments.train --config configs/betavae_sprites.py
  python -m experiments.train --config configs/betavae_sprites.py --config.train.steps=4000
"""
from configs import common


def get_config(arg: str = ""):
  return common.autoencoder(arg, "betavae_sprites", "sprites", "beta_vae",
                            dict(beta=4.0, lr=1e-3))
