"""Score one representation with every metric (what experiments/evaluate.py runs)."""
from __future__ import annotations

import json
import os
import time
from typing import Callable

import jax
import numpy as np

from lsx.data import renders
from lsx.metrics.dci import dci
from lsx.metrics.infomec import infomec
from lsx.metrics.interventions import beta_vae_score, factor_vae_score
from lsx.metrics.mig import mig
from lsx.metrics.sap import sap

ALL = ("infomec", "mig", "dci", "sap", "factor_vae", "beta_vae")


def encode_samples(represent: Callable, dataset, rng, n: int, chunk: int = 1000):
  """(latents [n, d] float32, factors [n, F] int32) for n random samples of the dataset."""
  enc = jax.jit(lambda r, m: (lambda x, f: (represent(x), f))(*dataset.sample(r, m)),
                static_argnums=1)
  zs, fs, done, i = [], [], 0, 0
  while done < n:
    m = min(chunk, n - done)
    z, f = enc(jax.random.fold_in(rng, i), m)
    zs.append(np.asarray(z, np.float32))
    fs.append(np.asarray(f))
    done, i = done + m, i + 1
  return np.concatenate(zs), np.concatenate(fs)


def evaluate(represent: Callable, dataset, rng, *, discrete_latents: bool = False,
             metrics=ALL, num_samples: int = 10000, num_test: int = 5000,
             dci_estimator: str = "gbt", intervention_train: int = 10000,
             intervention_eval: int = 5000, dci_jobs: int = 1, log=print,
             dry_run: bool = False) -> dict:
  """Every metric in `metrics` on `represent` (images -> latents). Flat dict of floats.

  Sizes default to disentanglement_lib's (10000 train / 5000 test; interventions 10000 /
  5000 votes of 64); shrink them for quick looks on a CPU. `dry_run`: check the arguments
  and return {}.
  """
  unknown = sorted(set(metrics) - set(ALL))
  if unknown:
    raise ValueError(f"Unknown metrics {unknown}; choose from {list(ALL)}.")
  for name, n, least in (("num_samples", num_samples, 20), ("num_test", num_test, 20)):
    if int(n) < least:
      raise ValueError(f"{name}={n}: the metrics need at least {least} samples "
                       f"(disentanglement_lib uses 10000 / 5000).")
  if dci_estimator not in ("gbt", "logistic"):
    raise ValueError(f"Unknown DCI estimator {dci_estimator!r}; choose 'gbt' "
                     f"(disentanglement_lib) or 'logistic' (fast, pure JAX).")
  if dry_run:  # the checks alone, before a workdir is loaded
    return {}
  k_train, k_test, k_int = jax.random.split(rng, 3)
  z, f = encode_samples(represent, dataset, k_train, num_samples)
  needs_test = {"dci", "sap"} & set(metrics)
  zt, ft = encode_samples(represent, dataset, k_test, num_test) if needs_test else (None, None)
  out, errors = {}, {}

  def timed(name, fn):
    t0 = time.perf_counter()
    res = fn()
    log(f"  {name}: {time.perf_counter() - t0:.1f}s")
    return res

  def attempt(name, fn):
    """One metric; a refusal (ValueError) is recorded and the others still run."""
    try:
      out.update(timed(name, fn))
    except ValueError as e:
      log(f"  {name}: not computed: {e}")
      errors[name] = str(e)

  def _infomec():
    r = infomec(z, f, discrete_latents)
    return {**{k: r[k] for k in ("infom", "infoc", "infoe")}, "nmi": r["nmi"].tolist(),
            "active_latents": int(r["active_latents"].sum())}

  def _dci():
    r = dci(z, f, zt, ft, estimator=dci_estimator, n_jobs=dci_jobs)
    return {f"dci_{k}": v for k, v in r.items() if k != "importance"}

  if "infomec" in metrics:
    attempt("infomec", _infomec)
  if "mig" in metrics:
    attempt("mig", lambda: {"mig": mig(z, f)})
  if "dci" in metrics:
    attempt("dci", _dci)
  if "sap" in metrics:
    attempt("sap", lambda: {"sap": sap(z, f, zt, ft)["sap"]})
  if "factor_vae" in metrics and renders(dataset):
    attempt("factor_vae", lambda: {"factor_vae": factor_vae_score(
        represent, dataset, jax.random.fold_in(k_int, 0), num_train=intervention_train,
        num_eval=intervention_eval, num_variance_estimate=num_samples)["eval_accuracy"]})
  if "beta_vae" in metrics and renders(dataset):
    attempt("beta_vae", lambda: {"beta_vae": beta_vae_score(
        represent, dataset, jax.random.fold_in(k_int, 1), num_train=intervention_train,
        num_eval=intervention_eval)["eval_accuracy"]})
  if errors and len(set(errors.values())) == 1 and not out:  # one cause refused them all
    raise ValueError(next(iter(errors.values())))
  if errors:
    out["errors"] = errors
  return out


