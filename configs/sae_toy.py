"""Sparse autoencoders on a toy model of superposition (known ground-truth features).

  python -m experiments.train --config configs/sae_toy.py                 # TopK
  python -m experiments.train --config configs/sae_toy.py:jumprelu        # or relu, batchtopk, mp
  python -m experiments.train --config configs/sae_toy.py:sweep           # k x seed, one program

512 true features (unit directions in 64 dimensions), ~4 active per sample with
magnitudes U(0, 1]: the SAE's decoder rows should recover the features (metrics.json:
recovered, mmcs; docs/sae.md).
"""
from configs import common
from lsx.sae.model import BOTTLENECKS, HP_DEFAULTS
from lsx.train import config as config_lib


def get_config(arg: str = ""):
  parts = common.check_arg(arg, ("smoke", "sweep") + BOTTLENECKS)
  bottleneck = next((p for p in parts if p in BOTTLENECKS), "topk")
  c = config_lib.run_config()
  c.family = "sae"
  c.workdir = f"workdirs/sae_toy_{bottleneck}"
  # source: toy superposition (num_features unit directions in dim dimensions, `active`
  # expected per sample, feature frequency power-law `decay`)
  c.source = dict(kind="toy", num_features=512, dim=64, active=4.0, decay=0.0,
                  feature_seed=0, data_seed=0)
  # sae: the bottleneck and static bounds (k_max bounds hp.k, max_width bounds hp.width)
  c.sae = dict(bottleneck=bottleneck, max_width=512, k_max=8, aux_k=64, dead_tokens=20000,
               bandwidth=0.001, threshold_rate=0.01, threshold_init=0.001, median_samples=4096)
  c.eval = dict(samples=20000, seed=4321, disentanglement=False)
  c.hp = dict(lr=1e-3, k=6.0, width=512.0, **HP_DEFAULTS[bottleneck])
  if bottleneck == "relu":
    c.hp.l1_coeff = 0.1
  if bottleneck == "jumprelu":
    c.hp.l0_coeff = 0.01
  c.train.update(steps=6000, batch_size=1024, chunk=200, ckpt_every=1000)
  if "sweep" in parts:
    c.workdir += "_sweep"
    c.sweep.seed = (0, 1)
    if "k" in c.hp and bottleneck in ("topk", "batchtopk", "mp"):
      c.sweep.hp = {"k": (4.0, 6.0, 8.0)}
    c.sweep_strategy = "vmap"
  if "smoke" in parts:
    c.source.update(num_features=32, dim=8, active=2.0)
    c.sae.update(max_width=32, k_max=4, aux_k=8, dead_tokens=64, median_samples=64)
    c.hp.update(k=2.0, width=32.0)
    c.eval.samples = 256
    c.train.update(steps=4, chunk=2, ckpt_every=2, batch_size=32)
    if "sweep" in parts:
      c.sweep.hp = {"k": (2.0, 4.0)} if "k" in c.sweep.hp else {}
  c.lock()
  return c
