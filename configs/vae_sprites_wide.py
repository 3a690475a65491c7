"""A plain VAE (beta = 1) with a wide latent on the built-in sprites: the generator the
public potential-flow code trains its post-hoc flows on (its dSprites VAE has a
15 x 15 + 1 = 226-dimensional latent; PDETraversal, train_vae_pretrained.py).

  python -m experiments.train --config configs/vae_sprites_wide.py
  python -m experiments.flows --config configs/flows_sprites.py:reference   # trains it first when absent
"""
from configs import common


def get_config(arg: str = ""):
  return common.autoencoder(arg, "vae_sprites_wide", "sprites", "beta_vae",
                            dict(beta=1.0, lr=1e-3), fields={"model.latent_dim": 226})
