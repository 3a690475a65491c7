"""A relative autoencoder (Moschella et al., ICLR 2023), 4 seeds as one sweep, on sprites.

  python -m experiments.train --config configs/relative_ae_sprites.py
  python -m experiments.compare_spaces --workdir workdirs/relative_ae_sprites
  python -m experiments.train --config configs/relative_ae_sprites.py:scenes

The decoder reads only the relative representation of the code: its cosines to the codes
of `relative.num_anchors` fixed anchor images under the same encoder, trained end to end
(family 'relative_ae', lsx.compare_spaces). compare_spaces then stitches encoder i with decoder j
of every pair with no further training (docs/similarity.md).
"""
from configs import common
from lsx.train import config as config_lib


def get_config(arg: str = ""):
  parts = common.check_arg(arg, ("smoke", "scenes"))
  c = config_lib.run_config()
  c.family = "relative_ae"
  data = "scenes" if "scenes" in parts else "sprites"
  c.workdir = f"workdirs/relative_ae_{data}"
  ae = config_lib.autoencoder_config()
  c.data = ae.data
  c.data.name = data
  c.model = ae.model
  # anchors: fixed images drawn with anchor_seed from the data
  c.relative = dict(num_anchors=300, anchor_seed=1234)
  c.hp = dict(lr=1e-3)
  c.train.update(steps=1500, batch_size=64)
  c.sweep.seed = (0, 1, 2, 3)
  if "smoke" in parts:
    c.data.size = 32
    c.model.update(arch="mlp", hidden=(64, 64), latent_dim=4)
    c.relative.num_anchors = 16
    c.train.update(steps=4, chunk=2, ckpt_every=2, batch_size=8)
    c.sweep.seed = (0, 1)
  c.lock()
  return c
