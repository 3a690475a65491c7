"""A denoiser on the built-in scenes (configs/diffusion_sprites.py has the sections).

  python -m experiments.train --config configs/diffusion_scenes.py
  python -m experiments.train --config configs/diffusion_scenes.py:smoke
"""
from configs.diffusion_sprites import build


def get_config(arg: str = ""):
  return build(arg, "scenes", 3)
