"""A workdir guards itself: one writer at a time.

`lock(workdir)` holds `workdir/.lock` (created atomically; it records the holder's pid
and host) for the duration of a training run. A second process fails at once with the
holder named; a lock left by a process that no longer runs on this host is stale and is
taken over.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket


class WorkdirLockedError(RuntimeError):
  pass


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, another user's
    return True
  return True


def _holder(path: str) -> dict | None:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None  # vanished or torn while being written: treat as stale


@contextlib.contextmanager
def lock(workdir: str):
  """Hold `workdir`'s lock while the body runs (see the module docstring)."""
  path = os.path.join(workdir, ".lock")
  me = {"pid": os.getpid(), "host": socket.gethostname()}
  for _ in range(3):
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
      held = _holder(path)
      if held and held.get("pid") == me["pid"] and held.get("host") == me["host"]:
        yield  # this process already holds it (a nested call)
        return
      if held and (held.get("host") != me["host"] or _alive(int(held.get("pid", -1)))):
        raise WorkdirLockedError(
            f"{workdir} is in use by process {held.get('pid')} on {held.get('host')}: one "
            f"run per workdir. Wait for it, stop it, or use another workdir (if that process "
            f"is gone, delete {path}).") from None
      with contextlib.suppress(FileNotFoundError):  # stale: its holder is gone
        os.remove(path)
      continue
    with os.fdopen(fd, "w") as f:
      json.dump(me, f)
    try:
      yield
    finally:
      with contextlib.suppress(FileNotFoundError):
        os.remove(path)
    return
  raise WorkdirLockedError(f"could not take the lock {path}; another process keeps taking it.")


def prepare(workdir: str) -> str:
  """Create `workdir` (and its parents), or say clearly why it cannot be one."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise NotADirectoryError(f"workdir {workdir} is a file, not a directory: give a "
                             f"directory path (config.workdir or --workdir).")
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise type(e)(f"cannot use {workdir} as a workdir: {e.strerror or e} (a parent that is "
                  f"a file, or no permission to write there); choose another path.") from e
  if not os.access(workdir, os.W_OK):
    raise PermissionError(f"workdir {workdir} is not writable: checkpoints could not be "
                          f"saved; choose a writable path.")
  return workdir
