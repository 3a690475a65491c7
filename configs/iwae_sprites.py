"""iwae on the built-in sprites data.

  python -m experiments.train --config configs/iwae_sprites.py
"""
from configs import common


def get_config(arg: str = ""):
  return common.autoencoder(arg, "iwae_sprites", "sprites", "iwae", dict(lr=1e-3),
                            fields={"objective.iwae_k": 5})
