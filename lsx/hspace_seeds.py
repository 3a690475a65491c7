"""The h-space pipeline over several denoiser runs (seeds), as mean ± std.

    python -m experiments.hspace --config configs/hspace_sprites.py:cpu \
        "--config.diffusion.workdirs=('workdirs/diffusion_sprites','workdirs/diffusion_sprites_seed1')"

Each run of `config.diffusion.workdirs` is scored by `lsx.traversal_eval.hspace` in
`<config.workdir>/<run's base name>` (a run already scored there, for that denoiser, is
read back rather than scored again when it was scored with this config's settings, its
hspace, contrastive, pullback, manipulation, eval and vae sections: the pipeline resumes
by run, and a changed setting scores every run again). Then, over the runs,
every method's scores (the traversal scorer's DFA disentanglement, completeness,
direction MIG, coverage, VP, off-manifold change, the manipulation protocol's change and
leakage; per factor, `manipulation_summary`) and the sample quality of each
generator (validity and mean factor TV, the data floor row included) as lsx.claims.spread
(mean, sample std, per seed), Park et al.'s pullback geometry (`geometry_summary`) and
Asyrp's properties (`properties_summary`) as spreads, and for each method whether its
disentanglement exceeds the
random h-directions' by more than the two spreads (lsx.claims.exceeds). With
config.vae.workdir and config.vae.methods, the VAE decoder of the same data is scored once
by the same protocol (`lsx.traversal_eval.vae_decoder_rows`; its spread is over its rows'
members) and the best h-space method is judged non-inferior to its best unsupervised row
(lsx.claims.non_inferior, `at_least_vae_best`). Writes
`scores_seeds.json` and `scores_seeds.png` (every row's scores, mean ± std and each seed)
in config.workdir and returns the json's dict.
"""
from __future__ import annotations

import json
import os
from typing import Callable

import numpy as np

from lsx import claims as lc, records, traversal_eval, viz
from lsx.records import write_json

METRICS = ("disentanglement", "completeness", "direction_mig", "coverage", "vp",
           "off_manifold", "manip_change", "manip_leakage")
REFERENCE_ROWS = ("random", "factors")  # not discovery methods: no "best method" among them
# the VAE decoder's reference rows (lsx.directions.reference_sets), likewise
VAE_REFERENCE_ROWS = ("random", "latent axes", "factor directions (supervised)")


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
  sub = config.copy_and_resolve_references()
  with sub.unlocked():
    sub.diffusion.workdir, sub.diffusion.workdirs, sub.workdir = wd, (), out
    if sub.get("vae") is not None:  # the VAE decoder's rows are scored once, for all runs
      sub.vae.methods = ()
  settings = json.loads(json.dumps(traversal_eval.hspace_settings(sub)))  # as stored
  if os.path.exists(path):
    with open(path) as f:
      got = json.load(f)
    if got.get("denoiser") == wd and got.get("settings") == settings:
      log(f"{wd}: scored before in {out}, read back")
      return got
    if got.get("denoiser") == wd:
      log(f"{wd}: scored before in {out} with other settings than this config's "
          f"({', '.join(traversal_eval.SETTINGS)} sections): scoring it again")
  traversal_eval.hspace(sub, log)
  with open(path) as f:
    return json.load(f)


def aggregate(per_run: list[dict], workdirs, target: float = 0.25,
              floor: float = 0.01, vae_rows: dict | None = None) -> dict:
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
  if all("manipulation" in r["rows"][m]["members"][0] for r in per_run for m in methods):
    out["manipulation"] = manipulation_summary(per_run, methods, target, floor)
  if all("pullback_geometry" in r for r in per_run):
    out["pullback_geometry"] = geometry_summary([r["pullback_geometry"] for r in per_run])
  props = [r.get("properties", {}) for r in per_run]
  common = [m for m in props[0] if all(m in p for p in props)]
  if common:
    out["properties"] = {m: properties_summary([p[m] for p in props]) for m in common}
  if vae_rows:  # one VAE decoder: the spread is over its rows' members (learned seeds)
    vae = {m: {k: lc.spread([r[k] for r in rows]) for k in METRICS if k in rows[0]}
           for m, rows in vae_rows.items()}
    out["vae_decoder"] = {"rows": vae}
    found = [m for m in vae if m[len(traversal_eval.VAE_ROW):] not in VAE_REFERENCE_ROWS]
    if found:
      best = max(found, key=lambda m: vae[m]["disentanglement"]["mean"])
      out["vae_decoder"]["best_unsupervised"] = {
          "row": best, "disentanglement": vae[best]["disentanglement"]}
  if "random" in rows:
    vs = {m: lc.exceeds(rows[m]["disentanglement"], rows["random"]["disentanglement"])
          for m in rows if m != "random"}
    out["disentanglement_exceeds_random"] = vs
    found = [m for m in rows if m not in REFERENCE_ROWS]
    if found:
      best = max(found, key=lambda m: rows[m]["disentanglement"]["mean"])
      out["best_method"] = {"method": best, "disentanglement": rows[best]["disentanglement"],
                            "exceeds_random": vs[best]}
      vb = out.get("vae_decoder", {}).get("best_unsupervised")
      if vb:  # "at least the VAE decoder's best unsupervised row": lsx.claims.non_inferior
        out["best_method"]["at_least_vae_best"] = lc.non_inferior(
            rows[best]["disentanglement"], vb["disentanglement"])
  return out


