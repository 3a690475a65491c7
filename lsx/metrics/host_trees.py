"""scikit-learn's `GradientBoostingClassifier()` (its defaults, what disentanglement_lib's
DCI fits per factor) as compiled host code: the same algorithm as `lsx.metrics.gbt`,
written as the sequential scan it is and compiled by numba, in float64 like scikit-learn.

Why a second implementation: an exact tree's split search is a scan of each feature's
sorted samples with one running sum per node. XLA has no cheap form of that scan -- the
JAX trees (`lsx.metrics.gbt`) compute it as masked prefix sums over (class, feature,
node, sample), memory-bound at ~5 ns an element on a CPU, 5.7x faster than scikit-learn
at dSprites' factor sizes and no faster as histogram blocks (REPRODUCTION.md section 3).
Scanned directly, each feature is sorted once per fit; a level's nodes are contiguous
segments of every feature's order (a split partitions its segment stably), so one pass
per (level, feature) visits each sample once with the node's running sum in a register:
no masks, no prefix sums over nodes a sample is not in, no sort per node (scikit-learn
sorts each node's samples for each feature).

The algorithm, each line as scikit-learn computes it:
- the class prior (clipped to float32's eps) as the initial raw prediction; each of 100
  stages fits one depth-3 regression tree per class (one for two classes) to the negative
  gradient y_k - p_k of the multinomial (binomial) deviance;
- a node is a leaf when it holds < 2 samples or its impurity sum r^2 / w - (sum r / w)^2
  is <= float64's eps; otherwise every threshold between consecutive sorted values more
  than 1e-7 apart is a candidate, scored by friedman_mse's proxy
  (w_r s_l - w_l s_r)^2 / (w_l w_r), the first strictly best kept (features in index
  order: scikit-learn draws a random order per node, so it breaks exact ties at random);
  the threshold is the midpoint of the two values (the lower value where the midpoint
  rounds to the upper);
- exact ties between features: scikit-learn visits each node's features in a random
  order and keeps the first strictly best, so a tie goes to a random feature. Ties are
  common (in the first stages a class's residuals take two values, so splits of
  different features with the same class counts score the same), and breaking them by
  the lowest feature index biases DCI: on benchmarks/metrics_speed.py's problem, D 0.3012
  in index order against 0.3069-0.3086 over 5 seeds of a random order and 0.3075-0.3090
  for scikit-learn over 4 runs (random_state 0 and 1, two unseeded). The default is a random order from a fixed seed
  (`tie_seed` 0; deterministic, but not scikit-learn's draws), index order with
  `tie_seed=None` (what the JAX trees do);
- leaf values by one Newton step, (K - 1)/K sum r / sum p(1 - p) for K > 2 classes,
  sum r / sum p(1 - p) for two, 0 where the denominator is < 1e-150; raw predictions move
  by 0.1 of them;
- feature importances: each split's weighted impurity decrease
  s_l^2 / w_l + s_r^2 / w_r - s^2 / w over n, summed over the trees and normalized.

`fit_predict` runs one boosting fit (it releases the GIL); `importance` runs DCI's fits
(factors x members) on a thread pool, each fit on one thread, so the result does not
depend on the number of threads.
"""
from __future__ import annotations

import concurrent.futures
import os

import numba
import numpy as np

DEPTH = 3
NODES = 2 ** (DEPTH + 1) - 1
FEATURE_THRESHOLD = 1e-7
EPSILON = np.finfo(np.float64).eps
F32_EPS = float(np.finfo(np.float32).eps)


@numba.njit(nogil=True, cache=True, inline="always")
def _candidate(k, a, w, s, sl, last, v, best, best_t, best_wl, best_sl):
  """The split between a node's sorted positions k - 1 and k (values last, v; sl the
  residual sum of positions a..k-1): the node's best (proxy, threshold, w_l, s_l) after
  it. A multiplication screens out most positions; the comparison that decides is
  scikit-learn's (proxy = num / (w_l w_r) strictly above the best so far)."""
  if v > last + FEATURE_THRESHOLD:
    wl = float(k - a)
    wr = w - wl
    diff = wr * sl - wl * (s - sl)
    num = diff * diff
    if num > best * (wl * wr) * (1.0 - 1e-9):
      proxy = num / (wl * wr)
      if proxy > best:
        t = last / 2.0 + v / 2.0
        if t == v or not np.isfinite(t):
          t = last
        return proxy, t, wl, sl
  return best, best_t, best_wl, best_sl


