"""Running lsx's experiment scripts: a user's mistake is one clear line, not a traceback.

`run(main)` runs an absl `main` and turns the errors lsx raises for bad input or a bad
workdir (a wrong config value, a missing or locked workdir, a corrupt checkpoint, a
dataset that is not prepared, a non-finite loss) into `error: <message>` on stderr and
exit status 2. The full traceback: `--traceback` or LSX_TRACEBACK=1.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags

_TRACEBACK = flags.DEFINE_bool("traceback", False, "Show the full traceback of an error.")


def _user_errors() -> tuple:
  from lsx.data import DatasetNotPreparedError
  from lsx.train.checkpoint import CheckpointError
  from lsx.train.loop import NonFiniteError
  from lsx.train.workdir import WorkdirLockedError
  return (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError,
          PermissionError, IsADirectoryError, CheckpointError, WorkdirLockedError,
          NonFiniteError, DatasetNotPreparedError, KeyError)


def run(main, **kwargs) -> None:
  """`absl.app.run(main)` with lsx's user errors reported in one line (module doc)."""
  def wrapped(argv):
    try:
      return main(argv)
    except _user_errors() as e:
      if _TRACEBACK.value or os.environ.get("LSX_TRACEBACK") == "1":
        raise
      msg = e.args[0] if isinstance(e, KeyError) and e.args else e
      print(f"error: {msg}\n(--traceback for the full traceback)", file=sys.stderr, flush=True)
      sys.exit(2)
  app.run(wrapped, **kwargs)
