"""Sparse autoencoders on activations you bring: memory-mapped .npy shards on disk.

  python -m experiments.train --config configs/sae_arrays.py \
      --config.source.paths='/data/acts/layer6_*.npy'
  python -m experiments.train --config configs/sae_arrays.py:sweep --config.source.paths=...

Each shard is a [rows, dim] float array (numpy.save), e.g. a language model's residual
stream dumped in chunks; rows are streamed in a shuffled order, every row once per epoch,
reading only each batch's rows (docs/sae.md).
"""
from configs import common
from lsx.sae.model import BOTTLENECKS, HP_DEFAULTS
from lsx.train import config as config_lib


def get_config(arg: str = ""):
  parts = common.check_arg(arg, ("smoke", "sweep") + BOTTLENECKS)
  bottleneck = next((p for p in parts if p in BOTTLENECKS), "topk")
  c = config_lib.run_config()
  c.family = "sae"
  c.workdir = f"workdirs/sae_arrays_{bottleneck}"
  c.source = dict(kind="arrays", paths="activations/*.npy", data_seed=0)
  c.sae = dict(bottleneck=bottleneck, max_width=8192, k_max=64, aux_k=512, dead_tokens=10_000_000,
               bandwidth=0.001, threshold_rate=0.01, threshold_init=0.001, median_samples=4096)
  c.eval = dict(samples=8192, seed=4321, disentanglement=False)
  c.hp = dict(lr=2e-4, k=32.0, width=8192.0, **HP_DEFAULTS[bottleneck])
  c.train.update(steps=20000, batch_size=4096, chunk=100, ckpt_every=1000)
  if "sweep" in parts:
    c.workdir += "_sweep"
    c.sweep.seed = (0, 1)
    if bottleneck in ("topk", "batchtopk", "mp"):
      c.sweep.hp = {"k": (16.0, 32.0, 64.0)}
    c.sweep_strategy = "vmap"
  if "smoke" in parts:
    c.sae.update(max_width=64, k_max=8, aux_k=16, dead_tokens=1000, median_samples=64)
    c.hp.update(k=4.0, width=64.0)
    c.eval.samples = 64
    c.train.update(steps=4, chunk=2, ckpt_every=2, batch_size=16)
  c.lock()
  return c
