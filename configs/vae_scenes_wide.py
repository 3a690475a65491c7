"""A plain VAE (beta = 1) with a wide latent on the built-in scenes: the generator of the
post-hoc potential flows on scenes (configs/flows_scenes.py), as wide as the public
code's dSprites VAE (226 = 15 x 15 + 1; PDETraversal, train_vae_pretrained.py).

  python -m experiments.train --config configs/vae_scenes_wide.py
  python -m experiments.flows --config configs/flows_scenes.py   # trains it first when absent
"""
from configs import common


def get_config(arg: str = ""):
  config = common.base_config()
  config.workdir = "workdirs/vae_scenes_wide"
  config.data.name = "scenes"
  config.objective.name = "beta_vae"
  config.model.latent_dim = 226
  config.hp = dict(beta=1.0, lr=1e-3)
  config.train.steps = 2000
  return common.finalize(config, arg)
