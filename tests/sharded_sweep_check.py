"""Run in a subprocess with 8 host devices: a sharded sweep equals the unsharded one.

Prints one line: `max_rel_diff <x> devices <n> strategy <s>`.
"""
import os
import sys
import tempfile

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from conftest import small_sweep_config  # noqa: E402
from lsx import train as lt  # noqa: E402


def run(strategy, data=1):
  state, _ = lt.train(small_sweep_config(strategy, data), tempfile.mkdtemp(), write_figures=False, print_fn=lambda s: None)
  return state


if __name__ == "__main__":
  data = int(sys.argv[1]) if len(sys.argv) > 1 else 1
  ref = run("map")
  sh = run("sharded", data)
  diffs = [float(np.abs(np.asarray(a) - np.asarray(b)).max() / (np.abs(np.asarray(a)).max() + 1e-12))
           for a, b in zip(jax.tree.leaves(ref.params), jax.tree.leaves(sh.params))]
  spec = jax.tree.leaves(sh.params)[0].sharding.spec
  print(f"max_rel_diff {max(diffs):.3g} devices {jax.device_count()} sharding {spec}")
