"""Scoring traversal directions against ground-truth factors: direction-factor attribution.

Shared by every traversal method (linear directions, conditional directions, potential
flows). Anchors are traversed along each of K directions over steps s in {-S..S}; a
factor oracle reads the J factors of every decoded image. Then (docs/directions.md):

  R[k, j] = mean over anchors of |cov_s(f_j, s)| / (std(s) * range_j)
  P = R row-normalized, Q = R column-normalized, rho_k = R[k].sum() / R.sum()
  D = sum_k rho_k (1 - H(P[k]) / log J)            disentanglement
  C = mean_j (1 - H(Q[:, j]) / log K)              completeness
  direction-MIG = mean_j (largest - second largest of Q[:, j])
  coverage = factors matched one-to-one (Hungarian on P) to a direction with P > 0.8

Circular factors (orientation) are unwrapped relative to the anchor's value before the
covariance, modulo the period after which the image repeats (a square's orientation
repeats every quarter turn: `dataset.factor_periods`); an image that no turn changes (a
round blob: `lsx.metrics.rotation_anisotropy` below the dataset's `min_anisotropy`) has no
orientation, so its period is `UNREADABLE` and its reading counts as no change (pass the
images' anisotropy to `dataset_dfa`). A direction whose mean |change| of
every factor stays under `min_change` (in units of the factor ranges) counts as changing
nothing: its row of P is set uniform, so it can never score as pure. The oracle's distance to the data manifold is reported
alongside (`off_manifold`).

Chance correction (`null_permutations` > 0, an lsx option; off by default, so the
formula above is what is reported unless asked): |cov| is biased upwards by reading noise
that has nothing to do with the step (an oracle reading the orientation of a blurry,
round blob returns an arbitrary value at every step, and |cov| of pure noise is positive).
The corrected R[k, j] = max(0, mean over anchors of (|cov_s(f_j, s)| - E_pi |cov_s(f_j,
pi(s))|)) / (std(s) * range_j), with the expectation over a fixed set of random
permutations pi of the steps: readings unrelated to the step score 0 in expectation,
a monotone change keeps almost all of its value.
"""
from __future__ import annotations

import functools

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from lsx.nn.conv import Conv4S2


def _entropy(p, axis):
  return -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), axis)


UNREADABLE = -1.0  # the period of a circular reading the image does not define


def unwrap_circular(f, period):
  """f [..., S, J]: circular readings (period > 0, broadcastable to f) expressed as the
  signed shortest difference to the centre step (the anchor), so a turn through 0 is not
  a jump of a whole period. Where the anchor and the step have different periods (a
  symmetric shape's orientation is defined modulo a fraction of a turn) the finer one is
  used. A period of `UNREADABLE` (< 0: e.g. the orientation of a round blob, which no turn
  changes) at the step or at the anchor makes the difference 0: a reading the image does
  not define is not a change. Non-circular columns (period 0) pass through."""
  mid = f.shape[-2] // 2
  period = jnp.broadcast_to(jnp.asarray(period, f.dtype), f.shape)
  centre = f[..., mid:mid + 1, :]
  p = jnp.minimum(period, period[..., mid:mid + 1, :])
  safe = jnp.where(p > 0, p, 1.0)
  d = jnp.mod(f - centre + safe / 2, safe) - safe / 2
  return jnp.where(p > 0, d, jnp.where(p < 0, 0.0, f))


@functools.partial(jax.jit, static_argnames=("null_permutations",))
def attribution_matrix(factors, steps, ranges, periods, min_change=0.01,
                       null_permutations: int = 0):
  """R [K, J] and the per-direction activity from read factors [K, N, S, J]; `periods`
  (broadcastable to the factors, 0 = not circular) as in `unwrap_circular`;
  `null_permutations` > 0: chance-corrected R (module docstring)."""
  f = unwrap_circular(factors.astype(jnp.float32), periods)
  s = steps.astype(jnp.float32)
  sc = s - s.mean()
  fc = f - f.mean(axis=2, keepdims=True)
  cov = jnp.abs(jnp.einsum("knsj,s->knj", fc, sc)) / s.shape[0]
  if null_permutations:
    keys = jax.random.split(jax.random.key(0), null_permutations)  # fixed: deterministic
    perms = jax.vmap(lambda k: jax.random.permutation(k, sc))(keys)  # [P, S]
    null = jnp.mean(jnp.abs(jnp.einsum("knsj,ps->pknj", fc, perms)), axis=0) / s.shape[0]
    r = jnp.maximum(jnp.mean(cov - null, axis=1), 0.0) / (sc.std() * ranges)
  else:
    r = jnp.mean(cov, axis=1) / (sc.std() * ranges)
  change = jnp.mean(jnp.abs(jnp.diff(f, axis=2)), axis=(1, 2)) / ranges  # [K, J]
  active = change.max(axis=1) >= min_change
  return r, active


