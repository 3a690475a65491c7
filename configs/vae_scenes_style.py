"""A plain VAE (beta = 1) with the style-modulated decoder on the built-in scenes: the
StyleGAN-like generator (a mapping MLP to a style vector modulating every convolution)
the LatentCLR paper setup runs on (configs/latentclr_scenes.py).

  python -m experiments.train --config configs/vae_scenes_style.py
"""
from configs import common


def get_config(arg: str = ""):
  return common.autoencoder(arg, "vae_scenes_style", "scenes", "beta_vae",
                            dict(beta=1.0, lr=1e-3), steps=3000,
                            fields={"model.arch": "style", "model.latent_dim": 64})
