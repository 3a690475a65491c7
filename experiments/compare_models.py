"""Train several configs over several seeds, score each run, and tabulate mean +- std.

  python -m experiments.compare_models --configs=configs/qlae_scenes.py,configs/betavae_scenes.py,\
configs/ae_scenes.py --seeds=0,1,2 --root=workdirs/compare_scenes

Each (config, seed) trains in ROOT/<config>_s<seed> (resuming if it exists) and is scored
by experiments.evaluate; ROOT/comparison.csv has one row per run and ROOT/comparison.md
the mean +- std table. Every run gets the same budget (`--steps` overrides all configs).
"""
from __future__ import annotations

import csv
import io
import logging
import os

import numpy as np
from absl import flags

from lsx import cli, records
from lsx.runs import evaluate_workdir, train
from lsx.train.config import load_config

_CONFIGS = flags.DEFINE_list("configs", None, "Config files (path[:arg]).")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
_ROOT = flags.DEFINE_string("root", "workdirs/compare", "Where the runs go.")
_STEPS = flags.DEFINE_integer("steps", 0, "Training steps for every run (0: each config's).")
_METRICS = flags.DEFINE_list("metrics", ["infomec", "mig", "dci"], "Metrics to compute.")
_N = flags.DEFINE_integer("num_samples", 10000, "Evaluation samples.")
_NTEST = flags.DEFINE_integer("num_test", 5000, "Test samples (DCI/SAP).")
_DCI = flags.DEFINE_enum("dci_estimator", "gbt", ["gbt", "gbt_xla", "sklearn", "logistic"], "DCI estimator.")
_JOBS = flags.DEFINE_integer("dci_jobs", os.cpu_count() or 1,
                             "Threads (gbt) or processes (sklearn) for the DCI tree fits.")
_COLUMNS = ("infom", "infoc", "infoe", "mig", "dci_disentanglement", "dci_completeness",
            "dci_informativeness_test", "sap", "factor_vae", "beta_vae")


def table(rows, columns=_COLUMNS) -> str:
  """Markdown table of mean +- std per model over its seeds."""
  models = list(dict.fromkeys(r["model"] for r in rows))
  cols = [c for c in columns if any(c in r for r in rows)]
  out = ["| model | seeds | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
  for m in models:
    rs = [r for r in rows if r["model"] == m]
    cells = []
    for c in cols:
      v = np.array([r[c] for r in rs if c in r], float)
      cells.append(f"{v.mean():.3f} ± {v.std():.3f}" if len(v) else "")
    out.append(f"| {m} | {len(rs)} | " + " | ".join(cells) + " |")
  return "\n".join(out)


def main(argv):
  del argv
  logging.getLogger("absl").setLevel(logging.WARNING)
  os.makedirs(_ROOT.value, exist_ok=True)
  rows = []
  for seed in _SEEDS.value:  # seed-major: a run cut short still has every model
    for spec in _CONFIGS.value:
      name = os.path.splitext(os.path.basename(spec.partition(":")[0]))[0]
      config = load_config(spec)
      with config.unlocked():
        config.seed = int(seed)
        if _STEPS.value:
          config.train.steps = _STEPS.value
          config.train.ckpt_every = max(config.train.chunk,
                                        _STEPS.value // config.train.chunk * config.train.chunk)
      workdir = os.path.join(_ROOT.value, f"{name}_s{seed}")
      print(f"== {name} seed {seed} -> {workdir}", flush=True)
      train(config, workdir)
      res = evaluate_workdir(workdir, metrics=_METRICS.value, num_samples=_N.value,
                             num_test=_NTEST.value, dci_estimator=_DCI.value,
                             dci_jobs=_JOBS.value)
      rows.append({"model": name, **{k: v for k, v in res.items()
                                     if isinstance(v, (int, float, str))}})
      buf = io.StringIO()  # rewritten after every run: a cut-short comparison keeps its rows
      w = csv.DictWriter(buf, list(dict.fromkeys(k for r in rows for k in r)))
      w.writeheader()
      w.writerows(rows)
      records.atomic_write(os.path.join(_ROOT.value, "comparison.csv"), buf.getvalue())
  md = table(rows)
  records.atomic_write(os.path.join(_ROOT.value, "comparison.md"), md + "\n")
  print(md)


if __name__ == "__main__":
  flags.mark_flags_as_required(["configs"])
  cli.run(main)
