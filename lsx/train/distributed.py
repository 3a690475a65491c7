"""Multi-process (multi-host) start-up and the helpers a sharded run needs across hosts.

A run spans several processes when `config.distributed.num_processes > 1` or when the
environment names a coordinator (`LSX_COORDINATOR`, `LSX_NUM_PROCESSES`,
`LSX_PROCESS_ID`; cluster environments that `jax.distributed.initialize()` detects on its
own work too with `config.distributed.auto=True`). Every process runs the same command;
the `("member", "data")` mesh then spans all processes' devices, and the same sharded
step trains the sweep. On CPU the collectives go through gloo.
"""
from __future__ import annotations

import os

import jax
import numpy as np

_initialized = False


def settings(config) -> dict:
  d = dict(config.get("distributed", {}) or {})
  env = os.environ
  coordinator = d.get("coordinator") or env.get("LSX_COORDINATOR", "")
  num = int(d.get("num_processes") or 1)
  if num == 1 and "LSX_NUM_PROCESSES" in env:  # the environment fills what the config left
    num = int(env["LSX_NUM_PROCESSES"])
  pid = d.get("process_id")
  pid = int(env.get("LSX_PROCESS_ID", 0)) if pid in (None, -1) else int(pid)
  return {"coordinator": coordinator, "num_processes": num, "process_id": pid,
          "auto": bool(d.get("auto", False))}


def maybe_initialize(config) -> bool:
  """Call `jax.distributed.initialize` once if the config or environment asks for it."""
  global _initialized
  s = settings(config)
  if _initialized or not (s["auto"] or s["num_processes"] > 1):
    return _initialized
  if s["num_processes"] > 1 and not s["coordinator"]:
    raise ValueError("a multi-process run needs a coordinator address: set "
                     "config.distributed.coordinator='host:port' or LSX_COORDINATOR.")
  # CPU collectives across processes (no effect on GPU/TPU clients); set before the
  # backends start, so the backend is not queried here
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if s["auto"]:
    jax.distributed.initialize()
  else:
    jax.distributed.initialize(coordinator_address=s["coordinator"],
                               num_processes=s["num_processes"], process_id=s["process_id"])
  _initialized = True
  return True


def is_main() -> bool:
  return jax.process_index() == 0


def to_host(tree):
  """Fetch a (possibly cross-process) pytree of arrays as numpy on every process."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  from jax.experimental import multihost_utils
  return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))


def global_array(x, sharding):
  """A global jax.Array from a host value every process holds in full."""
  x = np.asarray(x)
  return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])
