"""QLAE (quantized latents, Hsu et al. 2023) on the built-in scenes (Shapes3D-like) data.

Paper defaults: 2 x 6 factors = 12 latents, 10 learned values each, AdamW lr 1e-3 with
weight decay 0.1, gradient clipping 1.0, quantization/commitment weights 0.01. The paper
trains 2e5 steps with a style-modulated decoder; here the budget is CPU-sized and the
decoder is the Locatello conv one (`--config.model.arch=style` for the style decoder).

  python -m experiments.train --config configs/qlae_scenes.py
"""
from configs import common


def qlae_config(dataset: str, num_factors: int):
  """The paper's QLAE settings on `dataset`: 2 latents per factor (not yet finalized)."""
  config = common.base_config()
  config.workdir = f"workdirs/qlae_{dataset}"
  config.data.name = dataset
  config.model.latent_dim = 2 * num_factors
  config.model.num_values = 10
  config.objective.name = "qlae"
  config.optim = dict(name="adamw", grad_clip=1.0)
  config.hp = dict(lr=1e-3, weight_decay=0.1, quantization_weight=0.01, commitment_weight=0.01)
  config.train.steps = 3000
  return config


def get_config(arg: str = ""):
  return common.finalize(qlae_config("scenes", 6), arg)
