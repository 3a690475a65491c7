"""Sparse autoencoders on the hidden layer of the sprites beta-VAE's encoder.

  python -m experiments.train --config configs/betavae_sprites.py         # the model first
  python -m experiments.train --config configs/sae_sprites.py             # TopK
  python -m experiments.train --config configs/sae_sprites.py:jumprelu    # or relu, batchtopk, mp

Activations: the output of the encoder's `Dense_0` (256 units, the layer before the latent
head) on freshly rendered sprites, computed on the fly. metrics.json holds the SAE scores
and the InfoMEC / MIG / DCI of its codes against the sprites' factors (docs/sae.md).
"""
from configs import common
from lsx.sae.model import BOTTLENECKS, HP_DEFAULTS
from lsx.train import config as config_lib


def get_config(arg: str = ""):
  parts = common.check_arg(arg, ("smoke", "sweep") + BOTTLENECKS)
  bottleneck = next((p for p in parts if p in BOTTLENECKS), "topk")
  c = config_lib.run_config()
  c.family = "sae"
  c.workdir = f"workdirs/sae_sprites_{bottleneck}"
  c.source = dict(kind="model", workdir="workdirs/betavae_sprites", layer="Dense_0",
                  data_seed=0)
  c.sae = dict(bottleneck=bottleneck, max_width=1024, k_max=32, aux_k=128, dead_tokens=50000,
               bandwidth=0.001, threshold_rate=0.01, threshold_init=0.001, median_samples=2048)
  c.eval = dict(samples=10000, seed=4321, disentanglement=True)
  c.hp = dict(lr=1e-3, k=16.0, width=1024.0, **HP_DEFAULTS[bottleneck])
  if bottleneck == "relu":
    c.hp.l1_coeff = 0.5
  if bottleneck == "jumprelu":
    c.hp.l0_coeff = 0.05
    c.sae.threshold_init = 0.1
  c.train.update(steps=3000, batch_size=256, chunk=100, ckpt_every=1000)
  if "sweep" in parts:
    c.workdir += "_sweep"
    c.sweep.seed = (0, 1)
    if bottleneck in ("topk", "batchtopk", "mp"):
      c.sweep.hp = {"k": (8.0, 16.0, 32.0)}
    c.sweep_strategy = "vmap"
  if "smoke" in parts:
    c.sae.update(max_width=64, k_max=8, aux_k=16, median_samples=64)
    c.hp.update(k=4.0, width=64.0)
    c.eval.samples = 256
    c.train.update(steps=4, chunk=2, ckpt_every=2, batch_size=16)
  c.lock()
  return c
