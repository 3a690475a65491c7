"""Score one representation with every metric (what experiments/evaluate.py runs)."""
from __future__ import annotations

import functools
import os
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lsx import records
from lsx.data import renders
from lsx.metrics import _info
from lsx.metrics.dci import _check, check_estimator, dci, dci_logistic_from_codes, dci_members
from lsx.metrics.infomec import infomec, infomec_from_codes
from lsx.metrics.interventions import beta_vae_score, factor_vae_score
from lsx.metrics.mig import mig, mig_from_codes
from lsx.metrics.sap import sap
from lsx.train import sweep

ALL = ("infomec", "mig", "dci", "sap", "factor_vae", "beta_vae")


def encode_samples(represent: Callable, dataset, rng, n: int, chunk: int = 1000,
                   member_axis: bool = False):
  """(latents [n, d] float32, factors [n, F] int32) for n random samples of the dataset;
  `member_axis`: `represent` returns [members, m, d] and so do the latents."""
  enc = jax.jit(lambda r, m: (lambda x, f: (represent(x), f))(*dataset.sample(r, m)),
                static_argnums=1)
  zs, fs, done, i = [], [], 0, 0
  while done < n:
    m = min(chunk, n - done)
    z, f = enc(jax.random.fold_in(rng, i), m)
    zs.append(np.asarray(z, np.float32))
    fs.append(np.asarray(f))
    done, i = done + m, i + 1
  return np.concatenate(zs, axis=1 if member_axis else 0), np.concatenate(fs)


@functools.partial(jax.jit, static_argnames=("kf",))
def _infomec_stacked(zs, codes, num_values, *, kf):
  """InfoMEC of every member's latents zs [M, n, d], one after another in one program."""
  return jax.lax.map(lambda z: infomec_from_codes(z, codes, num_values, kf=kf), zs)


@functools.partial(jax.jit, static_argnames=("kf",))
def _mig_stacked(zs, codes, num_values, *, kf):
  return jax.vmap(lambda z: mig_from_codes(z, codes, num_values, kf=kf))(zs)


@functools.partial(jax.jit, static_argnames=("kf",))
def _dci_logistic_stacked(zs, codes, zts, codes_test, *, kf):
  # lax.map, not vmap: L-BFGS's while loop under vmap runs every member to the slowest's
  # iteration count with batched line searches (measured 28 s for 16 members against 0.26 s
  # for one)
  return jax.lax.map(lambda ab: dci_logistic_from_codes(ab[0], codes, ab[1], codes_test, kf=kf),
                     (zs, zts))


def _check_args(metrics, num_samples, num_test, dci_estimator):
  unknown = sorted(set(metrics) - set(ALL))
  if unknown:
    raise ValueError(f"Unknown metrics {unknown}; choose from {list(ALL)}.")
  for name, n, least in (("num_samples", num_samples, 20), ("num_test", num_test, 20)):
    if int(n) < least:
      raise ValueError(f"{name}={n}: the metrics need at least {least} samples "
                       f"(disentanglement_lib uses 10000 / 5000).")
  check_estimator(dci_estimator)


def evaluate(represent: Callable, dataset, rng, *, discrete_latents: bool = False,
             metrics=ALL, num_samples: int = 10000, num_test: int = 5000,
             dci_estimator: str = "gbt", intervention_train: int = 10000,
             intervention_eval: int = 5000, dci_jobs: int | None = None, log=print,
             dry_run: bool = False) -> dict:
  """Every metric in `metrics` on `represent` (images -> latents). Flat dict of floats.

  Sizes default to disentanglement_lib's (10000 train / 5000 test; interventions 10000 /
  5000 votes of 64); shrink them for quick looks on a CPU. `dry_run`: check the arguments
  and return {}. A metric that refuses its input is recorded under "errors" and the
  others still run (all refused for one reason: that ValueError)."""
  _check_args(metrics, num_samples, num_test, dci_estimator)
  if dry_run:  # the checks alone, before a workdir is loaded
    return {}
  out = evaluate_members(lambda x: represent(x)[None], dataset, rng, [represent],
                         discrete_latents=discrete_latents, metrics=metrics,
                         num_samples=num_samples, num_test=num_test,
                         dci_estimator=dci_estimator, intervention_train=intervention_train,
                         intervention_eval=intervention_eval, dci_jobs=dci_jobs, log=log)[0]
  errors = out.get("errors", {})
  if errors and len(set(errors.values())) == 1 and len(out) == 1:  # one cause refused all
    raise ValueError(next(iter(errors.values())))
  return out


