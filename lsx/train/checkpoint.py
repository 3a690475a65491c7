"""Orbax checkpoints of the whole train state, restored against an abstract target.

Orbax writes each step into a temporary directory and renames it when complete, so a
run killed mid-save leaves the previous checkpoint intact (atomic save). Orbax keeps no
checksum of the data, so lsx writes the SHA-256 of every saved array beside it
(`<step>/checksums.json`) and checks them on restore: a corrupted array is reported with
the previous checkpoint offered, never silently used.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os

import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  pass


def manager(directory: str, max_to_keep: int = 2) -> ocp.CheckpointManager:
  logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every save at INFO
  directory = os.path.abspath(directory)
  opts = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                      enable_async_checkpointing=False)
  return ocp.CheckpointManager(directory, options=opts)


CHECKSUMS = "checksums.json"


def _digests(tree) -> dict:
  """SHA-256 of every leaf's bytes by dotted name (None where this process does not hold
  the whole array: a multi-host shard)."""
  out = {}
  for name, leaf in _flat_by_name(tree).items():
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
      out[name] = None
      continue
    a = np.ascontiguousarray(np.asarray(jax.device_get(leaf)))
    out[name] = hashlib.sha256(a.tobytes()).hexdigest()
  return out


def save(mngr: ocp.CheckpointManager, step: int, state) -> None:
  mngr.save(int(step), args=ocp.args.StandardSave(state), force=True)
  mngr.wait_until_finished()
  if jax.process_index() == 0:
    path = os.path.join(str(mngr.directory), str(int(step)), CHECKSUMS)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      json.dump(_digests(state), f)
    os.replace(tmp, path)


def _verify(mngr, step: int, state, path: str) -> None:
  stored_path = os.path.join(path, CHECKSUMS)
  if not os.path.exists(stored_path):  # written before checksums, or killed right after the save
    return
  with open(stored_path) as f:
    stored = json.load(f)
  bad = [n for n, d in _digests(state).items() if d and stored.get(n) and stored[n] != d]
  if bad:
    earlier = [s for s in mngr.all_steps() if s < step]
    offer = (f"The previous checkpoint is step {max(earlier)}: delete {path} to resume from "
             f"it." if earlier else "There is no earlier checkpoint: train in a new workdir.")
    raise CheckpointError(f"Checkpoint {path} is corrupt: {', '.join(bad[:5])} do(es) not "
                          f"match the checksum saved with it. {offer}")


def restore_device():
  """The device a leaf without a sharding is restored onto: this process's first."""
  return jax.local_devices()[0]


def on_restore_device(tree):
  """`tree` committed to `restore_device()`, where `restore` puts its arrays. jit compiles
  one program per argument placement, so a fresh state put here and a restored one share
  a compiled step (a fresh and a resumed run, or several starts, in one process)."""
  return jax.device_put(tree, restore_device())


def restore(mngr: ocp.CheckpointManager, abstract_state, step: int | None = None):
  """Restore `step` (default latest) into the structure of `abstract_state`.

  Shapes are checked against the stored metadata first, so a config that changed the
  model (say latent_dim) fails with the offending parameter named, not deep in orbax.
  """
  step = mngr.latest_step() if step is None else step
  if step is None:
    return None
  path = os.path.join(str(mngr.directory), str(step))
  absl_log = logging.getLogger("absl")
  level = absl_log.level
  absl_log.setLevel(logging.ERROR)  # orbax warns that the item dir has no step metadata
  try:
    meta = ocp.StandardCheckpointer().metadata(os.path.join(path, "default"))
    meta = getattr(meta, "item_metadata", meta)
    meta = getattr(meta, "tree", meta)
  except Exception as e:
    absl_log.setLevel(level)
    raise CheckpointError(f"Checkpoint at {path} is unreadable ({type(e).__name__}: {e}). "
                          f"Delete that step directory to fall back to an earlier one, or "
                          f"use a fresh workdir.") from e
  absl_log.setLevel(level)
  _check_shapes(abstract_state, meta, path)
  # Leaves without a sharding restore onto this process's first device, whatever the
  # topology that wrote them (a sweep sharded over 8 devices or 2 hosts loads on a laptop).
  dev = jax.sharding.SingleDeviceSharding(restore_device())
  abstract_state = jax.tree.map(
      lambda a: a if getattr(a, "sharding", None) is not None else
      jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=dev), abstract_state)
  try:
    state = mngr.restore(step, args=ocp.args.StandardRestore(abstract_state))
  except Exception as e:
    raise CheckpointError(f"Could not restore checkpoint {path}: {type(e).__name__}: {e}. "
                          f"It may be corrupt or from a different configuration; delete it "
                          f"or use a fresh workdir.") from e
  _verify(mngr, step, state, path)
  return state


def _key_name(k) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def _flat_by_name(tree) -> dict:
  return {".".join(_key_name(k) for k in kp): leaf
          for kp, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _check_shapes(abstract, meta, path):
  """Compare leaf shapes by dotted name (the stored tree has dicts where ours has
  dataclasses and named tuples)."""
  stored = _flat_by_name(meta)
  for name, leaf in _flat_by_name(abstract).items():
    shape = getattr(stored.get(name), "shape", None)
    if shape is not None and tuple(shape) != tuple(np.shape(leaf)):
      raise CheckpointError(
          f"Shape mismatch restoring {path}: {name} is {tuple(shape)} in the checkpoint but "
          f"{tuple(np.shape(leaf))} for this config. The config changed the model since the "
          f"checkpoint was written: restore the old value or use a new workdir.")