@numba.njit(nogil=True, cache=True)
def _grow(x, xs, order, r, nid, feat, thr, split, importance, idx_buf, val_buf, go_left,
          random_ties):
  """One depth-3 tree on residuals r [n] (float64): x [n, d] float32 rows, xs [d, n] each
  feature's sorted values (float32), order [d, n] its argsort (int32). Writes the leaf
  heap id of each sample into nid, the tree into feat/thr/split (heap order) and adds the
  splits' impurity decreases / n to importance [d].

  Each level's nodes are contiguous segments of every feature's sorted order (a split
  partitions its segment stably, as scikit-learn's splitter partitions its samples), so
  a node's scan keeps its running sum in a register and its left count is the position;
  features are scanned in pairs (two independent sums in flight).
  idx_buf [2, d, n] int32, val_buf [2, d, n] float32, go_left [n] bool: scratch.
  random_ties: each node visits the features in a random order (numba's generator) as
  scikit-learn does, instead of index order -- which feature wins an exact tie."""
  n, d = x.shape
  for h in range(NODES):
    split[h] = False
    feat[h] = 0
    thr[h] = 0.0
  for i in range(n):
    nid[i] = 0
  half = 2 ** (DEPTH - 1)
  starts = np.zeros(half, np.int64)
  ends = np.zeros(half, np.int64)
  ends[0] = n
  f_best = np.empty(d)
  f_t = np.empty(d)
  f_wl = np.empty(d)
  f_sl = np.empty(d)
  src_idx, src_val = order, xs
  for level in range(DEPTH):
    base = 2 ** level - 1
    jn = 2 ** level
    next_starts = np.zeros(half, np.int64)
    next_ends = np.zeros(half, np.int64)
    any_split = False
    for j in range(jn):
      h = base + j
      a, b = starts[j], ends[j]
      w = float(b - a)
      if b - a < 2:
        continue
      s = 0.0
      sq = 0.0
      for k in range(a, b):
        ri = r[src_idx[0, k]]
        s += ri
        sq += ri * ri
      if sq / w - (s / w) ** 2 <= EPSILON:  # scikit-learn: impurity <= eps is a leaf
        continue
      for f in range(0, d - 1, 2):
        g = f + 1
        b0, t0, wl0, sl0 = -np.inf, 0.0, 0.0, 0.0
        b1, t1, wl1, sl1 = -np.inf, 0.0, 0.0, 0.0
        run0 = r[src_idx[f, a]]
        run1 = r[src_idx[g, a]]
        last0 = np.float64(src_val[f, a])
        last1 = np.float64(src_val[g, a])
        for k in range(a + 1, b):
          v0 = np.float64(src_val[f, k])
          v1 = np.float64(src_val[g, k])
          b0, t0, wl0, sl0 = _candidate(k, a, w, s, run0, last0, v0, b0, t0, wl0, sl0)
          b1, t1, wl1, sl1 = _candidate(k, a, w, s, run1, last1, v1, b1, t1, wl1, sl1)
          run0 += r[src_idx[f, k]]
          run1 += r[src_idx[g, k]]
          last0 = v0
          last1 = v1
        f_best[f], f_t[f], f_wl[f], f_sl[f] = b0, t0, wl0, sl0
        f_best[g], f_t[g], f_wl[g], f_sl[g] = b1, t1, wl1, sl1
      if d % 2 == 1:
        f = d - 1
        b0, t0, wl0, sl0 = -np.inf, 0.0, 0.0, 0.0
        run0 = r[src_idx[f, a]]
        last0 = np.float64(src_val[f, a])
        for k in range(a + 1, b):
          v0 = np.float64(src_val[f, k])
          b0, t0, wl0, sl0 = _candidate(k, a, w, s, run0, last0, v0, b0, t0, wl0, sl0)
          run0 += r[src_idx[f, k]]
          last0 = v0
        f_best[f], f_t[f], f_wl[f], f_sl[f] = b0, t0, wl0, sl0
      # the first feature with the strictly best proxy, in index (or a random) order
      best, best_f = -np.inf, 0
      visit = np.random.permutation(d) if random_ties else np.arange(d)
      for f in visit:
        if f_best[f] > best:
          best, best_f = f_best[f], f
      if best == -np.inf:
        continue
      any_split = True
      best_t, best_wl, best_sl = f_t[best_f], f_wl[best_f], f_sl[best_f]
      split[h] = True
      feat[h] = best_f
      thr[h] = best_t
      s_r, w_r = s - best_sl, w - best_wl
      importance[best_f] += (best_sl * best_sl / best_wl + s_r * s_r / w_r - s * s / w) / n
      nl = 0
      for k in range(a, b):
        i = src_idx[0, k]
        left = np.float64(x[i, best_f]) <= best_t
        go_left[i] = left
        nid[i] = 2 * h + 2 - left
        nl += left
      if level < DEPTH - 1:
        next_starts[2 * j], next_ends[2 * j] = a, a + nl
        next_starts[2 * j + 1], next_ends[2 * j + 1] = a + nl, b
    if level == DEPTH - 1 or not any_split:
      break
    dst_idx, dst_val = idx_buf[level % 2], val_buf[level % 2]
    for j in range(jn):
      if not split[base + j]:
        continue
      a, b, mid = starts[j], ends[j], next_ends[2 * j]
      for f in range(d):
        # stable partition without a branch: each sample's destination is its side's cursor
        pl, pr = a, mid
        for k in range(a, b):
          i = src_idx[f, k]
          left = go_left[i]
          pos = pl if left else pr
          dst_idx[f, pos] = i
          dst_val[f, pos] = src_val[f, k]
          pl += left
          pr += 1 - left
    src_idx, src_val = dst_idx, dst_val
    starts, ends = next_starts, next_ends


