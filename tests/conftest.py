import os
import tempfile

# Tests are small; keep XLA from grabbing both cores with many threads per op.
os.environ.setdefault("XLA_FLAGS", "")
# One persistent XLA compilation cache for the test session (set before JAX is imported):
# pytest-xdist workers and the experiments and notebooks the tests start as subprocesses
# inherit it, so a program one process compiled (a tiny config's training chunk, the VP
# classifier, an oracle) is loaded, not compiled again, by the next. Entries are keyed by
# the program, the compiler options and the JAX version, so a stale one is never reused.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "lsx-tests-xla-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import pytest  # noqa: E402

from configs import common  # noqa: E402
from lsx.train import config as config_lib  # noqa: E402


def set_fields(c, **fields):
  """Set (or add) dotted fields of a ConfigDict ('train.steps': 4): the library's one
  dotted-override helper, allowed to add a field a test's config section lacks."""
  return config_lib.set_fields(c, create=True, **fields)


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
  set_fields(c, **overrides)
  c.lock()
  return c


def assert_trees_equal(a, b, rtol: float = 0.0, atol: float = 0.0):
  """Two pytrees with the same structure, shapes and dtypes, and leaves equal (bit-exact
  by default, else within rtol/atol): a tree missing or gaining a leaf fails."""
  import chex
  if rtol or atol:
    chex.assert_trees_all_close(a, b, rtol=rtol, atol=atol)
  else:
    chex.assert_trees_all_equal(a, b)


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
