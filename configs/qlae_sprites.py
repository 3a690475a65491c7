"""QLAE (quantized latents, Hsu et al. 2023) on the built-in sprites (dSprites-like) data.

Paper defaults: 2 x 5 factors = 10 latents, 10 learned values each, AdamW lr 1e-3 with
weight decay 0.1, gradient clipping 1.0, quantization/commitment weights 0.01. The paper
trains 2e5 steps with a style-modulated decoder; here the budget is CPU-sized and the
decoder is the Locatello conv one (`--config.model.arch=style` for the style decoder).

  python -m experiments.train --config configs/qlae_sprites.py
"""
from configs import common
from configs.qlae_scenes import qlae_config


def get_config(arg: str = ""):
  return common.finalize(qlae_config("sprites", 5), arg)