@numba.njit(nogil=True, cache=True)
def _leaf_of(x, feat, thr, split):
  m = x.shape[0]
  out = np.zeros(m, np.int64)
  for i in range(m):
    h = 0
    for _ in range(DEPTH):
      if not split[h]:
        break
      if np.float64(x[i, feat[h]]) <= thr[h]:
        h = 2 * h + 1
      else:
        h = 2 * h + 2
    out[i] = h
  return out


@numba.njit(nogil=True, cache=True)
def _boost(x, xs, order, y, x_test, num_classes, stages, learning_rate, tie_seed):
  if tie_seed >= 0:
    np.random.seed(tie_seed)  # this thread's generator: one fit runs on one thread
  n, d = x.shape
  m = x_test.shape[0]
  binary = num_classes == 2
  c = 1 if binary else num_classes
  counts = np.zeros(num_classes)
  for i in range(n):
    counts[y[i]] += 1.0
  prior = np.minimum(np.maximum(counts / n, F32_EPS), 1.0 - F32_EPS)
  init = np.zeros(c)
  if binary:
    init[0] = np.log(prior[1] / (1.0 - prior[1]))
  else:
    for k in range(c):
      init[k] = np.log(prior[k])
  raw = np.empty((n, c))
  raw_test = np.empty((m, c))
  for k in range(c):
    raw[:, k] = init[k]
    raw_test[:, k] = init[k]
  p = np.empty((n, c))
  r = np.empty(n)
  nid = np.empty(n, np.int64)
  feat = np.zeros(NODES, np.int64)
  thr = np.zeros(NODES)
  split = np.zeros(NODES, np.bool_)
  num = np.zeros(NODES)
  den = np.zeros(NODES)
  importance = np.zeros(d)
  idx_buf = np.empty((2, d, n), np.int32)
  val_buf = np.empty((2, d, n), np.float32)
  go_left = np.zeros(n, np.bool_)
  scale = 1.0 if binary else (num_classes - 1.0) / num_classes
  for _ in range(stages):
    for i in range(n):  # probabilities of the raw predictions before this stage
      if binary:
        p[i, 0] = 1.0 / (1.0 + np.exp(-raw[i, 0]))
      else:
        top = raw[i, 0]
        for k in range(1, c):
          top = max(top, raw[i, k])
        total = 0.0
        for k in range(c):
          p[i, k] = np.exp(raw[i, k] - top)
          total += p[i, k]
        for k in range(c):
          p[i, k] /= total
    for k in range(c):
      target = 1 if binary else k
      for i in range(n):
        r[i] = (1.0 if y[i] == target else 0.0) - p[i, k]
      _grow(x, xs, order, r, nid, feat, thr, split, importance, idx_buf, val_buf, go_left,
            tie_seed >= 0)
      num[:] = 0.0
      den[:] = 0.0
      for i in range(n):
        num[nid[i]] += r[i]
        den[nid[i]] += p[i, k] * (1.0 - p[i, k])
      for h in range(NODES):
        num[h] = 0.0 if abs(den[h]) < 1e-150 else scale * num[h] / den[h]
      for i in range(n):
        raw[i, k] += learning_rate * num[nid[i]]
      leaf = _leaf_of(x_test, feat, thr, split)
      for i in range(m):
        raw_test[i, k] += learning_rate * num[leaf[i]]
  return importance, raw, raw_test