def evaluate_members(represent_all: Callable, dataset, rng, member_represents, *,
                     discrete_latents: bool = False, metrics=ALL, num_samples: int = 10000,
                     num_test: int = 5000, dci_estimator: str = "gbt",
                     intervention_train: int = 10000, intervention_eval: int = 5000,
                     dci_jobs: int | None = None, log=print) -> list[dict]:
  """`evaluate` for M members at once: `represent_all(images) -> [M, n, d]` encodes the
  same samples with every member in one program; InfoMEC (continuous latents), MIG and
  DCI-logistic are computed stacked over members (`lax.map` / `vmap` of the pure
  metrics), scikit-learn's DCI trees, SAP and the intervention scores (with
  `member_represents[i]`) member by member. One dict per member, refusals under "errors"."""
  _check_args(metrics, num_samples, num_test, dci_estimator)
  k_train, k_test, k_int = jax.random.split(rng, 3)
  z, f = encode_samples(represent_all, dataset, k_train, num_samples, member_axis=True)
  needs_test = {"dci", "sap"} & set(metrics)
  zt, ft = (encode_samples(represent_all, dataset, k_test, num_test, member_axis=True)
            if needs_test else (None, None))
  outs = score_members(z, f, zt, ft, metrics=metrics, discrete_latents=discrete_latents,
                       dci_estimator=dci_estimator, dci_jobs=dci_jobs, log=log)
  for i, rep in enumerate(member_represents):
    errors = outs[i].pop("errors", {})
    for name, score in (("factor_vae", factor_vae_score), ("beta_vae", beta_vae_score)):
      if name not in metrics or not renders(dataset):
        continue
      try:
        t0 = time.perf_counter()
        kw = dict(num_train=intervention_train, num_eval=intervention_eval)
        if name == "factor_vae":
          kw["num_variance_estimate"] = num_samples
        outs[i][name] = score(rep, dataset, jax.random.fold_in(k_int, int(name == "beta_vae")),
                              **kw)["eval_accuracy"]
        log(f"  {name}: {time.perf_counter() - t0:.1f}s")
      except ValueError as e:
        errors[name] = str(e)
    if errors:
      outs[i]["errors"] = errors
  return outs


