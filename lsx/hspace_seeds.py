"""The h-space pipeline over several denoiser runs (seeds), as mean ± std.

    python -m experiments.hspace --config configs/hspace_sprites.py:cpu \
        "--config.diffusion.workdirs=('workdirs/diffusion_sprites','workdirs/diffusion_sprites_seed1')"

Each run of `config.diffusion.workdirs` is scored by `lsx.traversal_eval.hspace` in
`<config.workdir>/<run's base name>` (a run already scored there, for that denoiser, is
read back rather than scored again: the pipeline resumes by run). Then, over the runs,
every method's scores (the traversal scorer's DFA disentanglement, completeness,
direction MIG, coverage, VP, off-manifold change) and the sample quality of each
generator (validity and mean factor TV, the data floor row included) as lsx.claims.spread
(mean, sample std, per seed), and for each method whether its disentanglement exceeds the
random h-directions' by more than the two spreads (lsx.claims.exceeds). Writes
`scores_seeds.json` in config.workdir and returns it.
"""
from __future__ import annotations

import json
import os
from typing import Callable

from lsx import claims as lc, records, traversal_eval, viz
from lsx.records import write_json

METRICS = ("disentanglement", "completeness", "direction_mig", "coverage", "vp",
           "off_manifold")
REFERENCE_ROWS = ("random", "factors")  # not discovery methods: no "best method" among them


def check_workdirs(config) -> tuple[str, ...]:
  """config.diffusion.workdirs: >= 2 distinct trained denoiser runs, refused by name before
  anything is computed (lsx.records.require_run: a diffusion run, not a sweep, trained)."""
  wds = tuple(str(w) for w in config.diffusion.get("workdirs", ()))
  if len(wds) < 2 or len(set(wds)) != len(wds):
    raise ValueError(f"config.diffusion.workdirs must name >= 2 distinct denoiser runs (one "
                     f"per seed), got {wds}; for one run set config.diffusion.workdir.")
  names = [os.path.basename(w.rstrip("/")) for w in wds]
  if len(set(names)) != len(names):
    raise ValueError(f"config.diffusion.workdirs {wds}: their base names {names} must differ "
                     f"(each is scored in <config.workdir>/<base name>).")
  for w in wds:  # a run of another family, or a sweep, is refused as require_run says
    try:
      records.require_run(w, "experiments.hspace", ("diffusion",), sweep=False)
    except FileNotFoundError as e:
      raise FileNotFoundError(
          f"{w} holds no trained denoiser ({e}) Train it first, e.g. python -m "
          f"experiments.train --config {config.diffusion.config} --config.seed=<seed> "
          f"--workdir {w}") from None
  return wds


def _per_run(config, wd: str, log: Callable) -> dict:
  out = os.path.join(config.workdir, os.path.basename(wd.rstrip("/")))
  path = os.path.join(out, "scores.json")
  if os.path.exists(path):
    with open(path) as f:
      got = json.load(f)
    if got.get("denoiser") == wd:
      log(f"{wd}: scored before in {out}, read back")
      return got
  sub = config.copy_and_resolve_references()
  with sub.unlocked():
    sub.diffusion.workdir, sub.diffusion.workdirs, sub.workdir = wd, (), out
  traversal_eval.hspace(sub, log)
  with open(path) as f:
    return json.load(f)


def aggregate(per_run: list[dict], workdirs) -> dict:
  """Mean ± std over runs of every method's scores and every generator's sample quality
  (module doc), from the runs' scores.json contents."""
  methods = [m for m in per_run[0]["rows"] if all(m in r["rows"] for r in per_run)]
  rows = {}
  for m in methods:
    first = [r["rows"][m]["members"][0] for r in per_run]
    rows[m] = {k: lc.spread([f[k] for f in first]) for k in METRICS if k in first[0]}
  quality = {}
  for name in per_run[0].get("sample_quality", {}):
    if all(name in r.get("sample_quality", {}) for r in per_run):
      qs = [r["sample_quality"][name] for r in per_run]
      quality[name] = {"validity": lc.spread([q["validity"] for q in qs]),
                       "tv_mean": lc.spread([q["tv_mean"] for q in qs]),
                       "num": int(qs[0]["num"])}
  out = {"denoisers": list(workdirs), "rows": rows, "sample_quality": quality}
  if "random" in rows:
    vs = {m: lc.exceeds(rows[m]["disentanglement"], rows["random"]["disentanglement"])
          for m in rows if m != "random"}
    out["disentanglement_exceeds_random"] = vs
    found = [m for m in rows if m not in REFERENCE_ROWS]
    if found:
      best = max(found, key=lambda m: rows[m]["disentanglement"]["mean"])
      out["best_method"] = {"method": best, "disentanglement": rows[best]["disentanglement"],
                            "exceeds_random": vs[best]}
  return out


def hspace_seeds(config, log: Callable = viz.log) -> dict:
  """Score every run of config.diffusion.workdirs and write their spread (module doc)."""
  traversal_eval.check_hspace(config)
  wds = check_workdirs(config)
  per_run = [_per_run(config, wd, log) for wd in wds]
  out = aggregate(per_run, wds)
  os.makedirs(config.workdir, exist_ok=True)
  write_json(os.path.join(config.workdir, "scores_seeds.json"), out, indent=1)
  log(f"{'row':<14}" + "".join(f"{k:>22}" for k in ("disentanglement", "vp")))
  for m, r in out["rows"].items():
    log(f"{m:<14}" + "".join(
        f"{r[k]['mean']:>14.3f} ± {r[k]['std']:.3f}" if k in r else f"{'':>22}"
        for k in ("disentanglement", "vp")))
  for name, q in out["sample_quality"].items():
    log(f"{name}: validity {q['validity']['mean']:.3f} ± {q['validity']['std']:.3f}, "
        f"factor TV {q['tv_mean']['mean']:.3f} ± {q['tv_mean']['std']:.3f}")
  return out
