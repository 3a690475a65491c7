"""TensorBoard event files beside metrics.jsonl (optional: `pip install -e ".[tensorboard]"`).

Every run the engine (lsx.train.loop) trains writes, in `workdir/tb/`:
- every logged scalar at every logged step (a sweep: one run directory per member, named
  by its index and swept values, `tb/03 beta=4 seed=1/`, so TensorBoard overlays them);
- the config as text (step 0);
- the workdir's figures (every PNG) as images at the last step, once the run has written
  them;
- for a sweep, each member's swept hyperparameters and final metrics in the hparams view.

The writer is tensorboardX (pure Python, no TensorFlow). Without it installed lsx writes
metrics.jsonl as always and says once how to turn the event files on. A resumed run
purges the events past its checkpoint (tensorboardX's purge_step), as metrics.jsonl is
cut there. `rebuild(workdir)` (`lsx tensorboard WORKDIR`) writes the event files of an
existing run from its metrics.jsonl and figures, replacing any there.

    tensorboard --logdir workdirs/betavae_sprites/tb
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import time
from typing import Callable, Sequence

import numpy as np

from lsx import records
from lsx.train import sweep

SUBDIR = "tb"
INSTALL = ('TensorBoard event files are off: pip install -e ".[tensorboard]" (tensorboardX) '
           'writes them in <workdir>/tb beside metrics.jsonl; `lsx tensorboard WORKDIR` builds '
           'them for a finished run.')
_told = [False]


def available() -> bool:
  import importlib.util
  return importlib.util.find_spec("tensorboardX") is not None


def member_names(labels: Sequence[dict]) -> list[str]:
  """A run directory name per sweep member: its index and swept values ('03 beta=4 seed=1')."""
  width = len(str(max(len(labels) - 1, 0)))
  fmt = lambda v: f"{v:g}" if isinstance(v, float) else str(v)
  return [f"{i:0{width}d} " + " ".join(f"{k.removeprefix('hp.')}={fmt(v)}"
                                        for k, v in lab.items())
          for i, lab in enumerate(labels)]


class RunWriter:
  """The event files of one run or sweep (module doc). `members`: the sweep's member
  labels (None: a single run); `start`: the step a resumed run restarts from (events
  past it are purged)."""

  def __init__(self, workdir: str, config_json: dict, members: Sequence[dict] | None = None,
               start: int = 0):
    from tensorboardX import SummaryWriter
    root = os.path.join(workdir, SUBDIR)
    self.names = None if members is None else member_names(members)
    dirs = [root] if members is None else [os.path.join(root, n) for n in self.names]
    purge = {"purge_step": int(start) + 1} if start else {}
    # tensorboardX names event files by the second: a resumed run's file written within
    # the same second as the run it continues would replace that file, so a nanosecond
    # suffix keeps both, in the order they were written
    suffix = f".{time.time_ns()}"
    self.writers = [SummaryWriter(d, flush_secs=30, filename_suffix=suffix, **purge)
                    for d in dirs]
    self.labels = list(members) if members is not None else None
    if not start:
      text = "```\n" + json.dumps(config_json, indent=1, sort_keys=True) + "\n```"
      for w in self.writers:
        w.add_text("config", text, 0)

  def scalars(self, row: dict) -> None:
    """One metrics.jsonl row: {"step", name: value (a list of one per member for a sweep)}."""
    step = int(row["step"])
    for name, value in row.items():
      if name == "step":
        continue
      values = value if isinstance(value, list) else [value]
      for w, v in zip(self.writers, values):
        if v is not None and np.isfinite(v):
          w.add_scalar(name, float(v), step)

  def figures(self, workdir: str, step: int) -> list[str]:
    """Every PNG in `workdir` as an image at `step` (on every member's run)."""
    from PIL import Image
    paths = sorted(glob.glob(os.path.join(workdir, "*.png")))
    for p in paths:
      with Image.open(p) as im:
        img = np.asarray(im.convert("RGB"))
      tag = os.path.splitext(os.path.basename(p))[0]
      for w in self.writers:
        w.add_image(tag, img, step, dataformats="HWC")
    return paths

  def hparams(self, final_row: dict) -> None:
    """A sweep's members in the hparams view: swept values and final metrics."""
    if self.labels is None:
      return
    from tensorboardX.summary import hparams
    step = int(final_row["step"])
    for i, (w, lab) in enumerate(zip(self.writers, self.labels)):
      metrics = {f"final/{k}": float(v[i]) for k, v in final_row.items()
                 if k != "step" and isinstance(v, list) and v[i] is not None
                 and np.isfinite(v[i])}
      values = {k.removeprefix("hp."): (float(v) if isinstance(v, (int, float)) else str(v))
                for k, v in lab.items()}
      for summary in hparams(values, metrics):  # the experiment, session start and end
        w.file_writer.add_summary(summary)
      for k, v in metrics.items():  # the view reads each session's metrics as its scalars
        w.add_scalar(k, v, step)

  def close(self) -> None:
    for w in self.writers:
      w.close()


class NoWriter:
  """What a run writes without tensorboardX (or on a process other than the main one)."""
  def scalars(self, row): pass
  def figures(self, workdir, step): return []
  def hparams(self, final_row): pass
  def close(self): pass


def open_writer(workdir: str, config_json: dict, members=None, start: int = 0, *,
                enabled: bool = True, log: Callable = print) -> RunWriter | NoWriter:
  """A RunWriter when `enabled` and tensorboardX is installed, else a NoWriter (the
  missing install said once per process)."""
  if enabled and available():
    return RunWriter(workdir, config_json, members, start)
  if enabled and not _told[0]:
    _told[0] = True
    log(INSTALL)
  return NoWriter()


def rebuild(workdir: str) -> str:
  """The event files of the run in `workdir` written afresh from its config.json,
  metrics.jsonl and PNG figures (tb/ replaced). Returns the tb directory."""
  if not available():
    raise ImportError(INSTALL)
  records.require_run(workdir, "lsx tensorboard", trained=False)
  config = records.read_config(os.path.join(workdir, "config.json"))
  rows = records.read_metrics(workdir)
  if not rows:
    raise records.WorkdirError(f"{workdir} has no metrics.jsonl rows to write: train it first.")
  members = None
  if records.is_sweep(config):
    c = records.config_from_json(os.path.join(workdir, "config.json"))
    names = dict(config.get("sweep", {}).get("hp") or {})
    members = sweep.plan(c, {**{n: 0.0 for n in names}, **dict(config.get("hp") or {})}).labels
  root = os.path.join(workdir, SUBDIR)
  shutil.rmtree(root, ignore_errors=True)
  w = RunWriter(workdir, config, members)
  for row in rows:
    w.scalars(row)
  w.figures(workdir, int(rows[-1]["step"]))
  w.hparams(rows[-1])
  w.close()
  return root
