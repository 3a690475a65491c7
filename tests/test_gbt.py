"""Gradient-boosted trees in JAX (lsx.metrics.gbt) against a slow numpy tree written from
scikit-learn's algorithm, and against scikit-learn's GradientBoostingClassifier itself."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lsx.metrics import gbt


def _reference_tree(x, r):
  """A depth-3 regression tree grown as scikit-learn's BestSplitter with friedman_mse
  does (every threshold between sorted values more than 1e-7 apart, at least one sample
  a side, no split of a node whose residuals are equal), in float64, keeping the first
  best (lowest feature, lowest threshold). Returns ({heap id: (feature, threshold)},
  leaf heap id of each sample, importance [d] unnormalized / n)."""
  n, d = x.shape
  nodes, splits, imp = {0: np.arange(n)}, {}, np.zeros(d)
  leaf = np.zeros(n, int)
  for level in range(3):
    for h in range(2 ** level - 1, 2 ** (level + 1) - 1):
      idx = nodes.get(h)
      if idx is None or len(idx) < 2 or np.ptp(r[idx]) == 0:
        continue
      best = (-np.inf, None, None)
      for f in range(d):
        o = idx[np.argsort(x[idx, f], kind="stable")]
        v, cs = x[o, f].astype(np.float64), np.cumsum(r[o])
        w, s = len(o), cs[-1]
        for i in range(w - 1):
          if v[i + 1] <= v[i] + 1e-7:
            continue
          wl, sl = i + 1, cs[i]
          g = ((w - wl) * sl - wl * (s - sl)) ** 2 / (wl * (w - wl))
          if g > best[0]:
            best = (g, f, v[i] / 2 + v[i + 1] / 2)
      if best[1] is None:
        continue
      _, f, t = best
      left, right = idx[x[idx, f] <= t], idx[x[idx, f] > t]
      dec = (r[left].sum() ** 2 / len(left) + r[right].sum() ** 2 / len(right)
             - r[idx].sum() ** 2 / len(idx))
      imp[f] += dec / n
      splits[h] = (f, t)
      nodes[2 * h + 1], nodes[2 * h + 2] = left, right
      leaf[left], leaf[right] = 2 * h + 1, 2 * h + 2
  return splits, leaf, imp


def _inputs(x):
  xj = jnp.asarray(x, jnp.float32)
  order = jnp.argsort(xj, axis=0, stable=True).T
  xs = jnp.take_along_axis(xj.T, order, 1)
  cand = jnp.concatenate([xs[:, 1:] > xs[:, :-1] + gbt.FEATURE_THRESHOLD,
                          jnp.zeros((x.shape[1], 1), bool)], 1)
  return xj, xs, order, cand


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_trees_equal_a_slow_reference_on_continuous_residuals(seed):
  rng = np.random.default_rng(seed)
  n, d, c = 240, 5, 3
  x = rng.normal(size=(n, d)).astype(np.float32)
  x[:, 4] = np.round(x[:, 4])  # a feature with ties: thresholds only between distinct values
  r = (np.sin(2 * x[:, :1]) + 0.5 * x[:, 1:2] * np.arange(1, c + 1) + rng.normal(size=(n, c)) * 0.3).T
  r = r.astype(np.float32)
  feat, thr, split, leaf, imp = jax.device_get(gbt._grow_trees(*_inputs(x), jnp.asarray(r)))
  for k in range(c):
    want, want_leaf, want_imp = _reference_tree(x, r[k].astype(np.float64))
    got = {h: (int(feat[k, h]), float(thr[k, h])) for h in range(7) if split[k, h]}
    assert set(got) == set(want), k
    for h in want:
      assert got[h][0] == want[h][0] and got[h][1] == pytest.approx(want[h][1], abs=1e-6), (k, h)
    np.testing.assert_array_equal(leaf[k], want_leaf)
    np.testing.assert_allclose(imp[k], want_imp, rtol=1e-4, atol=1e-7)
  # applying the trees to the training rows reaches the same leaves
  np.testing.assert_array_equal(gbt.apply_trees(jnp.asarray(feat), jnp.asarray(thr),
                                                jnp.asarray(split), jnp.asarray(x)), leaf)


def test_prefix_sum_is_a_cumulative_sum():
  a = jax.random.normal(jax.random.key(0), (3, 1000))
  np.testing.assert_allclose(gbt.prefix_sum(a), jnp.cumsum(a, -1), atol=1e-4)


@pytest.mark.parametrize("k", [2, 5])
def test_boosting_agrees_with_scikit_learn(k):
  # scikit-learn breaks exact ties between features in a random order (two of its own
  # random states disagree too): the JAX trees agree with it as closely as it agrees with
  # itself -- importances within 0.02, predictions on >= 95% of the test rows
  from sklearn.ensemble import GradientBoostingClassifier
  rng = np.random.default_rng(k)
  n, d = 500, 4
  x = rng.normal(size=(n, d)).astype(np.float32)
  y = (np.floor((x[:, 0] + 0.5 * x[:, 1] + rng.normal(size=n) * 0.4) * 1.5) % k).astype(int)
  xe = rng.normal(size=(300, d)).astype(np.float32)
  sk = GradientBoostingClassifier(random_state=0, n_estimators=30).fit(x, y)
  imp, pt, pe = jax.device_get(gbt.fit_predict(jnp.asarray(x), jnp.asarray(y), jnp.asarray(xe),
                                               num_classes=k, stages=30))
  np.testing.assert_allclose(imp, sk.feature_importances_, atol=0.02)
  assert abs(imp.sum() - 1) < 1e-5
  assert np.mean(pt == sk.predict(x)) >= 0.97 and np.mean(pe == sk.predict(xe)) >= 0.95


def test_default_dci_trees_on_the_reference_fixture():
  import json
  import os
  import sys
  sys.path.insert(0, os.path.join(os.path.dirname(__file__), "reference"))
  from make_reference import dci_case
  from lsx import metrics as lm
  ref = json.load(open(os.path.join(os.path.dirname(__file__), "reference", "metrics_reference.json")))
  got = lm.dci(*dci_case())  # default: the JAX trees
  for key in ("disentanglement", "completeness", "informativeness_test"):
    assert abs(got[key] - ref["dci"][key]) <= 1e-2, key
