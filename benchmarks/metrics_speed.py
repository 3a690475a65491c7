"""Speed of lsx's metrics against straightforward numpy/scikit-learn implementations.

Both sides compute the same definitions on the same data (lsx.metrics.reference is the
per-pair scikit-learn transcription of the public code). Default problem: 10,000 samples
x 10 latents x 5 factors with dSprites' factor sizes (3, 6, 40, 32, 32). lsx times are
after one warm-up call (compilation reported separately). Prints a table and the ratios.

  python benchmarks/metrics_speed.py [--n 10000] [--repeats 3] [--skip-dci]
  python benchmarks/metrics_speed.py --members 16 [--skip-reference]
  python benchmarks/metrics_speed.py --dci-only [--skip-jax-gbt]   # ratio reference/lsx dci

--members M: a sweep's M members (the problem's latents under M random rotations plus
noise) scored by lsx.metrics.suite.score_members -- InfoMEC, MIG, DCI and SAP, stacked
where the metric is pure JAX -- against one member; prints `ratio members/one: R` for
DCI with the logistic estimator (stacked) and, unless --skip-gbt, with scikit-learn's
trees (member by member); then DCI alone with the default trees (every member's fits on
one thread pool): `dci seconds: one member .., M members ..` (--skip-dci: not).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings

import jax
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from lsx import metrics as lm  # noqa: E402
from lsx.metrics import reference as R  # noqa: E402

SIZES = (3, 6, 40, 32, 32)


def problem(n, d=10, seed=0):
  rng = np.random.default_rng(seed)
  f = np.stack([rng.integers(0, s, n) for s in SIZES], 1)
  signal = f / np.array(SIZES) + 0.05 * rng.normal(size=f.shape)
  z = np.concatenate([signal @ rng.normal(size=(5, 5)) * 0.3 + signal,
                      rng.normal(size=(n, d - 5))], 1)
  return z.astype(np.float32), f


def timed(fn, repeats):
  best = np.inf
  for _ in range(repeats):
    t0 = time.perf_counter()
    out = fn()
    jax.block_until_ready(out) if not isinstance(out, (float, dict)) else None
    best = min(best, time.perf_counter() - t0)
  return best, out


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--n", type=int, default=10000)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--skip-dci", action="store_true")
  ap.add_argument("--skip-reference", action="store_true", help="only the --members rows")
  ap.add_argument("--skip-gbt", action="store_true", help="--members: logistic DCI only")
  ap.add_argument("--members", type=int, default=0)
  ap.add_argument("--dci-only", action="store_true", help="only the DCI rows")
  ap.add_argument("--skip-jax-gbt", action="store_true", help="no row for the JAX trees")
  ap.add_argument("--sklearn-seeds", type=int, default=0,
                  help="DCI with scikit-learn's trees at this many random_states: the spread "
                       "of its own values (it breaks exact split ties in a random order)")
  ap.add_argument("--host-seeds", type=int, default=0,
                  help="DCI with lsx's host trees breaking exact ties in a random feature "
                       "order (tie_seed 0..N-1): the same spread for lsx's trees")
  args = ap.parse_args()
  if args.members:
    members_speed(args)
    if args.skip_reference:
      return
  warnings.filterwarnings("ignore")
  n = args.n
  z, f = problem(n)
  zt, ft = problem(n // 2, seed=1)
  rows = []

  if not args.dci_only:
    other_rows(z, f, args, rows)
  if args.sklearn_seeds:
    sklearn_spread(z, f, zt, ft, args.sklearn_seeds)
  if args.host_seeds:
    host_spread(z, f, zt, ft, args.host_seeds)
  if not args.skip_dci:
    dci_rows(z, f, zt, ft, args, rows)
  dev = jax.devices()[0]
  print(f"\nmetrics on {n} samples x 10 latents x 5 factors | {dev.platform} "
        f"({getattr(dev, 'device_kind', '')}), {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
  print(f"{'metric':34s} {'lsx s':>9s} {'reference s':>12s} {'ratio':>8s} {'lsx compile s':>14s}  values lsx/ref")
  for name, tl, tr, tc, note in rows:
    print(f"{name:34s} {tl:9.3f} {tr:12.3f} {tr / tl:7.1f}x {tc:14.1f}  {note}")
  for name, tl, tr, _, _ in rows:
    print(f"ratio reference/lsx {name}: {tr / tl:.1f}")
  default = [r for r in rows if r[0].startswith("dci (gbt, host trees")]
  if default:  # the default DCI estimator on every core of this machine
    print(f"ratio reference/lsx dci: {default[-1][2] / default[-1][1]:.1f}")


def other_rows(z, f, args, rows):
  t0 = time.perf_counter()
  lm.infomec(z, f)
  compile_s = time.perf_counter() - t0
  t_lsx, a = timed(lambda: lm.infomec(z, f), args.repeats)
  t_ref, b = timed(lambda: R.infomec_reference(z, f), 1)
  rows.append(("InfoMEC", t_lsx, t_ref, compile_s,
               f"infom {a['infom']:.3f}/{b['infom']:.3f} infoc {a['infoc']:.3f}/{b['infoc']:.3f}"))

  t0 = time.perf_counter()
  lm.mig(z, f)
  compile_s = time.perf_counter() - t0
  t_lsx, a = timed(lambda: lm.mig(z, f), args.repeats)
  t_ref, b = timed(lambda: R.mig_reference(z, f), args.repeats)
  rows.append(("MIG", t_lsx, t_ref, compile_s, f"mig {a:.4f}/{b:.4f}"))


def dci_rows(z, f, zt, ft, args, rows):
  t_ref, b = timed(lambda: R.dci_reference(z, f, zt, ft), 1)
  jobs = os.cpu_count() or 1
  t_gbt, a = timed(lambda: lm.dci(z, f, zt, ft, estimator="sklearn", n_jobs=jobs), 1)
  rows.append((f"DCI (scikit-learn trees, {jobs} jobs)", t_gbt, t_ref, 0.0,
               f"D {a['disentanglement']:.3f}/{b['disentanglement']:.3f} "
               f"C {a['completeness']:.3f}/{b['completeness']:.3f}"))
  t0 = time.perf_counter()
  lm.dci(z, f, zt, ft, estimator="logistic")
  compile_s = time.perf_counter() - t0
  t_log, a = timed(lambda: lm.dci(z, f, zt, ft, estimator="logistic"), args.repeats)
  rows.append(("DCI (logistic, other estimator)", t_log, t_ref, compile_s,
               f"D {a['disentanglement']:.3f} C {a['completeness']:.3f} (not comparable)"))
  # lsx's default: the compiled host trees (the first call compiles, numba caches it)
  t0 = time.perf_counter()
  lm.dci(z[:200], f[:200], zt[:100], ft[:100])
  compile_s = time.perf_counter() - t0
  for threads in sorted({1, jobs}):
    t_host, a = timed(lambda: lm.dci(z, f, zt, ft, n_jobs=threads), 1)
    rows.append((f"dci (gbt, host trees, {threads} thread{'s' * (threads > 1)})", t_host, t_ref,
                 compile_s, _dci_note(a, b)))
  if not args.skip_jax_gbt:  # the same trees in JAX: the first call compiles (one per class count)
    t0 = time.perf_counter()
    lm.dci(z, f, zt, ft, estimator="gbt_xla")
    first = time.perf_counter() - t0
    t_jax, a = timed(lambda: lm.dci(z, f, zt, ft, estimator="gbt_xla"), 1)
    rows.append(("dci (gbt_xla, trees in JAX)", t_jax, t_ref, first - t_jax, _dci_note(a, b)))


def sklearn_spread(z, f, zt, ft, seeds):
  """D, C, I of scikit-learn's own trees at random_state 0..seeds-1 (factors in parallel)."""
  from joblib import Parallel, delayed
  from sklearn.ensemble import GradientBoostingClassifier
  from lsx.metrics.dci import _check, scores_from_importance
  zs, fs, zts, fts = _check(z, f, zt, ft)

  def one(i, seed):
    model = GradientBoostingClassifier(random_state=seed).fit(zs, fs[:, i])
    return model.feature_importances_, float(np.mean(model.predict(zts) == fts[:, i]))

  values = []
  for seed in range(seeds):
    out = Parallel(n_jobs=os.cpu_count() or 1)(delayed(one)(i, seed) for i in range(f.shape[1]))
    d, c = scores_from_importance(np.stack([o[0] for o in out], 1))
    values.append((float(d), float(c), float(np.mean([o[1] for o in out]))))
    print(f"scikit-learn random_state={seed}: D {values[-1][0]:.4f} C {values[-1][1]:.4f} "
          f"I {values[-1][2]:.4f}", flush=True)
  v = np.array(values)
  print(f"scikit-learn over {seeds} random_states: D {v[:, 0].min():.4f}..{v[:, 0].max():.4f} "
        f"C {v[:, 1].min():.4f}..{v[:, 1].max():.4f} I {v[:, 2].min():.4f}..{v[:, 2].max():.4f}")


