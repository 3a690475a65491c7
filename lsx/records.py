"""A workdir's records, written one way and read back by one inspector.

A workdir holds:

  config.json       the config the run was trained with (what `load_run` rebuilds)
  metrics.jsonl     one JSON object per logged chunk: {"step", <metric>: value | [members]}
  nonfinite.json    {member: step of its first non-finite loss} (a sweep's failed members)
  history.jsonl     config changes accepted on resume (allow_config_change)
  checkpoints/      orbax steps <n>/, each with checksums.json (lsx.train.checkpoint)
  sweep.csv/png, figures, scores                        (written by the families)

Every record is written whole or not at all (`atomic_write`: a temporary file renamed
over the target), so a kill leaves the previous version. `inspect_workdir` reads what a
workdir holds into a `WorkdirState` before anything is written, and refuses by name
every state a run cannot resume from or must not overwrite (`WorkdirError`): a file where
a directory belongs, records of the wrong type, a record of another config with no
checkpoint to resume, a checkpoint past the steps the config asks for.
"""
from __future__ import annotations

import dataclasses
import json
import os


class WorkdirError(ValueError):
  """A workdir whose contents a command cannot use or must not overwrite."""


def atomic_write(path: str, data: str | bytes) -> str:
  """Write `data` to `path` through `path`.tmp and a rename: readers see the old file or
  the new one, never half of one. Returns `path`."""
  tmp = path + ".tmp"
  binary = isinstance(data, bytes)
  with open(tmp, "wb") if binary else open(tmp, "w", newline="") as f:
    f.write(data)
  os.replace(tmp, path)
  return path


def write_json(path: str, obj, **dumps) -> str:
  """`obj` as JSON at `path` (atomically; `dumps`: json.dumps options)."""
  return atomic_write(path, json.dumps(obj, **dumps) + "\n")


