"""ae on the built-in sprites data.

  python -m experiments.train --config configs/ae_sprites.py
"""
from configs import common


def get_config(arg: str = ""):
  return common.autoencoder(arg, "ae_sprites", "sprites", "ae", dict(lr=1e-3))
