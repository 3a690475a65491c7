"""beta_tcvae on the built-in sprites data.

  python -m experiments.train --config configs/betatcvae_sprites.py
"""
from configs import common


def get_config(arg: str = ""):
  return common.autoencoder(arg, "betatcvae_sprites", "sprites", "beta_tcvae",
                            dict(alpha=1.0, beta=6.0, gamma=1.0, lr=1e-3))