def config_to_json(x):
  """A config (ConfigDict or dict) as plain JSON data: what config.json holds and
  `config_from_json` reads back; arrays become lists, anything else its str()."""
  if hasattr(x, "to_dict"):
    x = x.to_dict()
  return json.loads(json.dumps(x, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def write_config(config, workdir: str) -> str:
  """Write `config` as `workdir`/config.json (what `load_run` rebuilds a run from)."""
  return write_json(os.path.join(workdir, "config.json"), config_to_json(config), indent=2,
                    sort_keys=True)


def config_from_json(path: str):
  """The ConfigDict a run was trained with, from its workdir's config.json."""
  import ml_collections
  return ml_collections.ConfigDict(read_config(path))


def read_config(path: str) -> dict:
  """A workdir's config.json as a dict (a file that is not a config refused by name)."""
  try:
    with open(path) as f:
      data = json.load(f)
  except ValueError as e:
    raise WorkdirError(f"{path} is not valid JSON ({e}): the file was cut short or edited. "
                       f"Rewrite it from the config the run was trained with "
                       f"(lsx.train.write_config).") from None
  except IsADirectoryError:
    raise WorkdirError(f"{path} is a directory where the run's config.json belongs: move "
                       f"it away, or train in a new workdir.") from None
  if not isinstance(data, dict):
    raise WorkdirError(f"{path} holds a JSON {type(data).__name__}, not the config object "
                       f"lsx.train.write_config writes: restore it, or train in a new "
                       f"workdir.")
  return data


def _parse(line: str):
  try:
    return json.loads(line)
  except ValueError:
    return None


def read_metrics(workdir: str) -> list[dict]:
  """The rows of a run's metrics.jsonl ([] without one; a line a kill tore is skipped)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [r for r in (_parse(l) for l in f if l.strip()) if isinstance(r, dict)]


def truncate_metrics(path: str, max_step: int, print_fn=None) -> None:
  """Make metrics.jsonl match the state resumed at `max_step`: drop the lines written
  after that checkpoint and a line a kill tore (reported)."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    rows = [(l, _parse(l)) for l in f if l.strip()]
  torn = sum(r is None for _, r in rows)
  if torn and print_fn:
    print_fn(f"{path}: dropped {torn} unreadable line(s) (a write cut short by a kill)")
  lines = [l if l.endswith("\n") else l + "\n" for l, r in rows
           if r is not None and r.get("step", 0) <= max_step]
  atomic_write(path, "".join(lines))


def load_failed(workdir: str, start: int) -> dict:
  """{member: step of its first non-finite loss} recorded by the run resumed at `start`
  (failures after that step are dropped: the resumed run meets them again)."""
  path = os.path.join(workdir, "nonfinite.json")
  if not os.path.exists(path):
    return {}
  if start == 0:
    os.remove(path)
    return {}
  return {k: v for k, v in read_failed(workdir).items() if v <= start}


def read_failed(workdir: str) -> dict:
  """{member: step} of nonfinite.json ({} when absent); a file of another shape is named."""
  path = os.path.join(workdir, "nonfinite.json")
  if not os.path.exists(path):
    return {}
  try:
    with open(path) as f:
      data = json.load(f)
    return {int(k): int(v) for k, v in data.items()}
  except (ValueError, AttributeError, TypeError):
    raise WorkdirError(f"{path} is not the {{member: step}} record of a sweep's non-finite "
                       f"members: delete it (the run then treats every member as healthy) "
                       f"or restore it.") from None


def save_failed(workdir: str, failed: dict) -> None:
  write_json(os.path.join(workdir, "nonfinite.json"), {str(k): v for k, v in failed.items()})


def append_metrics(path: str, row: dict) -> None:
  """One row of metrics.jsonl (appended: a kill can tear only the last line, which the
  readers and `truncate_metrics` drop)."""
  with open(path, "a") as f:
    f.write(json.dumps(row) + "\n")


def append_history(workdir: str, row: dict) -> None:
  """One line of history.jsonl (config changes accepted on resume)."""
  with open(os.path.join(workdir, "history.jsonl"), "a") as f:
    f.write(json.dumps(row) + "\n")


def lock_holder(workdir: str) -> dict | None:
  """The live holder {"pid", "host"} of `workdir`/.lock (lsx.train.workdir), None when
  no process holds it (no lock, a torn one, or a holder on this host that has exited)."""
  import socket
  try:
    with open(os.path.join(workdir, ".lock")) as f:
      holder = json.load(f)
    pid, host = int(holder["pid"]), holder.get("host")
  except (OSError, ValueError, KeyError, TypeError):
    return None
  if host not in (None, socket.gethostname()):
    return holder  # another host's process: cannot be checked from here
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return None
  except PermissionError:
    pass
  return holder


@dataclasses.dataclass(frozen=True)
class WorkdirState:
  """What a workdir holds, as `inspect_workdir` read it."""
  path: str
  exists: bool
  config: dict | None  # config.json's contents
  checkpoint_steps: tuple[int, ...]  # finished orbax steps
  unverified_steps: tuple[int, ...]  # steps without checksums.json
  metric_rows: int
  last_metric_step: int | None
  failed: dict  # nonfinite.json
  holder: dict | None = None  # the live holder of the workdir's lock (a run in progress)

  @property
  def family(self) -> str | None:
    return None if self.config is None else self.config.get("family", "autoencoder")

  @property
  def latest_step(self) -> int | None:
    return max(self.checkpoint_steps) if self.checkpoint_steps else None

  @property
  def trained(self) -> bool:
    return bool(self.checkpoint_steps)

  @property
  def members(self) -> int:
    return num_members(self.config)

  @property
  def status(self) -> str:
    """'running' (its lock held), 'finished' (checkpoint at train.steps), 'stopped' (a
    checkpoint short of it, no lock) or 'empty' (no checkpoint)."""
    if self.holder is not None:
      return "running"
    if not self.checkpoint_steps:
      return "empty"
    total = self.total_steps
    return "finished" if total is not None and self.latest_step >= total else "stopped"

  @property
  def total_steps(self) -> int | None:
    try:
      return int(self.config["train"]["steps"])
    except (TypeError, KeyError, ValueError):
      return None


def is_sweep(config: dict | None) -> bool:
  """Whether a recorded config trains a sweep (seeds or hyperparameters swept)."""
  spec = dict((config or {}).get("sweep") or {})
  spec.pop("mode", None)
  return any(not (isinstance(v, (list, tuple, dict)) and len(v) == 0) for v in spec.values())


def num_members(config: dict | None) -> int:
  """Members of a recorded config's sweep (1 for a single run)."""
  spec = dict((config or {}).get("sweep") or {})
  mode = spec.pop("mode", "product")
  lengths = [len(v) for k, v in spec.items() if k == "seed" and v]
  lengths += [len(v) for v in dict(spec.get("hp") or {}).values() if v]
  if not lengths:
    return 1
  if mode == "zip":
    return max(lengths)
  n = 1
  for x in lengths:
    n *= x
  return n


# what a family's run is for, named when a command is given a run it cannot use
FAMILY_USE = {"autoencoder": "an autoencoder",
              "relative_ae": "a relative autoencoder",
              "relative_decoder": "relative decoders (experiments.compare_spaces --stitch)",
              "sae": "a sparse autoencoder, whose scores are in its metrics.json",
              "directions": "learned directions, scored by experiments.discover",
              "flows": "potential flows, scored by experiments.flows",
              "diffusion": "a denoiser, whose h-space directions experiments.hspace finds and "
                           "scores beside a VAE decoder's (configs/hspace_*.py)",
              "h_directions": "contrastive h-space directions, scored by experiments.hspace"}


def require_run(workdir: str, command: str, families=None, *, sweep: bool | None = None,
                trained: bool = True) -> WorkdirState:
  """The `WorkdirState` of a run `command` reads, refused by name before it loads
  anything when the workdir is not a run, holds a family outside `families`, is (not) a
  sweep where `sweep` asks otherwise, or has no checkpoint (`trained`)."""
  st = inspect_workdir(workdir)
  if not st.exists:
    raise FileNotFoundError(f"{workdir} does not exist, so it has no config.json: give the "
                            f"workdir of a trained run (experiments.train writes one).")
  if st.config is None:
    raise FileNotFoundError(f"{workdir} has no config.json: is it a workdir written by "
                            f"experiments.train?")
  if families is not None and st.family not in families:
    want = " or ".join(FAMILY_USE.get(f, repr(f)) for f in families)
    raise WorkdirError(f"{workdir} holds a {st.family!r} run "
                       f"({FAMILY_USE.get(st.family, 'an unknown family')}): {command} reads "
                       f"{want}.")
  if sweep is True and not is_sweep(st.config):
    raise WorkdirError(f"{workdir} is a single run, not a sweep: {command} needs a sweep's "
                       f"members.")
  if sweep is False and is_sweep(st.config):
    raise WorkdirError(f"{workdir} holds a sweep; {command} reads a single run: extract one "
                       f"member first (python -m experiments.extract_member).")
  if trained and not st.trained:
    raise FileNotFoundError(f"{workdir}/checkpoints has no checkpoint yet: train first.")
  return st


def _is_dir_or_absent(path: str, what: str, workdir: str) -> None:
  if os.path.lexists(path) and not os.path.isdir(path):
    raise WorkdirError(f"{path} is a file where the run's {what} directory belongs: "
                       f"move it away (nothing of a run is in it), or train in a new workdir.")


def inspect_workdir(workdir: str) -> WorkdirState:
  """Read a workdir's records (nothing written); `WorkdirError` names a state no command
  can use: a file where the workdir, its checkpoints/ or a record belongs, config.json
  or metrics.jsonl rows or nonfinite.json of the wrong type."""
  workdir = str(workdir)
  if os.path.lexists(workdir) and not os.path.isdir(workdir):
    raise NotADirectoryError(f"{workdir} is a file, not a directory: give a workdir "
                             f"directory (a new one, or one a run wrote).")
  if not os.path.isdir(workdir):
    return WorkdirState(workdir, False, None, (), (), 0, None, {})
  _is_dir_or_absent(os.path.join(workdir, "checkpoints"), "checkpoints", workdir)
  for name in ("config.json", "metrics.jsonl", "nonfinite.json"):
    p = os.path.join(workdir, name)
    if os.path.isdir(p):
      raise WorkdirError(f"{p} is a directory where the run's {name} belongs: move it "
                         f"away, or train in a new workdir.")
  cfg_path = os.path.join(workdir, "config.json")
  config = read_config(cfg_path) if os.path.exists(cfg_path) else None
  steps, unverified = [], []
  ck = os.path.join(workdir, "checkpoints")
  if os.path.isdir(ck):
    for n in os.listdir(ck):
      if n.isdigit() and os.path.isdir(os.path.join(ck, n)):
        steps.append(int(n))
        if not os.path.exists(os.path.join(ck, n, "checksums.json")):
          unverified.append(int(n))
  rows, last = 0, None
  mpath = os.path.join(workdir, "metrics.jsonl")
  if os.path.exists(mpath):
    with open(mpath) as f:
      for i, line in enumerate(f):
        if not line.strip():
          continue
        r = _parse(line)
        if r is None:  # a torn last line (a kill): dropped on resume
          continue
        if not isinstance(r, dict) or not isinstance(r.get("step", 0), (int, float)):
          raise WorkdirError(f"{mpath} line {i + 1} is not a metrics row ({{\"step\": ..., "
                             f"...}}): the file was edited or is not lsx's; move it away to "
                             f"resume (the checkpoints hold the run).")
        rows += 1
        last = int(r.get("step", 0))
  return WorkdirState(workdir, True, config, tuple(sorted(steps)), tuple(sorted(unverified)),
                      rows, last, read_failed(workdir), lock_holder(workdir))


def check_writable(state: WorkdirState, config_json: dict, differ) -> None:
  """Refuse to start a run over records it must not overwrite or cannot resume:
  `config_json` the new run's config (as config.json would hold it), `differ(recorded,
  new) -> [keys]` the config keys that may not change on resume.

  - records (config.json and metrics rows) with no checkpoint, of another config: a fresh
    run would replace them;
  - a checkpoint past the steps the new config trains (train.steps below the run's);
  - a step without checksums where another step has them (`unverified`) is left to the
    restore, which refuses it by name (lsx.train.checkpoint)."""
  if not state.exists:
    return
  if state.config is not None and not state.checkpoint_steps and state.metric_rows:
    diff = differ(state.config, config_json)
    if diff:
      raise WorkdirError(
          f"{state.path} holds the records of another run (config.json and "
          f"{state.metric_rows} metrics rows; its checkpoints are gone) trained with another "
          f"config ({', '.join(diff[:6])}{', ...' if len(diff) > 6 else ''}): a fresh run "
          f"would overwrite them. Train in a new workdir, or move those records away.")
  latest = state.latest_step
  want = int(config_json.get("train", {}).get("steps", 0))
  if latest is not None and want < latest:
    raise WorkdirError(
        f"{state.path} holds a checkpoint at step {latest}, past train.steps={want}: the "
        f"record would claim {want} steps for a state of {latest}. Pass train.steps >= "
        f"{latest} to resume it (or evaluate it as it is), or train in a new workdir.")
