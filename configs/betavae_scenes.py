"""beta_vae on the built-in scenes data.

  python -m experiments.train --config configs/betavae_scenes.py
"""
from configs import common


def get_config(arg: str = ""):
  config = common.base_config()
  config.workdir = "workdirs/betavae_scenes"
  config.data.name = "scenes"
  config.objective.name = "beta_vae"
  config.model.latent_dim = 12  # 2 x 6 factors, as QLAE, for a like-for-like comparison
  config.hp = dict(beta=4.0, lr=1e-3)
  config.train.steps = 2000
  return common.finalize(config, arg)
