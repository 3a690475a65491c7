"""beta_vae on the built-in scenes data.

  python -m experiments.train --config configs/betavae_scenes.py
"""
from configs import common


def get_config(arg: str = ""):
  return common.autoencoder(arg, "betavae_scenes", "scenes", "beta_vae", dict(beta=4.0, lr=1e-3),
                            # 2 x 6 factors, as QLAE, for a like-for-like comparison
                            fields={"model.latent_dim": 12})
