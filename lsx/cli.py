"""Running lsx's experiment scripts: a user's mistake is one clear line, not a traceback.

`run(main)` runs an absl `main` and turns the errors lsx raises for bad input or a bad
workdir (a wrong config value, a missing or locked workdir, a corrupt checkpoint, a
dataset that is not prepared, a non-finite loss) into `error: <message>` on stderr and
exit status 2. The full traceback: `--traceback` or LSX_TRACEBACK=1.
"""
from __future__ import annotations

import os
import re
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


def _chain(e: BaseException) -> list:
  out = [e]
  while (out[-1].__cause__ or out[-1].__context__) is not None and len(out) < 20:
    out.append(out[-1].__cause__ or out[-1].__context__)
  return out


def flag_error(e: BaseException) -> str:
  """One line for a mistake on the command line (a flag, a config file or a config field)."""
  chain = _chain(e)
  for x in chain:
    if isinstance(x, FileNotFoundError) and x.filename:
      return f"config file {x.filename!r} does not exist."
  for x in chain:  # a misspelled config field (ml_collections): the message with its suggestion
    if isinstance(x, (AttributeError, KeyError)):
      text = str(x).replace("\\n", " ").replace("\n", " ").replace("\\'", "'")
      if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
      return "unknown config field " + text.replace('"', "'").replace("' Did", "'. Did", 1)
  root = chain[-1]
  missing = re.search(r"No such file or directory: '([^']+)'", str(root))
  if missing:
    return f"config file {missing.group(1)!r} does not exist."
  text = str(e) if isinstance(e, flags.Error) and "Error whilst parsing" not in str(e) else str(root)
  return " ".join(text.strip().split("\n")[0].split())


def parse_flags(argv):
  """absl flag parsing with a mistake reported as `error: <one line>`, exit status 2.
  Config files are loaded here too (their errors are command-line mistakes)."""
  try:
    rest = flags.FLAGS(argv)
    for name in list(flags.FLAGS):  # config_flags defers a failed load to the first .value
      getattr(flags.FLAGS[name].value, "lock", None)
    return rest
  except Exception as e:  # noqa: BLE001 -- every parse failure is the user's input
    if "--traceback" in argv or os.environ.get("LSX_TRACEBACK") == "1":
      raise
    print(f"error: {flag_error(e)}\n(--helpfull lists the flags; --traceback for the full "
          f"traceback)", file=sys.stderr, flush=True)
    sys.exit(2)


def failure_line(e: BaseException) -> str | None:
  """One line for a failure that is not a mistake in the input but has a known cause and
  fix (an interrupt, a full disk, device memory); None for anything else."""
  import errno
  if isinstance(e, KeyboardInterrupt):
    return ("interrupted; rerun the same command to resume from the run's last checkpoint "
            "(nothing saved is lost).")
  if isinstance(e, OSError) and e.errno == errno.ENOSPC:
    where = f" writing {e.filename}" if e.filename else ""
    return (f"no space left on the device{where}; free space and rerun the same command to "
            f"resume from the run's last checkpoint.")
  text = str(e)
  if "RESOURCE_EXHAUSTED" in text or "Out of memory" in text:
    need = re.search(r"(\d+(\.\d+)?\s*[KMGT]i?B)", text)
    return (f"out of memory{' (the program needs ' + need.group(1) + ')' if need else ''}: "
            f"lower train.batch_size (or the sweep's members, or sweep_strategy='map') and "
            f"rerun.")
  return None


def _write_traceback() -> str:
  """The current exception's full traceback in a file; returns its path."""
  import tempfile
  import traceback
  fd, path = tempfile.mkstemp(prefix="lsx-traceback-", suffix=".txt")
  with os.fdopen(fd, "w") as f:
    traceback.print_exc(file=f)
  return path


def run(main, **kwargs) -> None:
  """`absl.app.run(main)` with lsx's user errors reported in one line (module doc); an
  interrupt, a full disk or out-of-memory get their cause and fix in one line, and any
  other exception one line with the file its full traceback was written to."""
  def wrapped(argv):
    full = lambda: _TRACEBACK.value or os.environ.get("LSX_TRACEBACK") == "1"
    try:
      return main(argv)
    except _user_errors() as e:
      if full():
        raise
      msg = e.args[0] if isinstance(e, KeyError) and e.args else e
      print(f"error: {msg}\n(--traceback for the full traceback)", file=sys.stderr, flush=True)
      sys.exit(2)
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 -- reported in one line
      if full():
        raise
      line = failure_line(e)
      if line is not None:
        print(f"error: {line}", file=sys.stderr, flush=True)
        sys.exit(130 if isinstance(e, KeyboardInterrupt) else 1)
      path = _write_traceback()
      first = " ".join(str(e).strip().split("\n")[0].split())[:300]
      print(f"error: {type(e).__name__}: {first} (an unexpected failure; the full traceback "
            f"is in {path}; please report it)", file=sys.stderr, flush=True)
      sys.exit(1)
  kwargs.setdefault("flags_parser", parse_flags)
  app.run(wrapped, **kwargs)