def score_members(z, f, zt, ft, *, metrics=ALL, discrete_latents: bool = False,
                  dci_estimator: str = "gbt", dci_jobs: int | None = None,
                  log=print) -> list[dict]:
  """InfoMEC, MIG, DCI and SAP of stacked latents z [M, n, d] (test split zt [M, m, d])
  against factors f [n, F] (ft): one dict per member (refusals under "errors")."""
  m = z.shape[0]
  codes, kf, nvals = _info.encode_columns(f)
  codes, nvals = jnp.asarray(codes), jnp.asarray(nvals, jnp.int32)
  outs = [{} for _ in range(m)]
  errors = [{} for _ in range(m)]

  def timed(name, fn):
    t0 = time.perf_counter()
    res = fn()
    log(f"  {name}: {time.perf_counter() - t0:.1f}s" + (f" ({m} members)" if m > 1 else ""))
    return res

  def checked(name, standardize, zz=None):
    """Members whose latents pass the checks: {i: latents (standardized if asked)}."""
    ok = {}
    for i in range(m):
      try:
        ok[i] = _info.validate((z if zz is None else zz)[i], f, standardize=standardize)[0]
      except ValueError as e:
        errors[i][name] = str(e)
    return ok

  def per_member(name, fn):
    for i in range(m):
      try:
        t0 = time.perf_counter()
        outs[i].update(fn(i))
        log(f"  {name}: {time.perf_counter() - t0:.1f}s" + (f" (member {i})" if m > 1 else ""))
      except ValueError as e:
        log(f"  {name}: not computed" + (f" for member {i}" if m > 1 else "") + f": {e}")
        errors[i][name] = str(e)

  def stacked_metric(name, run, unpack):
    """`name` for every member whose latents pass the checks, as one program."""
    ok = checked(name, True)
    if all(np.unique(f[:, c]).size < 2 for c in range(f.shape[1])):
      for i in ok:
        errors[i][name] = f"every factor is constant: {name} is undefined. Sample factors that vary."
      return
    if ok:
      res = timed(name, lambda: jax.device_get(run(np.stack(list(ok.values())))))
      for row, i in enumerate(ok):
        outs[i].update(unpack(res, row))

  if "infomec" in metrics:
    if discrete_latents or m == 1:
      def one(i):
        r = infomec(z[i], f, discrete_latents)
        return {**{k: r[k] for k in ("infom", "infoc", "infoe")}, "nmi": r["nmi"].tolist(),
                "active_latents": int(r["active_latents"].sum())}
      per_member("infomec", one)
    else:
      stacked_metric("infomec", lambda zs: _infomec_stacked(zs, codes, nvals, kf=kf),
                     lambda r, row: {**{k: float(r[k][row]) for k in ("infom", "infoc", "infoe")},
                                     "nmi": np.asarray(r["nmi"][row]).tolist(),
                                     "active_latents": int(np.asarray(r["active_latents"][row]).sum())})
  if "mig" in metrics:
    stacked_metric("mig", lambda zs: _mig_stacked(zs, codes, nvals, kf=kf),
                   lambda r, row: {"mig": float(r["mig"][row])})
  if "dci" in metrics:
    if dci_estimator == "logistic" and m > 1:
      scaled = {}
      for i in range(m):
        try:
          scaled[i] = _check(z[i], f, zt[i], ft)
        except ValueError as e:
          errors[i]["dci"] = str(e)
      if scaled:
        both, kb, _ = _info.encode_columns(np.concatenate([f, ft], 0))
        res = timed("dci", lambda: jax.device_get(_dci_logistic_stacked(
            np.stack([v[0] for v in scaled.values()]), jnp.asarray(both[:len(f)]),
            np.stack([v[2] for v in scaled.values()]), jnp.asarray(both[len(f):]), kf=kb)))
        for row, i in enumerate(scaled):
          outs[i].update({f"dci_{k}": float(v[row]) for k, v in res.items() if k != "importance"})
    elif dci_estimator == "gbt" and m > 1:
      # every (member, factor) fit on one thread pool: the members keep every core busy
      res = timed("dci", lambda: dci_members([(z[i], zt[i]) for i in range(m)], f, ft,
                                             n_jobs=dci_jobs))
      for i, r in enumerate(res):
        if "error" in r:
          errors[i]["dci"] = r["error"]
        else:
          outs[i].update({f"dci_{k}": v for k, v in r.items() if k != "importance"})
    else:
      per_member("dci", lambda i: {f"dci_{k}": v for k, v in dci(
          z[i], f, zt[i], ft, estimator=dci_estimator, n_jobs=dci_jobs).items()
          if k != "importance"})
  if "sap" in metrics:
    per_member("sap", lambda i: {"sap": sap(z[i], f, zt[i], ft)["sap"]})
  for i in range(m):
    if errors[i]:
      outs[i]["errors"] = errors[i]
  return outs


def check_evaluate_args(metrics=None, **kw) -> None:
  """The arguments of `evaluate_run`, checked before a run is loaded."""
  evaluate(None, None, None, metrics=tuple(metrics or ALL), log=None, dry_run=True, **kw)


