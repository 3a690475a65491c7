"""Gradient-boosted trees in JAX (DCI's `estimator="gbt_xla"`; the default "gbt" runs
the same algorithm as compiled host code, lsx.metrics.host_trees) that compute what scikit-learn's
`GradientBoostingClassifier()` computes with its defaults — what disentanglement_lib's
DCI fits for every factor: 100 stages, learning rate 0.1, the multinomial deviance with
one regression tree per class per stage (one tree for two classes), the class prior as
the initial raw prediction, trees of depth 3 fitted to the negative gradient with the
friedman_mse criterion over every threshold between consecutive distinct values (at
least one sample per leaf, no split of a node whose residuals are all equal), leaf values
by one Newton step ((K - 1)/K sum r / sum p(1 - p) for K > 2 classes), and impurity-based
feature importances summed over the trees and normalized.

How (all classes of a stage, all features and all nodes of a level at once): each
feature's samples are sorted once; at every level the residuals are read in each
feature's sorted order and, for every node of the level, prefix sums of the node's
residuals and sample counts along that order (as blocked triangular matrix products)
give the left and right sums of every candidate split: the split gain
(w_r s_l - w_l s_r)^2 / (w_l w_r) of scikit-learn's friedman_mse proxy everywhere, no
sort per node. A threshold between two sorted values is a candidate where the values
differ by more than scikit-learn's FEATURE_THRESHOLD (1e-7); the chosen threshold is the
midpoint of the node's samples on either side. Pure functions of arrays (jit; one
compiled program per (samples, features, classes) shape).

Equal to scikit-learn up to float32 arithmetic (scikit-learn sums in float64) and exact
ties: scikit-learn visits the features in a random order (a fresh one per node) and keeps
the first strictly better split, this takes the lowest feature index (and the lowest
threshold) among equal gains; tests/test_gbt.py measures both. Memory per level:
~8 arrays of classes x features x nodes x samples floats (40 classes x 10 features x
4 nodes x 10,000 samples: 16 M floats, 64 MB each).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

DEPTH = 3
NODES = 2 ** (DEPTH + 1) - 1
FEATURE_THRESHOLD = 1e-7  # scikit-learn's: sorted values closer than this are one value
BLOCK = 64


def prefix_sum(a):
  """Inclusive prefix sums along the last axis, as blocked products with a triangular
  matrix of ones (3-4x faster than a scan on CPU)."""
  n = a.shape[-1]
  pad = (-n) % BLOCK
  a = jnp.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, pad)])
  lead, m = a.shape[:-1], a.shape[-1] // BLOCK
  within = jnp.matmul(a.reshape(lead + (m, BLOCK)), jnp.triu(jnp.ones((BLOCK, BLOCK), a.dtype)),
                      precision=jax.lax.Precision.HIGHEST)
  total = within[..., -1]
  offset = jnp.cumsum(total, -1) - total
  return (within + offset[..., None]).reshape(lead + (m * BLOCK,))[..., :n]


def _proxy(wl, sl, w, s, candidate):
  """scikit-learn's friedman_mse proxy (w_r s_l - w_l s_r)^2 / (w_l w_r) of the splits
  with left counts/sums (wl, sl) of nodes with totals (w, s); -inf where there is no
  candidate threshold or a side would be empty."""
  wr = w - wl
  diff = w * sl - s * wl  # = w_r s_l - w_l s_r
  valid = candidate & (wl >= 1) & (wr >= 1)
  return jnp.where(valid, diff * diff / jnp.maximum(wl * wr, 1.0), -jnp.inf)


def _best_splits(r_s, loc_s, candidate, w_node, s_node, j_n: int, parent=None,
                 keep: bool = True, batch: int = 8):
  """The best gain [C, d, J] of every (class, feature, node), and the prefix sums
  [C*d, J, n] of each node's counts and residuals along each feature's order (the next
  level's `parent`).

  For each (class, feature) row, prefix sums of each node's residuals and counts along
  the feature's order give every candidate split's friedman_mse proxy. A node's right
  child's prefix sums are its parent's minus its left sibling's, so only the left
  children are summed (at the root the counts are the positions). Rows go through
  `lax.map` in batches of `batch` (their [J, n] working set stays in cache)."""
  c, d, n = r_s.shape
  rows = (r_s.reshape(c * d, n), loc_s.reshape(c * d, n), jnp.tile(jnp.arange(d), c),
          jnp.repeat(jnp.arange(c), d))
  if parent is not None:
    rows = rows + parent

  def one(args):
    rr, ll, f, k = args[:4]
    if j_n == 1:
      wl = (jnp.arange(n, dtype=jnp.float32) + 1.0)[None]
      sl = prefix_sum(rr[None])
    else:
      pw, ps = args[4:]  # [J/2, n]
      left = ll[None, :] == 2 * jnp.arange(j_n // 2)[:, None]
      lw = prefix_sum(left.astype(jnp.float32))
      ls = prefix_sum(jnp.where(left, rr[None, :], 0.0))
      # interleave: node 2m (left child of m), node 2m + 1 (right child)
      wl = jnp.stack([lw, pw - lw], 1).reshape(j_n, n)
      sl = jnp.stack([ls, ps - ls], 1).reshape(j_n, n)
    proxy = _proxy(wl, sl, w_node[k][:, None], s_node[k][:, None], candidate[f][None, :])
    # the best gain only: an argmax over every position is slow on CPU, so the position
    # is found afterwards for the chosen feature alone (`_best_position`)
    out = (jnp.max(proxy, -1),)
    return out + (wl, sl) if keep else out

  out = jax.lax.map(one, rows, batch_size=batch)
  return out[0].reshape(c, d, j_n), (out[1:] if keep else None)


def _best_position(r_b, loc_b, cand_b, w_node, s_node):
  """The first position [C, J] of the best split of each node along its chosen feature:
  r_b, loc_b, cand_b [C, J, n] that feature's residuals, node ids and candidates."""
  j_n = w_node.shape[1]
  member = loc_b == jnp.arange(j_n)[None, :, None]
  wl = prefix_sum(member.astype(jnp.float32))
  sl = prefix_sum(jnp.where(member, r_b, 0.0))
  return jnp.argmax(_proxy(wl, sl, w_node[..., None], s_node[..., None], cand_b), -1)


def _grow_trees(x, xs, order, candidate, r):
  """One depth-3 tree per class on the residuals r [C, n]: x [n, d], xs [d, n] each
  feature's sorted values, order [d, n] its argsort, candidate [d, n] whether a threshold
  may follow sorted position i. Returns (feature [C, 15], threshold [C, 15], split
  [C, 15] in heap order, leaf [C, n] heap id of each sample, importance [C, d])."""
  n, d = x.shape
  c = r.shape[0]
  nid = jnp.zeros((c, n), jnp.int32)
  feat = jnp.zeros((c, NODES), jnp.int32)
  thr = jnp.zeros((c, NODES), jnp.float32)
  split = jnp.zeros((c, NODES), bool)
  importance = jnp.zeros((c, d), jnp.float32)
  r_s = r[:, order]  # [C, d, n]: residuals in each feature's sorted order
  ranks = jnp.arange(n)
  rows = jnp.arange(c)[:, None]
  parent = None
  for level in range(DEPTH):
    j_n, base = 2 ** level, 2 ** level - 1
    loc = nid - base
    loc = jnp.where((loc >= 0) & (loc < j_n), loc, j_n)  # j_n: not at a node of this level
    # per-node reductions as masked reductions over a one-hot [C, J, n] (scatters are
    # slow on CPU)
    at = loc[:, None, :] == jnp.arange(j_n)[None, :, None]
    total = lambda v: jnp.sum(jnp.where(at, v[:, None, :], 0.0), -1)
    w_node = jnp.sum(at, -1).astype(jnp.float32)  # [C, J]
    s_node = total(r)
    loc_s = loc[:, order]  # [C, d, n]
    best_v, parent = _best_splits(r_s, loc_s, candidate, w_node, s_node, j_n, parent,
                                  keep=level < DEPTH - 1)
    bf = jnp.argmax(best_v, 1)  # [C, J]: lowest feature index among equal gains
    gain = jnp.max(best_v, 1)
    lf = loc_s[rows, bf]  # [C, J, n]: node ids in the chosen feature's order
    p_star = _best_position(r_s[rows, bf], lf, candidate[bf], w_node, s_node)  # [C, J]
    # a node whose residuals are all equal is a leaf (scikit-learn: impurity <= eps)
    pure = (jnp.max(jnp.where(at, r[:, None, :], -jnp.inf), -1)
            <= jnp.min(jnp.where(at, r[:, None, :], jnp.inf), -1))
    do = jnp.isfinite(gain) & (w_node >= 2) & ~pure
    # threshold: midpoint of the node's values on either side of the chosen position
    xf = xs[bf]  # [C, J, n]
    here = lf == jnp.arange(j_n)[None, :, None]
    before = ranks[None, None, :] <= p_star[..., None]
    a = jnp.max(jnp.where(here & before, xf, -jnp.inf), -1)
    b = jnp.min(jnp.where(here & ~before, xf, jnp.inf), -1)
    t = a / 2.0 + b / 2.0
    t = jnp.where((t == b) | ~jnp.isfinite(t), a, t)
    # which samples go left
    pad = lambda v: jnp.concatenate([v, jnp.zeros_like(v[:, :1])], -1)
    f_of = jnp.take_along_axis(pad(bf), loc, -1)
    t_of = jnp.take_along_axis(pad(t), loc, -1)
    do_of = jnp.take_along_axis(pad(do), loc, -1) & (loc < j_n)
    x_of = jnp.take_along_axis(x.T, f_of, 0)  # [C, n]: x[i, f_of[c, i]]
    left = x_of <= t_of
    # the weighted impurity decrease of each split (scikit-learn's importance)
    w_l = total(jnp.where(left, 1.0, 0.0))
    s_l = total(jnp.where(left, r, 0.0))
    w_r, s_r = w_node - w_l, s_node - s_l
    safe = lambda s, w: s * s / jnp.maximum(w, 1.0)
    dec = safe(s_l, w_l) + safe(s_r, w_r) - safe(s_node, w_node)
    importance = importance.at[rows, bf].add(jnp.where(do, dec, 0.0) / n)
    heap = base + jnp.arange(j_n)
    feat = feat.at[:, heap].set(bf)
    thr = thr.at[:, heap].set(t)
    split = split.at[:, heap].set(do)
    nid = jnp.where(do_of, jnp.where(left, 2 * nid + 1, 2 * nid + 2), nid)
  return feat, thr, split, nid, importance


def apply_trees(feat, thr, split, x):
  """Heap id [C, m] of the leaf each row of x [m, d] reaches in each tree ([C, 15])."""
  def one(f, t, s):
    node = jnp.zeros((x.shape[0],), jnp.int32)
    for _ in range(DEPTH):
      go = s[node]
      left = jnp.take_along_axis(x, f[node][:, None], 1)[:, 0] <= t[node]
      node = jnp.where(go, jnp.where(left, 2 * node + 1, 2 * node + 2), node)
    return node
  return jax.vmap(one)(feat, thr, split)


@functools.partial(jax.jit, static_argnames=("num_classes", "stages"))
def fit_predict(x, y, x_test, *, num_classes: int, stages: int = 100,
                learning_rate: float = 0.1):
  """Boost on x [n, d] with integer labels y [n] in [0, num_classes) (every class
  present); returns (normalized feature importances [d], train predictions [n], test
  predictions [m] for x_test [m, d])."""
  if num_classes < 2:
    raise ValueError(f"boosting needs >= 2 classes, got {num_classes}.")
  n, d = x.shape
  x = x.astype(jnp.float32)
  x_test = x_test.astype(jnp.float32)
  order = jnp.argsort(x, axis=0, stable=True).T  # [d, n]
  xs = jnp.take_along_axis(x.T, order, 1)
  candidate = jnp.concatenate([xs[:, 1:] > xs[:, :-1] + FEATURE_THRESHOLD,
                               jnp.zeros((d, 1), bool)], 1)
  onehot = jax.nn.one_hot(y, num_classes, dtype=jnp.float32)
  eps = np.finfo(np.float32).eps
  prior = jnp.clip(onehot.mean(0), eps, 1 - eps)
  binary = num_classes == 2
  if binary:
    init, targets = jnp.log(prior[1] / (1 - prior[1]))[None], onehot[:, 1:]
  else:
    init, targets = jnp.log(prior), onehot
  raw0 = jnp.broadcast_to(init, (n, targets.shape[1]))
  raw0_test = jnp.broadcast_to(init, (x_test.shape[0], targets.shape[1]))

  def stage(carry, _):
    raw, raw_test, imp = carry
    p = jax.nn.sigmoid(raw) if binary else jax.nn.softmax(raw, -1)
    r = (targets - p).T  # [C, n]: the negative gradient
    hess = (p * (1 - p)).T
    feat, thr, split, leaf, importance = _grow_trees(x, xs, order, candidate, r)
    at = leaf[:, None, :] == jnp.arange(NODES)[None, :, None]  # [C, 15, n]
    num = jnp.sum(jnp.where(at, r[:, None, :], 0.0), -1)
    den = jnp.sum(jnp.where(at, hess[:, None, :], 0.0), -1)
    if not binary:
      num = num * (num_classes - 1) / num_classes
    value = jnp.where(jnp.abs(den) < 1e-30, 0.0, num / jnp.where(den == 0, 1.0, den))
    upd = jnp.take_along_axis(value, leaf, -1).T
    upd_test = jnp.take_along_axis(value, apply_trees(feat, thr, split, x_test), -1).T
    return (raw + learning_rate * upd, raw_test + learning_rate * upd_test,
            imp + importance.sum(0)), None

  (raw, raw_test, imp), _ = jax.lax.scan(stage, (raw0, raw0_test, jnp.zeros((d,))), None,
                                         length=stages)
  imp = jnp.where(imp.sum() > 0, imp / jnp.maximum(imp.sum(), 1e-30), 0.0)
  if binary:
    return imp, (raw[:, 0] > 0).astype(jnp.int32), (raw_test[:, 0] > 0).astype(jnp.int32)
  return imp, jnp.argmax(raw, -1), jnp.argmax(raw_test, -1)


def gbt_importance(zt, ft, ze, fe, *, stages: int = 100):
  """DCI's (importance [d, F], train accuracy [F], test accuracy [F]) with these trees:
  one fit per factor, the labels encoded as scikit-learn's LabelEncoder does (a test label
  never seen in training counts as an error); a factor with one value has zero
  importance and perfect accuracy."""
  d = zt.shape[1]
  imps, acc_t, acc_e = [], [], []
  for i in range(ft.shape[1]):
    classes, y = np.unique(ft[:, i], return_inverse=True)
    if classes.size < 2:
      imps.append(np.zeros(d))
      acc_t.append(1.0)
      acc_e.append(1.0)
      continue
    imp, pt, pe = jax.device_get(fit_predict(jnp.asarray(zt, jnp.float32),
                                             jnp.asarray(y, jnp.int32),
                                             jnp.asarray(ze, jnp.float32),
                                             num_classes=int(classes.size), stages=stages))
    imps.append(np.asarray(imp, np.float64))
    acc_t.append(float(np.mean(classes[pt] == ft[:, i])))
    acc_e.append(float(np.mean(classes[pe] == fe[:, i])))
  return np.stack(imps, 1), np.array(acc_t), np.array(acc_e)
