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
  kwargs.setdefault("flags_parser", parse_flags)
  app.run(wrapped, **kwargs)
