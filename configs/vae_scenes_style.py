"""A plain VAE (beta = 1) with the style-modulated decoder on the built-in scenes: the
StyleGAN-like generator (a mapping MLP to a style vector modulating every convolution)
the LatentCLR paper setup runs on (configs/latentclr_scenes.py).

  python -m experiments.train --config configs/vae_scenes_style.py
"""
from configs import common


def get_config(arg: str = ""):
  config = common.base_config()
  config.workdir = "workdirs/vae_scenes_style"
  config.data.name = "scenes"
  config.objective.name = "beta_vae"
  config.model.arch = "style"
  config.model.latent_dim = 64
  config.hp = dict(beta=1.0, lr=1e-3)
  config.train.steps = 3000
  return common.finalize(config, arg)