@jax.jit
def scores_from_attribution(r, active=None):
  """D, C, direction-MIG, P, Q, rho from R [K, J] (JAX)."""
  k, j = r.shape
  active = jnp.ones((k,), bool) if active is None else active
  row = r.sum(1, keepdims=True)
  p = jnp.where(active[:, None] & (row > 0), r / jnp.where(row > 0, row, 1.0), 1.0 / j)
  col = r.sum(0, keepdims=True)
  q = jnp.where(col > 0, r / jnp.where(col > 0, col, 1.0), 1.0 / k)
  total = r.sum()
  rho = jnp.where(total > 0, r.sum(1) / jnp.where(total > 0, total, 1.0), 1.0 / k)
  d = jnp.sum(rho * (1.0 - _entropy(p, 1) / jnp.log(j))) if j > 1 else jnp.float32(1.0)
  c = jnp.mean(1.0 - _entropy(q, 0) / jnp.log(k)) if k > 1 else jnp.float32(1.0)
  srt = jnp.sort(q, axis=0)
  mig = jnp.mean(srt[-1] - (srt[-2] if k > 1 else 0.0))
  return {"disentanglement": d, "completeness": c, "direction_mig": mig, "P": p, "Q": q,
          "rho": rho}


def ordinal_mask(dataset) -> np.ndarray:
  """[J] bool: the dataset's factors that have an order (all but `dataset.categorical`)."""
  cat = set(getattr(dataset, "categorical", ()))
  return np.array([n not in cat for n in dataset.factor_names], bool)


def coverage(p, threshold: float = 0.8) -> tuple[int, list]:
  """Factors matched one-to-one (Hungarian on P) to a direction with P > threshold."""
  from scipy.optimize import linear_sum_assignment
  p = np.asarray(p)
  rows, cols = linear_sum_assignment(-p)
  pairs = [(int(k), int(j)) for k, j in zip(rows, cols) if p[k, j] > threshold]
  return len(pairs), pairs


def dfa(factors, steps, factor_sizes, circular=None, *, periods=None,
        min_change: float = 0.01, threshold: float = 0.8, off_manifold=None,
        keep=None, null_permutations: int = 0) -> dict:
  """Direction-factor attribution from oracle-read factors [K, N, S, J] (host wrapper).

  Circular factors: `circular` [J] bool (period = the factor's size), or `periods`
  broadcastable to [K, N, S, J] (index units, 0 = not circular; e.g. from
  `dataset.factor_periods(factors)`, which knows a square's orientation repeats every
  quarter turn). `keep` [J] bool selects the factors scored (e.g. `ordinal_mask(dataset)`:
  a categorical factor such as shape has no order, so a covariance with the step means
  nothing, and an oracle's label flips on blurry images would read as large changes).
  `dataset_dfa` applies both from a dataset. `null_permutations` > 0 scores the
  chance-corrected R (module docstring; e.g. 200)."""
  f = np.asarray(factors)  # host-side preparation in numpy: no op-by-op compiles
  if f.ndim != 4:
    raise ValueError(f"factors must be [directions K, anchors N, steps S, factors J], got {f.shape}.")
  sizes = np.asarray(factor_sizes, np.float32)
  if sizes.shape != (f.shape[-1],):
    raise ValueError(f"factor_sizes has {sizes.shape[0]} entries for {f.shape[-1]} factors.")
  if periods is None:
    circ = np.zeros(f.shape[-1], bool) if circular is None else np.asarray(circular, bool)
    if circ.shape != (f.shape[-1],):
      raise ValueError(f"circular has {circ.shape} entries for {f.shape[-1]} factors.")
    periods = np.where(circ, sizes, 0.0).astype(np.float32)
  else:
    if circular is not None:
      raise ValueError("pass either circular or periods, not both.")
    periods = np.asarray(periods, np.float32)
    try:
      periods = np.broadcast_to(periods, f.shape)
    except ValueError:
      raise ValueError(f"periods of shape {periods.shape} do not broadcast to the factors "
                       f"{f.shape}.") from None
  if keep is not None:
    keep = np.asarray(keep, bool)
    if keep.shape != (f.shape[-1],) or not keep.any():
      raise ValueError(f"keep must be a [J={f.shape[-1]}] mask with at least one factor.")
    f, sizes = f[..., keep], sizes[keep]
    periods = np.asarray(periods)[..., keep]
  if int(null_permutations) < 0:
    raise ValueError(f"null_permutations must be >= 0 (0: no chance correction), got "
                     f"{null_permutations}.")
  if len(steps) != f.shape[2] or len(steps) < 2:
    raise ValueError(f"steps must have one value per traversal step ({f.shape[2]}), >= 2.")
  r, active = attribution_matrix(f, jnp.asarray(steps), jnp.asarray(np.maximum(sizes - 1, 1)),
                                 jnp.asarray(periods), min_change,
                                 null_permutations=int(null_permutations))
  out = jax.device_get(scores_from_attribution(r, active))
  cov, pairs = coverage(out["P"], threshold)
  res = {"disentanglement": float(out["disentanglement"]),
         "completeness": float(out["completeness"]),
         "direction_mig": float(out["direction_mig"]), "coverage": cov, "matches": pairs,
         "R": np.asarray(r), "P": np.asarray(out["P"]), "active": np.asarray(active)}
  if off_manifold is not None:
    res["off_manifold"] = float(np.mean(off_manifold))
  return res


