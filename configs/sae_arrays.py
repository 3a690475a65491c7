"""Sparse autoencoders on activations you bring: memory-mapped .npy shards on disk.

  python -m experiments.train --config configs/sae_arrays.py \
      --config.source.paths='/data/acts/layer6_*.npy'
  python -m experiments.train --config configs/sae_arrays.py:sweep --config.source.paths=...

Each shard is a [rows, dim] float array (numpy.save), e.g. a language model's residual
stream dumped in chunks; rows are streamed in a shuffled order, every row once per epoch,
reading only each batch's rows (docs/sae.md).
"""
from configs import common


def get_config(arg: str = ""):
  c, parts = common.sae_base(arg, "arrays", dict(kind="arrays", paths="activations/*.npy",
                                                 data_seed=0))
  c.sae.update(max_width=8192, k_max=64, aux_k=512, dead_tokens=10_000_000)
  c.eval.samples = 8192
  c.hp.update(lr=2e-4, k=32.0, width=8192.0)
  c.train.update(steps=20000, batch_size=4096, chunk=100, ckpt_every=1000)
  return common.sae_finish(c, parts, sweep_k=(16, 32, 64))