def fit_predict(x, y, x_test, *, num_classes: int, stages: int = 100,
                learning_rate: float = 0.1, tie_seed: int | None = None):
  """Boost on x [n, d] with integer labels y [n] in [0, num_classes) (every class
  present); returns (normalized feature importances [d] (float64), train predictions [n],
  test predictions [m] for x_test [m, d]). Same signature and meaning as
  `lsx.metrics.gbt.fit_predict`. tie_seed: None breaks exact split ties by the lowest
  feature index (deterministic, as the JAX trees); an int visits each node's features in
  a random order drawn from it, as scikit-learn does with its random_state (not its
  generator: the same seed does not give scikit-learn's draws)."""
  if num_classes < 2:
    raise ValueError(f"boosting needs >= 2 classes, got {num_classes}.")
  x = np.ascontiguousarray(x, np.float32)
  x_test = np.ascontiguousarray(x_test, np.float32)
  if x.ndim != 2 or x_test.ndim != 2 or x_test.shape[1] != x.shape[1]:
    raise ValueError(f"x [n, d] and x_test [m, d] must share d; got {x.shape} and "
                     f"{x_test.shape}.")
  y = np.ascontiguousarray(y, np.int64)
  if y.shape != (x.shape[0],) or y.min() < 0 or y.max() >= num_classes:
    raise ValueError(f"y must be [n] = [{x.shape[0]}] labels in [0, {num_classes}); got "
                     f"shape {y.shape}, range [{y.min()}, {y.max()}].")
  order = np.ascontiguousarray(np.argsort(x, axis=0, kind="stable").T, np.int32)
  xs = np.ascontiguousarray(np.take_along_axis(x.T, order, 1))
  imp, raw, raw_test = _boost(x, xs, order, y, x_test, int(num_classes), int(stages),
                              float(learning_rate), -1 if tie_seed is None else int(tie_seed))
  total = imp.sum()
  imp = imp / total if total > 0 else imp
  if num_classes == 2:
    return imp, (raw[:, 0] > 0).astype(np.int64), (raw_test[:, 0] > 0).astype(np.int64)
  return imp, np.argmax(raw, 1), np.argmax(raw_test, 1)


def _one_factor(zt, f_train, ze, f_test, stages, tie_seed):
  classes, y = np.unique(f_train, return_inverse=True)
  if classes.size < 2:  # nothing to predict: zero importance, perfect accuracy
    return np.zeros(zt.shape[1]), 1.0, 1.0
  imp, pt, pe = fit_predict(zt, y, ze, num_classes=int(classes.size), stages=stages,
                            tie_seed=tie_seed)
  # a test label never seen in training counts as an error (scikit-learn's LabelEncoder)
  return imp, float(np.mean(classes[pt] == f_train)), float(np.mean(classes[pe] == f_test))


def importance_members(members, ft, fe, *, stages: int = 100, threads: int = 0,
                       tie_seed: int | None = 0):
  """DCI's (importance [d, F], train accuracy [F], test accuracy [F]) of each member in
  `members` = [(latents_train [n, d], latents_test [m, d]), ...] sharing the factors ft
  [n, F], fe [m, F]: one fit per (member, factor), largest class count first, on
  `threads` threads (0: every core); tie_seed as in `fit_predict` (factor i's fit uses
  tie_seed + i; default 0: exact ties broken in a seeded random feature order, as
  scikit-learn breaks them -- index order biases DCI, module doc). Returns one tuple per
  member."""
  ft, fe = np.asarray(ft), np.asarray(fe)
  jobs = [(a, i) for a in range(len(members)) for i in range(ft.shape[1])]
  jobs.sort(key=lambda job: -np.unique(ft[:, job[1]]).size)
  threads = threads or os.cpu_count() or 1
  out = {}
  if threads == 1 or len(jobs) == 1:
    for a, i in jobs:
      out[a, i] = _one_factor(members[a][0], ft[:, i], members[a][1], fe[:, i], stages,
                              None if tie_seed is None else tie_seed + i)
  else:
    with concurrent.futures.ThreadPoolExecutor(min(threads, len(jobs))) as pool:
      futures = {pool.submit(_one_factor, members[a][0], ft[:, i], members[a][1], fe[:, i],
                             stages, None if tie_seed is None else tie_seed + i): (a, i)
                 for a, i in jobs}
      for future in concurrent.futures.as_completed(futures):
        out[futures[future]] = future.result()
  result = []
  for a in range(len(members)):
    per = [out[a, i] for i in range(ft.shape[1])]
    result.append((np.stack([p[0] for p in per], 1), np.array([p[1] for p in per]),
                   np.array([p[2] for p in per])))
  return result


def importance(zt, ft, ze, fe, *, stages: int = 100, threads: int = 0,
               tie_seed: int | None = 0):
  """DCI's (importance [d, F], train accuracy [F], test accuracy [F]) of one model: the
  factors' fits on `threads` threads (0: every core)."""
  return importance_members([(zt, ze)], ft, fe, stages=stages, threads=threads,
                            tie_seed=tie_seed)[0]