def factor_periods(dataset, factors, anisotropy=None) -> np.ndarray:
  """[..., F] circular periods of read factors: `dataset.factor_periods` where the dataset
  defines it, else a factor named 'orientation' is taken to repeat after its size.
  `anisotropy` [...] (`rotation_anisotropy` of the images read) lets a dataset that
  defines `min_anisotropy` mark the orientation of images no turn changes `UNREADABLE`."""
  factors = np.asarray(factors)
  if hasattr(dataset, "factor_periods"):
    if anisotropy is not None and hasattr(dataset, "min_anisotropy"):
      return np.asarray(dataset.factor_periods(factors, anisotropy=anisotropy), np.float32)
    return np.asarray(dataset.factor_periods(factors), np.float32)
  sizes = np.asarray(dataset.factor_sizes, np.float32)
  row = np.where([n == "orientation" for n in dataset.factor_names], sizes, 0.0)
  return np.broadcast_to(row.astype(np.float32), factors.shape)


def dataset_dfa(dataset, factors, steps, *, off_manifold=None, anisotropy=None,
                ordinal_only: bool = True, **kwargs) -> dict:
  """`dfa` with the dataset's knowledge applied: circular periods from
  `factor_periods(dataset, factors, anisotropy)` (pass the images' `rotation_anisotropy`
  [K, N, S] so an orientation the image does not define is not read as a change) and, by
  default, only the ordinal factors scored."""
  keep = ordinal_mask(dataset) if ordinal_only else None
  if anisotropy is not None and np.shape(anisotropy) != np.shape(factors)[:-1]:
    raise ValueError(f"anisotropy has shape {np.shape(anisotropy)}; it needs one value per "
                     f"read image, {np.shape(factors)[:-1]}.")
  return dfa(factors, steps, dataset.factor_sizes,
             periods=factor_periods(dataset, factors, anisotropy),
             off_manifold=off_manifold, keep=keep, **kwargs)