def geometry_summary(geos: list[dict]) -> dict:
  """Park et al.'s pullback geometry over runs (lsx.diffusion.properties.pullback_geometry
  per run): at the early and the late timestep, the tangent overlap across samples, the
  image change and each factor's change by the top direction as spreads; and whether the
  early overlap exceeds the late one by more than the two spreads (lsx.claims.exceeds:
  Park's claim that early tangent spaces are shared)."""
  out = {}
  for when in ("early", "late"):
    gs = [g[when] for g in geos]
    out[when] = {"t": [int(g["t"]) for g in gs],
                 "overlap": lc.spread([g["overlap"] for g in gs]),
                 "overlap_random": float(gs[0]["overlap_random"]),
                 "image_change": lc.spread([g["image_change"] for g in gs]),
                 "factor_change": {f: lc.spread([g["factor_change"][f] for g in gs])
                                   for f in gs[0]["factor_change"]}}
  out["early_overlap_exceeds_late"] = lc.exceeds(out["early"]["overlap"],
                                                 out["late"]["overlap"])
  return out


def properties_summary(props: list[dict]) -> dict:
  """Asyrp's properties of one method's directions over runs (lsx.diffusion.properties.
  measure per run; the directions differ from run to run, so per direction only what is
  comparable): the largest factor change of any direction, the median coefficient of
  variation across samples and the median linearity R² over directions, the composition
  errors, robustness and both inversion round trips, each as a spread."""
  med = lambda key: lc.spread([float(np.median([d[key] for d in p["directions"]]))
                               for p in props])
  return {
      "max_change": lc.spread([max(abs(d["change"]) for d in p["directions"])
                               for p in props]),
      "median_cv": med("cv"), "median_r2": med("r2"),
      "composition": {k: lc.spread([p["composition"][k] for p in props])
                      for k in ("image_error", "factor_error")},
      "robustness": {k: lc.spread([p["robustness"][k] for p in props])
                     for k in ("h_validity", "x_validity", "image_change")},
      "inversion": {w: {k: lc.spread([p["inversion"][w][k] for p in props])
                        for k in ("mse", "same_factors")} for w in ("ddim", "exact")}}


def manipulation_summary(per_run: list[dict], methods, target: float, floor: float) -> dict:
  """Per ordinal factor, over the runs: each method's change of it by the direction chosen
  for it (the mean of both signs, in units of its range, on held-out anchors) and that
  direction's leakage as spreads; the discovery method (not a reference row) that moves it
  most on the mean; `informative` (some method, references included, moves it by more than
  `floor`, lsx.claims.informative); `moved`: that best discovery method's mean change is
  at least `target`. {"target", "floor", "factors": {factor: {...}},
  "informative_factors", "moved_factors"}."""
  first = per_run[0]["rows"][methods[0]]["members"][0]["manipulation"]
  factors = {}
  for fac in first:
    rows = {}
    for m in methods:
      ms = [r["rows"][m]["members"][0]["manipulation"][fac] for r in per_run]
      rows[m] = {"change": lc.spread([(x["change_pos"] + x["change_neg"]) / 2 for x in ms]),
                 "leakage": lc.spread([x["leakage"] for x in ms])}
    found = [m for m in methods if m not in REFERENCE_ROWS] or list(methods)
    best = max(found, key=lambda m: rows[m]["change"]["mean"])
    factors[fac] = {"methods": rows, "best_method": best,
                    "change": rows[best]["change"], "leakage": rows[best]["leakage"],
                    "informative": lc.informative({m: v["change"] for m, v in rows.items()},
                                                  floor),
                    "moved": bool(rows[best]["change"]["mean"] >= float(target))}
  return {"target": float(target), "floor": float(floor), "factors": factors,
          "informative_factors": [f for f, v in factors.items() if v["informative"]],
          "moved_factors": [f for f, v in factors.items() if v["moved"]]}


