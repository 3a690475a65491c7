"""Orbax checkpoints of the whole train state, restored against an abstract target.

Orbax writes each step into a temporary directory and renames it when complete, so a
run killed mid-save leaves the previous checkpoint intact (atomic save).
"""
from __future__ import annotations

import os

import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  pass


def manager(directory: str, max_to_keep: int = 2) -> ocp.CheckpointManager:
  directory = os.path.abspath(directory)
  opts = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                      enable_async_checkpointing=False)
  return ocp.CheckpointManager(directory, options=opts)


def save(mngr: ocp.CheckpointManager, step: int, state) -> None:
  mngr.save(int(step), args=ocp.args.StandardSave(state), force=True)
  mngr.wait_until_finished()


def restore(mngr: ocp.CheckpointManager, abstract_state, step: int | None = None):
  """Restore `step` (default latest) into the structure of `abstract_state`.

  Shapes are checked against the stored metadata first, so a config that changed the
  model (say latent_dim) fails with the offending parameter named, not deep in orbax.
  """
  step = mngr.latest_step() if step is None else step
  if step is None:
    return None
  path = os.path.join(str(mngr.directory), str(step))
  try:
    meta = mngr.item_metadata(step)
  except Exception as e:
    raise CheckpointError(f"Checkpoint at {path} is unreadable ({type(e).__name__}: {e}). "
                          f"Delete that step directory to fall back to an earlier one, or "
                          f"use a fresh workdir.") from e
  if meta is not None:
    _check_shapes(abstract_state, meta, path)
  try:
    return mngr.restore(step, args=ocp.args.StandardRestore(abstract_state))
  except Exception as e:
    raise CheckpointError(f"Could not restore checkpoint {path}: {type(e).__name__}: {e}. "
                          f"It may be corrupt or from a different configuration; delete it "
                          f"or use a fresh workdir.") from e


def _check_shapes(abstract, meta, path):
  try:
    stored = dict(jax.tree_util.tree_flatten_with_path(meta)[0])
  except Exception:  # metadata of an unknown layout: let restore decide
    return
  want = jax.tree_util.tree_flatten_with_path(abstract)[0]
  for kp, leaf in want:
    got = stored.get(kp)
    shape = getattr(got, "shape", None)
    if shape is not None and tuple(shape) != tuple(np.shape(leaf)):
      raise CheckpointError(
          f"Shape mismatch restoring {path}: {jax.tree_util.keystr(kp)} is {tuple(shape)} in "
          f"the checkpoint but {tuple(np.shape(leaf))} for this config. The config changed "
          f"the model since the checkpoint was written: restore the old value or use a new "
          f"workdir.")
