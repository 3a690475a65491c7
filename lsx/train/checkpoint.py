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
from lsx.records import write_json


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


def _pending(mngr, step: int) -> str:
  """Where a step's checksums wait while orbax writes the step (beside checkpoints/)."""
  return os.path.join(os.path.dirname(str(mngr.directory)), f".checksums-{int(step)}.pending")


def save(mngr: ocp.CheckpointManager, step: int, state) -> None:
  """Save `state` as `step` with its checksums. The checksums are written (atomically)
  before the step and moved into it after, so a kill between the two leaves them
  pending, and the restore completes the move: no finished step is left unverified."""
  pending = _pending(mngr, step)
  if jax.process_index() == 0:
    write_json(pending, _digests(state))
  mngr.save(int(step), args=ocp.args.StandardSave(state), force=True)
  mngr.wait_until_finished()
  if jax.process_index() == 0:
    os.replace(pending, os.path.join(str(mngr.directory), str(int(step)), CHECKSUMS))


class CorruptCheckpointError(CheckpointError):
  """A stored checkpoint that cannot be read back as it was written."""

  def __init__(self, message: str, step: int, path: str):
    super().__init__(message)
    self.step, self.path = step, path


def _corrupt(mngr, step: int, path: str, reason: str) -> CorruptCheckpointError:
  reason = " ".join(str(reason).split("\n")[0].split())
  reason = reason if len(reason) <= 240 else reason[:237] + "..."
  earlier = [s for s in mngr.all_steps() if s < step]
  offer = (f"The previous checkpoint is step {max(earlier)}: resume from it with "
           f"--skip_corrupt_checkpoint (lsx.train.train(..., skip_corrupt_checkpoint=True)), "
           f"which moves step {step} to corrupt_checkpoints/ in the workdir, or train in a "
           f"new workdir." if earlier else
           "There is no earlier checkpoint: train in a new workdir.")
  return CorruptCheckpointError(f"Checkpoint {path} (step {step}) is corrupt: {reason}. {offer}",
                                step, path)


def _verify(mngr, step: int, state, path: str) -> None:
  stored_path = os.path.join(path, CHECKSUMS)
  pending = _pending(mngr, step)
  if not os.path.exists(stored_path) and os.path.exists(pending):
    os.replace(pending, stored_path)  # a kill between the step's save and its checksums
  if not os.path.exists(stored_path):
    others = [s for s in mngr.all_steps() if s != step
              and os.path.exists(os.path.join(str(mngr.directory), str(s), CHECKSUMS))]
    if others:  # this workdir writes checksums: a step without them is unverified
      raise _corrupt(mngr, step, path, f"it has no {CHECKSUMS} while step {max(others)} has "
                                       f"one, so its arrays cannot be verified")
    return  # a run written before lsx kept checksums
  try:
    with open(stored_path) as f:
      stored = json.load(f)
  except ValueError as e:
    raise _corrupt(mngr, step, path, f"{CHECKSUMS} is unreadable ({e})") from None
  bad = [n for n, d in _digests(state).items() if d and stored.get(n) and stored[n] != d]
  if bad:
    raise _corrupt(mngr, step, path, f"{', '.join(bad[:5])} do(es) not match the checksum "
                                     f"saved with it")


def set_aside(mngr, step: int) -> str:
  """Move checkpoint `step` out of the manager's directory (to ../corrupt_checkpoints/,
  kept, never deleted); returns where it went."""
  import time
  src = os.path.join(str(mngr.directory), str(step))
  dst_dir = os.path.join(os.path.dirname(str(mngr.directory)), "corrupt_checkpoints")
  os.makedirs(dst_dir, exist_ok=True)
  dst = os.path.join(dst_dir, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
  os.replace(src, dst)
  mngr.reload()
  return dst


def restore_device():
  """The device a leaf without a sharding is restored onto: this process's first."""
  return jax.local_devices()[0]


def on_restore_device(tree):
  """`tree` committed to `restore_device()`, where `restore` puts its arrays. jit compiles
  one program per argument placement, so a fresh state put here and a restored one share
  a compiled step (a fresh and a resumed run, or several starts, in one process)."""
  return jax.device_put(tree, restore_device())


def restore(mngr: ocp.CheckpointManager, abstract_state, step: int | None = None, *,
            skip_corrupt: bool = False, log=None):
  """Restore `step` (default latest) into the structure of `abstract_state`.

  Shapes are checked against the stored metadata first, so a config that changed the
  model (say latent_dim) fails with the offending parameter named, not deep in orbax.
  A checkpoint that cannot be read or fails its checksums raises `CorruptCheckpointError`
  naming the previous step; with `skip_corrupt` (latest only) it is set aside
  (`set_aside`, reported through `log`) and the previous one is restored instead.
  """
  latest = step is None
  while True:
    try:
      return _restore(mngr, abstract_state, step)
    except CorruptCheckpointError as e:
      if not (skip_corrupt and latest):
        raise
      where = set_aside(mngr, e.step)
      if log:
        log(f"checkpoint step {e.step} is corrupt: set aside in {where}; restoring the "
            f"previous one")


def _restore(mngr, abstract_state, step):
  step = mngr.latest_step() if step is None else step
  if step is None:
    return None
  path = os.path.join(str(mngr.directory), str(step))
  if not os.path.isdir(path):  # a step asked for by number that was never written (or kept)
    raise FileNotFoundError(f"{mngr.directory} has no checkpoint at step {step} (it has "
                            f"{sorted(mngr.all_steps())}): give one of those steps, or none "
                            f"for the latest.")
  absl_log = logging.getLogger("absl")
  level = absl_log.level
  absl_log.setLevel(logging.CRITICAL)  # orbax logs a torn metadata file before raising
  try:
    meta = ocp.StandardCheckpointer().metadata(os.path.join(path, "default"))
    meta = getattr(meta, "item_metadata", meta)
    meta = getattr(meta, "tree", meta)
  except Exception as e:
    raise _corrupt(mngr, step, path, f"unreadable ({type(e).__name__}: {e})") from e
  finally:
    absl_log.setLevel(level)
  _check_shapes(abstract_state, meta, path)
  # Leaves without a sharding restore onto this process's first device, whatever the
  # topology that wrote them (a sweep sharded over 8 devices or 2 hosts loads on a laptop).
  dev = jax.sharding.SingleDeviceSharding(restore_device())
  abstract_state = jax.tree.map(
      lambda a: a if getattr(a, "sharding", None) is not None else
      jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=dev), abstract_state)
  absl_log.setLevel(logging.CRITICAL)
  try:
    state = mngr.restore(step, args=ocp.args.StandardRestore(abstract_state))
  except Exception as e:
    raise _corrupt(mngr, step, path, f"could not restore it ({type(e).__name__}: {e})") from e
  finally:
    absl_log.setLevel(level)
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