def save_plot(out: dict, path: str) -> None:
  """scores_seeds.png: every h-space row (and the VAE decoder's rows) as mean ± std over
  the seeds (the bars; sample std) with each seed's value (the dots)."""
  rows = {**out["rows"], **out.get("vae_decoder", {}).get("rows", {})}
  keys = [k for k in ("disentanglement", "completeness", "direction_mig", "coverage", "vp")
          if all(k in r for r in rows.values())]
  scored = {m: [{k: r[k]["per_seed"][i] for k in keys}
                for i in range(len(r[keys[0]]["per_seed"]))] for m, r in rows.items()}
  table = {m: {k: {"mean": r[k]["mean"], "std": r[k]["std"]} for k in keys}
           for m, r in rows.items()}
  viz.save_score_plot(scored, table, path)


def hspace_seeds(config, log: Callable = viz.log) -> dict:
  """Score every run of config.diffusion.workdirs and write their spread (module doc)."""
  traversal_eval.check_hspace(config)
  wds = check_workdirs(config)
  per_run = [_per_run(config, wd, log) for wd in wds]
  vae_rows = None
  if traversal_eval.wants_vae_rows(config):
    size = int(records.config_from_json(os.path.join(wds[0], "config.json")).data.size)
    vae_rows = traversal_eval.vae_decoder_rows(config, size, log)
  man = config.get("manipulation")
  out = aggregate(per_run, wds, target=float(man.target) if man is not None else 0.25,
                  vae_rows=vae_rows)
  os.makedirs(config.workdir, exist_ok=True)
  write_json(os.path.join(config.workdir, "scores_seeds.json"), out, indent=1)
  save_plot(out, os.path.join(config.workdir, "scores_seeds.png"))
  log(f"{'row':<14}" + "".join(f"{k:>22}" for k in ("disentanglement", "vp")))
  for m, r in out["rows"].items():
    log(f"{m:<14}" + "".join(
        f"{r[k]['mean']:>14.3f} ± {r[k]['std']:.3f}" if k in r else f"{'':>22}"
        for k in ("disentanglement", "vp")))
  for m, r in out.get("vae_decoder", {}).get("rows", {}).items():
    log(f"{m:<14}" + "".join(
        f"{r[k]['mean']:>14.3f} ± {r[k]['std']:.3f}" if k in r else f"{'':>22}"
        for k in ("disentanglement", "vp")))
  geo = out.get("pullback_geometry")
  if geo:
    log(f"pullback tangent overlap: early (t {geo['early']['t']}) "
        f"{geo['early']['overlap']['mean']:.3f} ± {geo['early']['overlap']['std']:.3f}, late "
        f"{geo['late']['overlap']['mean']:.3f} ± {geo['late']['overlap']['std']:.3f}; early "
        f"exceeds late: {geo['early_overlap_exceeds_late']}")
  if "at_least_vae_best" in out.get("best_method", {}):
    b = out["best_method"]
    log(f"best h-space method {b['method']}: disentanglement "
        f"{b['disentanglement']['mean']:.3f} ± {b['disentanglement']['std']:.3f}, "
        f"{'at least' if b['at_least_vae_best'] else 'below'} the VAE decoder's best "
        f"unsupervised row ({out['vae_decoder']['best_unsupervised']['row']})")
  for fac, v in out.get("manipulation", {}).get("factors", {}).items():
    log(f"manipulation {fac}: {v['best_method']} moves it {v['change']['mean']:.3f} ± "
        f"{v['change']['std']:.3f} of its range (leakage {v['leakage']['mean']:.3f}); "
        f"{'moved' if v['moved'] else 'not moved'} at the target "
        f"{out['manipulation']['target']}")
  for name, q in out["sample_quality"].items():
    log(f"{name}: validity {q['validity']['mean']:.3f} ± {q['validity']['std']:.3f}, "
        f"factor TV {q['tv_mean']['mean']:.3f} ± {q['tv_mean']['std']:.3f}")
  return out
