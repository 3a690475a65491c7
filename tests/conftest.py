import os

# Tests are small; keep XLA from grabbing both cores with many threads per op.
os.environ.setdefault("XLA_FLAGS", "")

import pytest  # noqa: E402

from configs import common  # noqa: E402


def tiny_config(**overrides):
  """A small, fast config: 32x32 sprites, small MLP, a few steps."""
  c = common.base_config()
  c.data.size = 32
  c.model.arch = "mlp"
  c.model.hidden = (64, 64)
  c.model.latent_dim = 4
  c.hp = {"beta": 1.0, "lr": 1e-3}
  c.train.steps = 8
  c.train.chunk = 2
  c.train.ckpt_every = 4
  c.train.batch_size = 16
  c.train.log_every_s = 0.0
  for k, v in overrides.items():
    node = c
    *path, last = k.split(".")
    for p in path:
      node = node[p]
    node[last] = v
  c.lock()
  return c


def small_sweep_config(strategy: str, data: int = 1):
  """8 members (4 seeds x 2 betas), 4 steps: the sweep the sharding checks compare."""
  c = tiny_config(**{"sweep_strategy": strategy, "train.steps": 4, "mesh.data": data})
  with c.unlocked():
    c.sweep.seed = (0, 1, 2, 3)
    c.sweep.hp = {"beta": (1.0, 4.0)}
  return c


@pytest.fixture
def tiny():
  return tiny_config