def host_spread(z, f, zt, ft, seeds):
  """D, C, I of lsx's host trees with exact ties broken in a random feature order."""
  from lsx.metrics import host_trees
  from lsx.metrics.dci import _check, scores_from_importance
  values = []
  for seed in [None] + list(range(seeds)):
    imp, _, acc = host_trees.importance(*_check(z, f, zt, ft), tie_seed=seed)
    d, c = scores_from_importance(imp)
    values.append((float(d), float(c), float(acc.mean())))
    name = "index order (tie_seed=None)" if seed is None else f"tie_seed={seed}"
    print(f"lsx host trees, {name}: D {values[-1][0]:.4f} C {values[-1][1]:.4f} "
          f"I {values[-1][2]:.4f}", flush=True)
  v = np.array(values[1:])
  print(f"lsx host trees over {seeds} tie seeds: D {v[:, 0].min():.4f}..{v[:, 0].max():.4f} "
        f"C {v[:, 1].min():.4f}..{v[:, 1].max():.4f} I {v[:, 2].min():.4f}..{v[:, 2].max():.4f}")


def _dci_note(a, b):
  imp_diff = np.abs(a["importance"] - b["importance"]).max()
  return (f"D {a['disentanglement']:.4f}/{b['disentanglement']:.4f} "
          f"C {a['completeness']:.4f}/{b['completeness']:.4f} "
          f"I {a['informativeness_test']:.4f}/{b['informativeness_test']:.4f} "
          f"max |R - R_ref| {imp_diff:.4f}")


