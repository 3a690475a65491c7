"""A plain VAE (beta = 1) with a wide latent on the built-in scenes: the generator of the
post-hoc potential flows on scenes (configs/flows_scenes.py), configs/vae_sprites_wide.py
(the public dSprites VAE's 226 = 15 x 15 + 1 latents; PDETraversal,
train_vae_pretrained.py) on the scenes data.

  python -m experiments.train --config configs/vae_scenes_wide.py
  python -m experiments.flows --config configs/flows_scenes.py   # trains it first when absent
"""
from configs import vae_sprites_wide


def get_config(arg: str = ""):
  config = vae_sprites_wide.get_config(arg)
  with config.unlocked():
    config.workdir = config.workdir.replace("vae_sprites_wide", "vae_scenes_wide")
    config.data.name = "scenes"
  return config
