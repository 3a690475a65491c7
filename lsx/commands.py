"""The `lsx` command: one entry point for the experiment scripts, and a table of runs.

  lsx train --config configs/betavae_sprites.py        # = python -m experiments.train ...
  lsx evaluate --workdir workdirs/betavae_sprites
  lsx runs [DIR]                                       # the workdirs under DIR (workdirs/)
  lsx tensorboard WORKDIR                              # its TensorBoard events from metrics.jsonl
  lsx <command> --help                                 # its config and flags

Subcommands run `experiments/<module>.py` of the lsx checkout in the current directory
(the scripts and `configs/` live there, beside the package), with the same flags; the
`python -m experiments.X` forms keep working. `lsx runs` reads each workdir through
`lsx.records.inspect_workdir` (read-only) and prints family, step / total, last loss,
members, diverged members and status (running: its lock held; finished; stopped).
"""
from __future__ import annotations

import difflib
import json
import os
import sys
from lsx.records import read_metrics
from lsx.records import inspect_workdir

COMMANDS = {
    "train": ("experiments.train", "train a run of any family (autoencoder, directions, flows, "
                                   "SAE, relative, diffusion)"),
    "evaluate": ("experiments.evaluate", "score a trained autoencoder with every metric"),
    "discover": ("experiments.discover", "fit and score direction methods on a decoder"),
    "flows": ("experiments.flows", "train and score potential flows"),
    "hspace": ("experiments.hspace", "find and score directions in a denoiser's h-space"),
    "compare": ("experiments.compare_models", "train configs over seeds and tabulate their metrics"),
    "compare_spaces": ("experiments.compare_spaces", "similarity / stitching of a sweep's "
                                                     "latent spaces"),
    "claims": ("experiments.claims", "measure the papers' claims over seeds"),
    "extract": ("experiments.extract_member", "pull one member out of a sweep"),
    "probe": ("experiments.probe_objective", "probe an objective's terms on a trained run"),
}


def usage() -> str:
  lines = ["usage: lsx <command> [flags]    (lsx <command> --help: its config and flags)", ""]
  lines += [f"  {name:<15s} {what}" for name, (_, what) in COMMANDS.items()]
  lines += [f"  {'runs [DIR]':<15s} the workdirs under DIR (default workdirs/): family, "
            f"step / total, last loss, members, status",
            f"  {'tensorboard DIR':<15s} write a run's TensorBoard events (DIR/tb) from its "
            f"metrics.jsonl and figures"]
  return "\n".join(lines)


def find_runs(root: str, depth: int = 3) -> list[str]:
  """Workdirs (directories holding config.json) under `root`, at most `depth` levels down,
  sorted; a workdir's own subdirectories are not searched."""
  out = []

  def walk(d, level):
    if os.path.isfile(os.path.join(d, "config.json")):
      out.append(d)
      return
    if level >= depth:
      return
    try:
      names = sorted(os.listdir(d))
    except OSError:
      return
    for n in names:
      p = os.path.join(d, n)
      if os.path.isdir(p) and not os.path.islink(p) and not n.startswith("."):
        walk(p, level + 1)
  walk(root, 0)
  return out


def _last_loss(workdir: str):
  rows = read_metrics(workdir)
  if not rows or "loss" not in rows[-1]:
    return None
  v = rows[-1]["loss"]
  vals = [float(x) for x in (v if isinstance(v, list) else [v])]
  return sum(vals) / len(vals)


def runs_table(root: str) -> list[dict]:
  """One row per workdir under `root` (see the module doc); a workdir the inspector
  refuses is listed with its error as status."""
  rows = []
  for wd in find_runs(root):
    rel = os.path.relpath(wd, root)
    try:
      st = inspect_workdir(wd)
    except (OSError, ValueError) as e:
      rows.append({"workdir": rel, "family": "?", "step": "", "loss": "", "members": "",
                   "diverged": "", "status": f"unreadable: {str(e)[:80]}"})
      continue
    loss = _last_loss(wd)
    rows.append({"workdir": rel, "family": st.family or "?",
                 "step": f"{st.latest_step or 0}/{st.total_steps or '?'}",
                 "loss": "" if loss is None else f"{loss:.4g}", "members": st.members,
                 "diverged": len(st.failed), "status": st.status})
  return rows


def format_table(rows: list[dict]) -> str:
  if not rows:
    return "(no runs)"
  keys = list(rows[0])
  width = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in keys}
  line = lambda r: "  ".join(str(r[k]).ljust(width[k]) for k in keys).rstrip()
  return "\n".join([line({k: k for k in keys})] + [line(r) for r in rows])


def main(argv: list[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv or argv[0] in ("-h", "--help", "help"):
    print(usage())
    return 0
  cmd, rest = argv[0], argv[1:]
  if cmd == "runs":
    dirs = [a for a in rest if not a.startswith("--")]
    unknown = [a for a in rest if a.startswith("--") and a != "--json"]
    root = dirs[0] if dirs else "workdirs"
    if unknown or len(dirs) > 1 or not os.path.isdir(root):
      print(f"error: lsx runs [DIR] [--json] takes one directory, got {rest!r} "
            f"({root} is {'not a directory' if not os.path.isdir(root) else 'one of them'}).",
            file=sys.stderr)
      return 2
    rows = runs_table(root)
    if "--json" in rest:
      print(json.dumps(rows, indent=1))
    else:
      print(format_table(rows))
    return 0
  if cmd == "tensorboard":
    return tensorboard(rest)
  if cmd not in COMMANDS:
    close = difflib.get_close_matches(cmd, list(COMMANDS) + ["runs", "tensorboard"], n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    print(f"error: unknown command {cmd!r}.{hint}\n\n{usage()}", file=sys.stderr)
    return 2
  module = COMMANDS[cmd][0]
  if os.getcwd() not in sys.path:
    sys.path.insert(0, os.getcwd())
  if not os.path.isfile(os.path.join(os.getcwd(), *module.split(".")) + ".py"):
    print(f"error: lsx {cmd} runs {module.replace('.', '/')}.py of an lsx checkout: run it "
          f"from the repository root (where experiments/ and configs/ are).", file=sys.stderr)
    return 2
  import runpy
  sys.argv = [f"lsx {cmd}"] + rest
  runpy.run_module(module, run_name="__main__", alter_sys=True)
  return 0


def tensorboard(args: list[str]) -> int:
  """`lsx tensorboard WORKDIR`: the run's event files rebuilt (lsx.train.events.rebuild)."""
  from lsx import cli
  from lsx.train import events
  if len(args) != 1 or args[0].startswith("-"):
    print("error: lsx tensorboard WORKDIR takes one run's workdir, got "
          f"{args!r}.", file=sys.stderr)
    return 2
  try:
    out = events.rebuild(args[0])
  except ImportError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except cli._user_errors() as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"wrote {out}: tensorboard --logdir {out}")
  return 0


def entry() -> None:
  """The console script."""
  sys.exit(main())