def grid_oracle(dataset, chunk: int = 4096, pool: int = 1) -> Callable:
  """Nearest neighbour over the dataset's whole rendered factor grid (exact for decoded
  images on the data manifold). Returns a jitted fn(images [n,H,W,C]) -> (factors [n,F],
  root-mean-square pixel distance [n]: the off-manifold penalty). The grid is rendered
  chunk by chunk inside the program, never stored. `pool` > 1 compares pool x pool
  average-pooled images (pool^2 times fewer flops; distances at the pooled resolution)."""
  total = dataset.num_examples
  nchunks = -(-total // chunk)
  pool = int(pool)
  if pool < 1:
    raise ValueError(f"pool={pool} must be >= 1.")

  def flat(x):
    n, h, w, c = x.shape
    if h % pool or w % pool:
      raise ValueError(f"pool={pool} must divide the image size {h}x{w}.")
    if pool > 1:
      x = x.reshape(n, h // pool, pool, w // pool, pool, c).mean((2, 4))
    return x.reshape(n, -1).astype(jnp.float32)

  @jax.jit
  def read(images):
    x = flat(images)
    xx = jnp.sum(x * x, 1)

    def body(carry, c):
      best_d, best_i = carry
      idx = jnp.minimum(c * chunk + jnp.arange(chunk), total - 1)
      g = flat(dataset.render(dataset.index_to_factors(idx)))
      d = xx[:, None] + jnp.sum(g * g, 1)[None] - 2.0 * x @ g.T
      j = jnp.argmin(d, 1)
      dj = jnp.take_along_axis(d, j[:, None], 1)[:, 0]
      better = dj < best_d
      return (jnp.where(better, dj, best_d), jnp.where(better, idx[j], best_i)), None

    init = (jnp.full((x.shape[0],), jnp.inf), jnp.zeros((x.shape[0],), jnp.int32))
    (d, i), _ = jax.lax.scan(body, init, jnp.arange(nchunks))
    return dataset.index_to_factors(i), jnp.sqrt(jnp.maximum(d, 0.0) / x.shape[1])

  return read


def traverse_linear(decode: Callable, anchors, directions, steps):
  """Decoded images [K, N, S, ...] of anchors [N, d] moved along unit directions [K, d]."""
  u = directions / jnp.linalg.norm(directions, axis=1, keepdims=True)
  z = anchors[None, :, None, :] + steps[None, None, :, None] * u[:, None, None, :]
  k, n, s, d = z.shape
  x = decode(z.reshape(-1, d))
  return x.reshape((k, n, s) + x.shape[1:])


def variation_pairs(decode: Callable, anchors, directions, rng, max_step: float = 2.0,
                    min_step: float = 0.5):
  """(x' - x [K*N, H, W, C], direction labels [K*N]) for variation predictability: each
  anchor moved along each unit direction by a random signed step, |step| >= min_step."""
  u = directions / jnp.linalg.norm(directions, axis=1, keepdims=True)
  k, n = u.shape[0], anchors.shape[0]
  mag = jax.random.uniform(rng, (k, n), minval=min_step, maxval=max_step)
  sign = jnp.where(jax.random.bernoulli(jax.random.fold_in(rng, 1), 0.5, (k, n)), 1.0, -1.0)
  z1 = anchors[None] + (mag * sign)[..., None] * u[:, None, :]
  x0 = decode(anchors)
  x1 = decode(z1.reshape(k * n, -1)).reshape((k, n) + x0.shape[1:])
  diff = (x1 - x0[None]).reshape((k * n,) + x0.shape[1:])
  return diff, jnp.repeat(jnp.arange(k), n)


@functools.lru_cache(maxsize=16)
def _vp_model(k: int, width: int, steps: int, lr: float, batch_size: int):
  """(jitted init, jitted fit, jitted predict) of the VP classifier; cached so repeated scoring
  (every method and seed of a comparison) compiles once per shape."""
  import flax.linen as nn
  import optax


  class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = nn.relu(Conv4S2(width)(x))
      x = nn.relu(Conv4S2(2 * width)(x))
      x = x.reshape(x.shape[0], -1)  # where a change happens is what tells directions apart
      return nn.Dense(k)(nn.relu(nn.Dense(64)(x)))

  net = Net()
  opt = optax.adam(lr)

  @jax.jit
  def fit(params, xt, yt, rng):
    n = xt.shape[0]
    b = min(batch_size, n)

    def loss(p, idx):
      logits = net.apply(p, xt[idx])
      return optax.softmax_cross_entropy_with_integer_labels(logits, yt[idx]).mean()

    def body(carry, key):
      p, s = carry
      # minibatches (the whole set when it is smaller): cost independent of the pair count
      idx = jax.random.permutation(key, n)[:b] if b < n else jnp.arange(n)
      g = jax.grad(loss)(p, idx)
      u, s = opt.update(g, s, p)
      return (optax.apply_updates(p, u), s), None
    keys = jax.random.split(rng, steps)
    (params, _), _ = jax.lax.scan(body, (params, opt.init(params)), keys)
    return params

  return jax.jit(net.init), fit, jax.jit(net.apply)  # init jitted: one program, not op by op


def variation_predictability(diffs, labels, rng, *, num_classes: int | None = None,
                             train_fraction: float = 0.1, steps: int = 300, lr: float = 1e-3,
                             width: int = 16, batch_size: int = 64) -> dict:
  """VP (Li et al. 2020): accuracy of a small CNN that predicts the direction from x' - x,
  trained on `train_fraction` of the pairs (Adam, `steps` minibatches of `batch_size`)
  and tested on the rest. Ground-truth free."""
  diffs = jnp.asarray(diffs, jnp.float32)
  labels = jnp.asarray(labels, jnp.int32)
  if diffs.ndim != 4 or diffs.shape[0] != labels.shape[0]:
    raise ValueError(f"diffs must be [n, H, W, C] with one label each, got {diffs.shape} and "
                     f"{labels.shape}.")
  k = int(num_classes or int(labels.max()) + 1)
  n = diffs.shape[0]
  n_train = max(k, int(round(train_fraction * n)))
  if n_train >= n:
    raise ValueError(f"{n} pairs leave no test set with train_fraction={train_fraction}.")
  k_split, k_init, k_fit = jax.random.split(rng, 3)
  perm = jax.random.permutation(k_split, n)
  tr, te = perm[:n_train], perm[n_train:]
  init, fit, predict = _vp_model(k, int(width), int(steps), float(lr), int(batch_size))
  params = fit(init(k_init, diffs[:1]), diffs[tr], labels[tr], k_fit)
  pred = jnp.argmax(predict(params, diffs[te]), axis=1)
  return {"vp": float(jnp.mean(pred == labels[te])), "chance": 1.0 / k,
          "num_train": int(n_train), "num_test": int(n - n_train)}
