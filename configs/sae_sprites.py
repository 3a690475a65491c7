"""Sparse autoencoders on the hidden layer of the sprites beta-VAE's encoder.

  python -m experiments.train --config configs/betavae_sprites.py         # the model first
  python -m experiments.train --config configs/sae_sprites.py             # TopK
  python -m experiments.train --config configs/sae_sprites.py:jumprelu    # or relu, batchtopk, mp

Activations: the output of the encoder's `Dense_0` (256 units, the layer before the latent
head) on freshly rendered sprites, computed on the fly. metrics.json holds the SAE scores
and the InfoMEC / MIG / DCI of its codes against the sprites' factors (docs/sae.md).
"""
from configs import common


def get_config(arg: str = ""):
  c, parts = common.sae_base(arg, "sprites", dict(kind="model", workdir="workdirs/betavae_sprites",
                                                  layer="Dense_0", data_seed=0))
  c.sae.update(aux_k=128, dead_tokens=50000, median_samples=2048)
  c.eval.disentanglement = True
  if c.sae.bottleneck == "relu":
    c.hp.l1_coeff = 0.5
  if c.sae.bottleneck == "jumprelu":
    c.hp.l0_coeff = 0.05
    c.sae.threshold_init = 0.1
  c.train.update(steps=3000, batch_size=256, chunk=100, ckpt_every=1000)
  return common.sae_finish(c, parts, sweep_k=(8, 16, 32))