def members_speed(args):
  from lsx.metrics.suite import score_members
  n, m = args.n, args.members
  z, f = problem(n)
  zt, ft = problem(n // 2, seed=1)
  rng = np.random.default_rng(7)
  rots = [np.linalg.qr(rng.normal(size=(10, 10)))[0] for _ in range(m)]
  zs = np.stack([z @ q + 0.01 * rng.normal(size=z.shape) for q in rots]).astype(np.float32)
  zts = np.stack([zt @ q + 0.01 * rng.normal(size=zt.shape) for q in rots]).astype(np.float32)
  quiet = lambda s: None
  print(f"\n{m} members vs one: {n} / {n // 2} samples x 10 latents x 5 factors, "
        f"{jax.devices()[0].platform}, {os.cpu_count()} CPUs")
  print(f"{'metrics':44s} {'one member s':>13s} {f'{m} members s':>14s} {'ratio':>7s}")
  for est in ("logistic",) + (() if args.skip_gbt else ("gbt",)):
    score = lambda k: score_members(zs[:k], f, zts[:k], ft, metrics=("infomec", "mig", "dci", "sap"),
                                    dci_estimator=est, dci_jobs=os.cpu_count() or 1, log=quiet)
    score(1), score(m)  # compile both shapes
    t1, _ = timed(lambda: score(1), 1)
    tm, _ = timed(lambda: score(m), 1)
    print(f"{'InfoMEC + MIG + DCI (' + est + ') + SAP':44s} {t1:13.2f} {tm:14.2f} {tm / t1:6.1f}x")
    print(f"ratio members/one ({est} DCI): {tm / t1:.1f}")
  if not args.skip_dci:  # DCI alone with the default trees: the sweep's fits share one pool
    dci_only = lambda k: score_members(zs[:k], f, zts[:k], ft, metrics=("dci",), log=quiet)
    lm.dci(z[:200], f[:200], zt[:100], ft[:100])  # numba compiles (or loads its cache) once
    t1, _ = timed(lambda: dci_only(1), 1)
    tm, _ = timed(lambda: dci_only(m), 1)
    print(f"{'DCI (gbt, host trees) alone':44s} {t1:13.2f} {tm:14.2f} {tm / t1:6.1f}x")
    print(f"dci seconds: one member {t1:.1f}, {m} members {tm:.1f} ({tm / m:.2f} a member)")


if __name__ == "__main__":
  main()
