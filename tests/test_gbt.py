"""Gradient-boosted trees -- in JAX (lsx.metrics.gbt) and as compiled host code
(lsx.metrics.host_trees, DCI's default) -- against a slow numpy tree written from
scikit-learn's algorithm, against scikit-learn's GradientBoostingClassifier itself, and
against each other."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lsx.metrics import gbt, host_trees


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
def test_both_trees_agree_with_scikit_learn_and_each_other(k):
  # scikit-learn breaks exact ties between features in a random order (two of its own
  # random states disagree too): lsx's trees agree with it as closely as it agrees with
  # itself -- importances within 0.02, predictions on >= 95% of the test rows. With two
  # classes the first stages' residuals take two values, so splits of the noise features
  # tie exactly in real arithmetic and the sums' rounding picks one: the JAX (float32) and
  # host (float64) trees agree within the same tolerance
  from sklearn.ensemble import GradientBoostingClassifier
  rng = np.random.default_rng(k)
  n, d = 500, 4
  x = rng.normal(size=(n, d)).astype(np.float32)
  y = (np.floor((x[:, 0] + 0.5 * x[:, 1] + rng.normal(size=n) * 0.4) * 1.5) % k).astype(int)
  xe = rng.normal(size=(300, d)).astype(np.float32)
  sk = GradientBoostingClassifier(random_state=0, n_estimators=30).fit(x, y)
  jax_fit = jax.device_get(gbt.fit_predict(jnp.asarray(x), jnp.asarray(y), jnp.asarray(xe),
                                           num_classes=k, stages=30))
  host_fit = host_trees.fit_predict(x, y, xe, num_classes=k, stages=30)
  for imp, pt, pe in (jax_fit, host_fit):
    np.testing.assert_allclose(imp, sk.feature_importances_, atol=0.02)
    assert abs(imp.sum() - 1) < 1e-5
    assert np.mean(pt == sk.predict(x)) >= 0.97 and np.mean(pe == sk.predict(xe)) >= 0.95
  assert abs(host_fit[0].sum() - 1) < 1e-12  # float64
  np.testing.assert_allclose(host_fit[0], jax_fit[0], atol=0.02)
  assert np.mean(host_fit[1] == jax_fit[1]) >= 0.97 and np.mean(host_fit[2] == jax_fit[2]) >= 0.95


@pytest.mark.parametrize("estimator", ["gbt", "gbt_xla"])
def test_dci_trees_on_the_reference_fixture(estimator):
  import json
  import os
  import sys
  sys.path.insert(0, os.path.join(os.path.dirname(__file__), "reference"))
  from make_reference import dci_case
  from lsx import metrics as lm
  ref = json.load(open(os.path.join(os.path.dirname(__file__), "reference", "metrics_reference.json")))
  got = lm.dci(*dci_case(), estimator=estimator)  # gbt: the default
  for key in ("disentanglement", "completeness", "informativeness_test"):
    assert abs(got[key] - ref["dci"][key]) <= 1e-2, key


def _host_tree(x, r):
  n, d = x.shape
  order = np.ascontiguousarray(np.argsort(x, axis=0, kind="stable").T, np.int32)
  xs = np.ascontiguousarray(np.take_along_axis(x.T, order, 1))
  nid, feat, thr = np.zeros(n, np.int64), np.zeros(15, np.int64), np.zeros(15)
  split, imp = np.zeros(15, bool), np.zeros(d)
  host_trees._grow(x, xs, order, r, nid, feat, thr, split, imp, np.empty((2, d, n), np.int32),
                   np.empty((2, d, n), np.float32), np.zeros(n, bool), False)
  return {h: (int(feat[h]), float(thr[h])) for h in range(7) if split[h]}, nid, imp


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_host_trees_equal_the_slow_reference(seed):
  rng = np.random.default_rng(seed)
  n, d = 240, 5
  x = rng.normal(size=(n, d)).astype(np.float32)
  x[:, 4] = np.round(x[:, 4])  # ties: thresholds only between distinct values
  x[:5, 2] = x[5, 2] + 5e-8  # values closer than 1e-7 are one value
  for k in range(3):
    r = np.sin(2 * x[:, 0]) + 0.5 * (k + 1) * x[:, 1] + rng.normal(size=n) * 0.3
    if k == 2:
      r[x[:, 0] > 0.3] = 0.25  # a node of equal residuals is a leaf
    got, leaf, imp = _host_tree(x, r)
    want, want_leaf, want_imp = _reference_tree(x, r)
    assert got == {h: (f, float(t)) for h, (f, t) in want.items()}, k
    np.testing.assert_array_equal(leaf, want_leaf)
    np.testing.assert_allclose(imp, want_imp, rtol=1e-12, atol=1e-15)


def test_host_trees_do_not_depend_on_threads_and_members_equal_their_runs_alone():
  from lsx import metrics as lm
  from lsx.metrics.dci import dci_members
  rng = np.random.default_rng(3)
  f = np.stack([rng.integers(0, s, 300) for s in (2, 3, 5)], 1)
  ft = np.stack([rng.integers(0, s, 100) for s in (2, 3, 5)], 1)
  codes = lambda ff, q: ((ff + rng.normal(size=ff.shape) * 0.3) @ q).astype(np.float32)
  qs = [np.linalg.qr(rng.normal(size=(3, 3)))[0] for _ in range(2)]
  members = [(codes(f, q), codes(ft, q)) for q in qs]
  one = lm.dci(*members[0][:1], f, members[0][1], ft, n_jobs=1)
  two = lm.dci(*members[0][:1], f, members[0][1], ft, n_jobs=2)
  np.testing.assert_array_equal(one["importance"], two["importance"])
  both = dci_members(members, f, ft, n_jobs=2)
  for (zt, ze), got in zip(members, both):
    alone = lm.dci(zt, f, ze, ft, n_jobs=1)
    for key in ("disentanglement", "completeness", "informativeness_test"):
      assert got[key] == alone[key], key
    np.testing.assert_array_equal(got["importance"], alone["importance"])


def test_host_trees_refuse_bad_input():
  x = np.zeros((10, 2), np.float32)
  with pytest.raises(ValueError, match=">= 2 classes"):
    host_trees.fit_predict(x, np.zeros(10, int), x, num_classes=1)
  with pytest.raises(ValueError, match="share d"):
    host_trees.fit_predict(x, np.arange(10) % 2, np.zeros((4, 3)), num_classes=2)
  with pytest.raises(ValueError, match="labels in"):
    host_trees.fit_predict(x, np.arange(10) % 3, x, num_classes=2)
  from lsx import metrics as lm
  with pytest.raises(ValueError, match="Unknown DCI estimator 'trees'.*gbt_xla"):
    lm.dci(x, np.zeros((10, 1)), x, np.zeros((10, 1)), estimator="trees")


def test_a_sweeps_dci_equals_each_member_alone():
  # score_members fits every (member, factor) on one thread pool; a member whose latents
  # fail the checks gets its error and does not stop the others
  from lsx import metrics as lm
  from lsx.metrics.suite import score_members
  rng = np.random.default_rng(5)
  f = np.stack([rng.integers(0, s, 200) for s in (2, 4)], 1)
  ft = np.stack([rng.integers(0, s, 80) for s in (2, 4)], 1)
  z = np.stack([(np.concatenate([f, f], 1) + rng.normal(size=(200, 4)) * s).astype(np.float32)
                for s in (0.2, 0.6, 0.4)])
  zt = np.stack([(np.concatenate([ft, ft], 1) + rng.normal(size=(80, 4)) * s).astype(np.float32)
                 for s in (0.2, 0.6, 0.4)])
  z[2, 0, 0] = np.nan
  out = score_members(z, f, zt, ft, metrics=("dci",), dci_estimator="gbt", log=lambda s: None)
  for i in range(2):
    alone = lm.dci(z[i], f, zt[i], ft)
    for key in ("disentanglement", "completeness", "informativeness_test"):
      assert out[i][f"dci_{key}"] == alone[key], (i, key)
  assert "dci" in out[2]["errors"] and "dci_disentanglement" not in out[2]


def test_host_trees_break_exact_ties_in_a_seeded_random_order():
  # two identical features tie at every split: index order gives every importance to the
  # first, a random order (scikit-learn's way) splits it, the same seed the same way
  rng = np.random.default_rng(0)
  x = rng.normal(size=(300, 1)).astype(np.float32)
  x = np.concatenate([x, x, rng.normal(size=(300, 1)).astype(np.float32)], 1)
  y = (x[:, 0] > 0.2).astype(int) + (x[:, 0] > -0.4)
  first, _, _ = host_trees.fit_predict(x, y, x, num_classes=3, stages=20, tie_seed=None)
  assert first[1] == 0 and first[0] > 0.9
  a, _, _ = host_trees.fit_predict(x, y, x, num_classes=3, stages=20, tie_seed=1)
  b, _, _ = host_trees.fit_predict(x, y, x, num_classes=3, stages=20, tie_seed=1)
  np.testing.assert_array_equal(a, b)
  assert a[0] > 0.2 and a[1] > 0.2
  np.testing.assert_allclose(a[0] + a[1], first[0] + first[1], atol=0.05)