def evaluate_workdir(workdir: str, *, metrics=None, seed: int = 0, log=print, **kw) -> dict:
  """Score the latest checkpoint of `workdir`; writes and returns metrics.json's dict.

  For a sweep every member is scored on the same samples: metrics.json holds
  {"members": [...]} and each member's scores are added as columns to sweep.csv.
  """
  evaluate(None, None, None, metrics=tuple(metrics or ALL), log=None, dry_run=True, **kw)
  t0 = time.perf_counter()
  from lsx.train import load_run, sweep  # late: lsx.train does not depend on metrics

  setup, state = load_run(workdir)
  if not hasattr(setup.model, "represent"):
    raise ValueError(f"{workdir} is a {setup.config.get('family')!r} run: experiments.evaluate "
                     f"scores the latents of autoencoders. A sparse autoencoder's scores are "
                     f"in its metrics.json (written at the end of training); directions and "
                     f"flows are scored by experiments.discover / experiments.flows.")
  if not os.access(workdir, os.W_OK):  # before the minutes of scoring, not after
    raise PermissionError(f"workdir {workdir} is not writable: metrics.json could not be "
                          f"written; make it writable or copy the run.")
  members = sweep.plan(setup.config, setup.hp)
  model = setup.model
  diverged = {}  # {member: first non-finite step} the training run recorded
  if os.path.exists(os.path.join(workdir, "nonfinite.json")):
    with open(os.path.join(workdir, "nonfinite.json")) as f:
      diverged = {int(k): int(v) for k, v in json.load(f).items()}

  def score(params, step, seed_of_run):
    represent = lambda x: model.represent(params, x)
    res = evaluate(represent, setup.dataset, jax.random.key(seed),
                   discrete_latents=model.bottleneck.discrete,
                   metrics=tuple(metrics or ALL), log=log, **kw)
    return {"step": step, "objective": setup.config.objective.name, "seed": seed_of_run, **res}

  if members is None:
    log(f"evaluating {workdir} (step {int(state.step)}, {setup.config.objective.name})")
    out = score(state.params, int(state.step), int(setup.config.seed))
    failed = out.get("errors")
    rows = [(k, v) for k, v in out.items() if isinstance(v, float)]
    log("\n".join(f"{k:>28s}  {v:.4f}" for k, v in rows))
  else:
    failed = None
    results = []
    for i in range(members.size):
      log(f"evaluating member {i}/{members.size} of {workdir} ({members.labels[i]})")
      params = jax.tree.map(lambda a: a[i], state.params)
      step_i, seed_i = int(np.asarray(state.step)[i]), int(members.seeds[i])
      why = None
      if i in diverged:
        why = f"diverged: non-finite loss at step {diverged[i]}"
      elif not all(bool(np.all(np.isfinite(np.asarray(a)))) for a in jax.tree.leaves(params)):
        why = "diverged: non-finite parameters"
      if why:
        log(f"member {i} ({members.labels[i]}) {why}: not scored")
        results.append({"step": step_i, "objective": setup.config.objective.name,
                        "seed": seed_i, "error": why})
        continue
      try:
        results.append(score(params, step_i, seed_i))
      except ValueError as e:  # a member whose codes the metrics refuse: named, others kept
        log(f"member {i} ({members.labels[i]}) could not be scored: {e}")
        results.append({"step": step_i, "objective": setup.config.objective.name,
                        "seed": seed_i, "error": str(e)})
    out = {"members": results}
    _merge_sweep_csv(os.path.join(workdir, "sweep.csv"), results)
    keys = list(dict.fromkeys(k for r in results for k, v in r.items() if isinstance(v, float)))
    log(f"{'member':>6s} " + " ".join(f"{k[:12]:>12s}" for k in keys))
    for i, r in enumerate(results):
      log(f"{i:6d} " + " ".join(f"{r[k]:12.4f}" if k in r else f"{'—':>12s}" for k in keys)
          + (f"  {r['error']}" if "error" in r else ""))
  path = os.path.join(workdir, "metrics.json")
  with open(path + ".tmp", "w") as f:  # written whole or not at all
    json.dump(out, f, indent=1)
  os.replace(path + ".tmp", path)
  log(f"wrote {os.path.join(workdir, 'metrics.json')} in {time.perf_counter() - t0:.1f}s")
  if failed:
    raise ValueError(f"{', '.join(failed)} could not be computed ({'; '.join(failed.values())}); "
                     f"the other metrics were written to {path}.")
  return out


def _merge_sweep_csv(path: str, results) -> None:
  import csv
  rows = list(csv.DictReader(open(path))) if os.path.exists(path) else [{} for _ in results]
  for row, res in zip(rows, results):
    row.update({k: v for k, v in res.items() if isinstance(v, float)})
    if "error" in res:
      row["eval_error"] = res["error"]
    elif "errors" in res:
      row["eval_error"] = "; ".join(f"{k}: {v}" for k, v in res["errors"].items())
  keys = list(dict.fromkeys(k for r in rows for k in r))
  with open(path + ".tmp", "w", newline="") as f:
    w = csv.DictWriter(f, keys)
    w.writeheader()
    w.writerows(rows)
  os.replace(path + ".tmp", path)
