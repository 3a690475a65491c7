"""Deterministic autoencoder on the built-in scenes data (the QLAE comparison's baseline).

  python -m experiments.train --config configs/ae_scenes.py
"""
from configs import common


def get_config(arg: str = ""):
  config = common.base_config()
  config.workdir = "workdirs/ae_scenes"
  config.data.name = "scenes"
  config.model.latent_dim = 12  # 2 x 6 factors, as QLAE
  config.objective.name = "ae"
  config.hp = dict(lr=1e-3)
  config.train.steps = 2000
  return common.finalize(config, arg)