def evaluate_run(setup, state, workdir: str, *, metrics=None, seed: int = 0, log=print,
                 **kw) -> dict:
  """Score a loaded autoencoder run (`lsx.runs.evaluate_workdir` loads it from its
  workdir); writes and returns metrics.json's dict in `workdir`.

  For a sweep every member is scored on the same samples: metrics.json holds
  {"members": [...]} and each member's scores are added as columns to sweep.csv.
  """
  check_evaluate_args(metrics, **kw)
  t0 = time.perf_counter()
  if not os.access(workdir, os.W_OK):  # before the minutes of scoring, not after
    raise PermissionError(f"workdir {workdir} is not writable: metrics.json could not be "
                          f"written; make it writable or copy the run.")
  members = sweep.plan(setup.config, setup.hp)
  model = setup.model
  diverged = records.read_failed(workdir)  # {member: first non-finite step} of training

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
    results, healthy = [], []
    for i in range(members.size):
      params = sweep.take_member(state.params, i)
      step_i, seed_i = int(np.asarray(state.step)[i]), int(members.seeds[i])
      why = None
      if i in diverged:
        why = f"diverged: non-finite loss at step {diverged[i]}"
      elif not all(bool(np.all(np.isfinite(np.asarray(a)))) for a in jax.tree.leaves(params)):
        why = "diverged: non-finite parameters"
      results.append({"step": step_i, "objective": setup.config.objective.name, "seed": seed_i})
      if why:
        log(f"member {i} ({members.labels[i]}) {why}: not scored")
        results[i]["error"] = why
      else:
        healthy.append(i)
    if healthy:
      log(f"evaluating {len(healthy)} members of {workdir} as one program")
      stacked = jax.tree.map(lambda a: a[np.asarray(healthy)], state.params)
      represent_all = lambda x: jax.vmap(lambda p: model.represent(p, x))(stacked)
      reps = [functools.partial(lambda x, i: model.represent(
          sweep.take_member(state.params, i), x), i=i) for i in healthy]
      scored = evaluate_members(represent_all, setup.dataset, jax.random.key(seed), reps,
                                discrete_latents=model.bottleneck.discrete,
                                metrics=tuple(metrics or ALL), log=log, **kw)
      for i, res in zip(healthy, scored):
        errs = res.pop("errors", {})
        results[i].update(res)
        if errs and not any(isinstance(v, float) for v in res.values()):
          msg = next(iter(errs.values()))  # nothing scored: the member's codes were refused
          log(f"member {i} ({members.labels[i]}) could not be scored: {msg}")
          results[i]["error"] = msg
        elif errs:
          results[i]["errors"] = errs
    out = {"members": results}
    _merge_sweep_csv(os.path.join(workdir, "sweep.csv"), results)
    keys = list(dict.fromkeys(k for r in results for k, v in r.items() if isinstance(v, float)))
    log(f"{'member':>6s} " + " ".join(f"{k[:12]:>12s}" for k in keys))
    for i, r in enumerate(results):
      log(f"{i:6d} " + " ".join(f"{r[k]:12.4f}" if k in r else f"{'—':>12s}" for k in keys)
          + (f"  {r['error']}" if "error" in r else ""))
  path = os.path.join(workdir, "metrics.json")
  records.write_json(path, out, indent=1)  # written whole or not at all
  log(f"wrote {os.path.join(workdir, 'metrics.json')} in {time.perf_counter() - t0:.1f}s")
  if failed:
    raise ValueError(f"{', '.join(failed)} could not be computed ({'; '.join(failed.values())}); "
                     f"the other metrics were written to {path}.")
  return out


def _merge_sweep_csv(path: str, results) -> None:
  import csv
  import io
  rows = list(csv.DictReader(open(path))) if os.path.exists(path) else [{} for _ in results]
  for row, res in zip(rows, results):
    row.update({k: v for k, v in res.items() if isinstance(v, float)})
    if "error" in res:
      row["eval_error"] = res["error"]
    elif "errors" in res:
      row["eval_error"] = "; ".join(f"{k}: {v}" for k, v in res["errors"].items())
  keys = list(dict.fromkeys(k for r in rows for k in r))
  buf = io.StringIO()
  w = csv.DictWriter(buf, keys)
  w.writeheader()
  w.writerows(rows)
  records.atomic_write(path, buf.getvalue())
