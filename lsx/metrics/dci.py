"""DCI disentanglement, completeness, informativeness (Eastwood & Williams 2018).

`estimator="gbt"` (default) is disentanglement_lib's estimator: one
`GradientBoostingClassifier()` (scikit-learn's defaults) per factor on the codes, computed
by lsx's compiled host trees (`lsx.metrics.host_trees`: scikit-learn's algorithm in
float64, equal to it up to the order exact ties are broken in -- scikit-learn's is random
-- with the factors' fits on `n_jobs` threads, every core by default; benchmarks/
metrics_speed.py measures the speed against disentanglement_lib's scikit-learn loop).
`estimator="gbt_xla"` is the same algorithm as jit-compiled JAX (`lsx.metrics.gbt`,
float32; for accelerators, where a host scan is not what the device is for).
`estimator="sklearn"` fits scikit-learn's own trees (factors in parallel with `n_jobs`),
the check. The importance matrix R [d, F] holds |feature_importances_|; informativeness
is the classifier's accuracy on the train and test sets. Then, with the +1e-11 smoothing,
  D = sum_j rho_j (1 - H_F(R[j, :]))   rho_j = sum_f R[j, f] / sum R
  C = sum_f rho_f (1 - H_d(R[:, f]))   rho_f = sum_j R[j, f] / sum R
where H_b is the entropy in base b of a row (column) normalized to sum 1.

`estimator="logistic"` is a different, much faster estimator, pure JAX and vmappable:
an L2-regularized multinomial logistic regression on the standardized codes; R[j, f] is
the mean over classes of |W_jk|, informativeness its accuracy. Its numbers are not
comparable with the GBT estimator's; name it when you report it.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lsx.metrics import _info
from lsx.metrics.gbt import gbt_importance


def _entropy_base(p, base: int, axis: int):
  p = p / p.sum(axis, keepdims=True)
  return -jnp.sum(p * jnp.log(p), axis) / jnp.log(float(base))


def scores_from_importance(importance):
  """(disentanglement, completeness) of an importance matrix R [d, F] (JAX)."""
  r = jnp.abs(jnp.asarray(importance, jnp.float32))
  d, f = r.shape
  per_code = 1.0 - _entropy_base(r + 1e-11, f, 1) if f > 1 else jnp.ones((d,))
  per_factor = 1.0 - _entropy_base(r + 1e-11, d, 0) if d > 1 else jnp.ones((f,))
  w = jnp.where(r.sum() == 0, jnp.ones_like(r), r)
  dis = jnp.sum(per_code * w.sum(1) / w.sum())
  com = jnp.sum(per_factor * w.sum(0) / w.sum())
  # the 1e-11 guard makes a uniform row's entropy a hair above 1: clip to the score's range
  return jnp.clip(dis, 0.0, 1.0), jnp.clip(com, 0.0, 1.0)


def _check(zt, ft, ze, fe):
  raw_t, raw_e = np.asarray(zt), np.asarray(ze)
  _, ft = _info.validate(raw_t, ft, "latents_train", standardize=True)
  _, fe = _info.validate(raw_e, fe, "latents_test", standardize=True)
  zt, ze = raw_t, raw_e
  if zt.shape[1] != ze.shape[1] or ft.shape[1] != fe.shape[1]:
    raise ValueError(f"train and test disagree in width: latents {zt.shape[1]} vs "
                     f"{ze.shape[1]}, factors {ft.shape[1]} vs {fe.shape[1]}.")
  # one affine map per latent, fitted on train, for both splits: DCI is invariant to it
  # (trees compare thresholds; the logistic estimator standardizes anyway), and float32
  # then holds latents of any scale (module doc of lsx.metrics._info.standardize_host)
  mu, sd = _info.host_scale(zt)
  return _info.apply_scale(zt, mu, sd), ft, _info.apply_scale(ze, mu, sd), fe


ESTIMATORS = ("gbt", "gbt_xla", "sklearn", "logistic")


def check_estimator(estimator: str) -> None:
  if estimator not in ESTIMATORS:
    raise ValueError(f"Unknown DCI estimator {estimator!r}; choose 'gbt' (disentanglement_lib's "
                     f"trees, compiled host code), 'gbt_xla' (the same trees in JAX, for "
                     f"accelerators), 'sklearn' (scikit-learn's own trees) or 'logistic' "
                     f"(fast, pure JAX, a different estimator).")


def _gbt_importance(zt, ft, ze, fe, n_jobs):
  from joblib import Parallel, delayed
  from sklearn.ensemble import GradientBoostingClassifier

  def one(i):
    y = ft[:, i]
    if np.unique(y).size < 2:  # nothing to predict: zero importance, perfect accuracy
      return np.zeros(zt.shape[1]), 1.0, 1.0
    model = GradientBoostingClassifier().fit(zt, y)
    return (np.abs(model.feature_importances_), float(np.mean(model.predict(zt) == y)),
            float(np.mean(model.predict(ze) == fe[:, i])))

  out = Parallel(n_jobs=n_jobs)(delayed(one)(i) for i in range(ft.shape[1]))
  imp = np.stack([o[0] for o in out], 1)
  return imp, np.array([o[1] for o in out]), np.array([o[2] for o in out])


@functools.partial(jax.jit, static_argnames=("kf", "steps"))
def dci_logistic_from_codes(zt, yt, ze, ye, *, kf: int, l2: float = 1e-3, steps: int = 100):
  """Pure-JAX DCI with logistic-regression importances (see module doc)."""
  mu, sd = zt.mean(0), zt.std(0)
  sd = jnp.where(sd > 0, sd, 1.0)
  xt, xe = (zt - mu) / sd, (ze - mu) / sd

  def one(y, y_test):
    w, b, probs = _info.fit_logistic(xt, y, kf, balanced=False, l2=l2, steps=steps)
    present = jax.ops.segment_sum(jnp.ones_like(y, jnp.float32), y, num_segments=kf) > 0
    imp = jnp.sum(jnp.abs(w) * present, 1) / jnp.maximum(present.sum(), 1)
    logits_test = xe @ w + b + jnp.where(present, 0.0, -1e9)
    return (imp, jnp.mean(jnp.argmax(probs, 1) == y),
            jnp.mean(jnp.argmax(logits_test, 1) == y_test))

  imp, acc_t, acc_e = jax.lax.map(lambda a: one(*a), (yt.T, ye.T))
  dis, com = scores_from_importance(imp.T)
  return {"disentanglement": dis, "completeness": com, "informativeness_train": acc_t.mean(),
          "informativeness_test": acc_e.mean(), "importance": imp.T}


def _from_importance(imp, acc_t, acc_e) -> dict:
  dis, com = scores_from_importance(imp)
  return {"disentanglement": float(dis), "completeness": float(com),
          "informativeness_train": float(acc_t.mean()),
          "informativeness_test": float(acc_e.mean()), "importance": imp}


def dci(latents_train, factors_train, latents_test, factors_test, *, estimator: str = "gbt",
        n_jobs: int | None = None, tie_seed: int | None = 0) -> dict:
  """DCI; returns dict(disentanglement, completeness, informativeness_train,
  informativeness_test, importance [d, F]). n_jobs: threads of the 'gbt' trees (default:
  every core; the numbers do not depend on it), processes of the 'sklearn' ones (default
  1). tie_seed: the 'gbt' trees break exact split ties in a random feature order from
  this seed, as scikit-learn does from its random_state (None: lowest feature index;
  `lsx.metrics.host_trees`)."""
  check_estimator(estimator)
  zt, ft, ze, fe = _check(latents_train, factors_train, latents_test, factors_test)
  if estimator == "gbt":
    from lsx.metrics import host_trees  # numba: imported where it is used
    return _from_importance(*host_trees.importance(zt, ft, ze, fe, threads=n_jobs or 0,
                                                   tie_seed=tie_seed))
  if estimator == "gbt_xla":
    return _from_importance(*gbt_importance(zt, ft, ze, fe))
  if estimator == "sklearn":
    return _from_importance(*_gbt_importance(zt, ft, ze, fe, n_jobs or 1))
  if estimator == "logistic":
    both = np.concatenate([ft, fe], 0)
    codes, kf, _ = _info.encode_columns(both)
    out = jax.device_get(dci_logistic_from_codes(
        jnp.asarray(zt, jnp.float32), jnp.asarray(codes[:len(ft)]),
        jnp.asarray(ze, jnp.float32), jnp.asarray(codes[len(ft):]), kf=kf))
    return {k: (np.asarray(v) if k == "importance" else float(v)) for k, v in out.items()}
  raise AssertionError(estimator)  # check_estimator names every estimator


def dci_members(members, factors_train, factors_test, *, n_jobs: int | None = None,
                tie_seed: int | None = 0) -> list:
  """DCI ('gbt' trees) of several models' latents on the same factors: members =
  [(latents_train, latents_test), ...]; every (member, factor) fit on one pool of n_jobs
  threads (default: every core). One dict per member, as `dci` returns, or {"error": why}
  for a member whose latents fail the checks (the others are scored)."""
  from lsx.metrics import host_trees
  scaled, out = {}, [None] * len(members)
  for i, (a, b) in enumerate(members):
    try:
      scaled[i] = _check(a, factors_train, b, factors_test)
    except ValueError as e:
      out[i] = {"error": str(e)}
  if scaled:
    first = next(iter(scaled.values()))
    res = host_trees.importance_members([(c[0], c[2]) for c in scaled.values()], first[1],
                                        first[3], threads=n_jobs or 0, tie_seed=tie_seed)
    for i, r in zip(scaled, res):
      out[i] = _from_importance(*r)
  return out
