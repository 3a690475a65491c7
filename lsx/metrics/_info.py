"""Information-theoretic primitives shared by the metrics (pure JAX, jittable, vmappable).

Conventions: natural logarithms (nats); discrete variables are dense integer codes
`0..K-1` with a static upper bound `K` (classes that never occur are allowed and ignored).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import digamma


# ----------------------------------------------------------------------------- host side
def host_scale(z):
  """Per-latent mean and standard deviation, computed in float64 on the host (a constant
  latent gets sd 1)."""
  z64 = np.asarray(z, np.float64)
  m = np.abs(z64).max(0) if z64.size else np.ones(z64.shape[1:])
  m = np.where(m > 0, m, 1.0)  # divide first: no overflow for latents near float64's max
  mu, sd = (z64 / m).mean(0), (z64 / m).std(0)
  return mu * m, np.where(sd > 0, sd * m, m)


def apply_scale(z, mu, sd):
  m = np.where(sd > 0, sd, 1.0)
  return ((np.asarray(z, np.float64) / m - mu / m)).astype(np.float32)


def validate(latents, factors, name: str = "latents", integer_factors: bool = True,
             standardize: bool = False):
  """Common input checks; returns numpy views. Raises before anything compiles.
  `integer_factors`: factors are class labels (integer-valued; continuous SAP: False).
  `standardize`: return each latent standardized in float64, then cast to float32 -- for
  the metrics that are invariant to a per-latent affine map (InfoMEC on continuous
  latents, MIG, DCI), so latents of any scale that float64 holds (1e-30 .. 1e300) score
  as their standardized selves instead of under- or overflowing float32."""
  z = np.asarray(latents)
  f = np.asarray(factors)
  if z.ndim != 2:
    raise ValueError(f"{name} must have shape [n, d], got {z.shape}.")
  if f.ndim != 2:
    raise ValueError(f"factors must have shape [n, F], got {f.shape}.")
  if z.shape[0] != f.shape[0]:
    raise ValueError(f"{name} and factors must have the same number of samples, got "
                     f"{z.shape[0]} and {f.shape[0]}.")
  if z.shape[0] < 2:
    raise ValueError(f"need at least 2 samples, got {z.shape[0]}.")
  if z.shape[1] < 1 or f.shape[1] < 1:
    raise ValueError(f"need at least one latent and one factor, got {name} {z.shape} and "
                     f"factors {f.shape}.")
  if not np.all(np.isfinite(z)):
    raise ValueError(f"{name} contain NaN or Inf; check the model that produced them.")
  if standardize and z.size:
    z = apply_scale(z, *host_scale(z))
  if np.issubdtype(z.dtype, np.floating) and z.dtype.itemsize > 4 and np.abs(z).max() > 1e37:
    raise ValueError(f"{name} reach {np.abs(z).max():.3g}, beyond what float32 (the metrics' "
                     f"precision) holds; rescale them (e.g. standardize each latent).")
  if integer_factors and not np.issubdtype(f.dtype, np.integer):
    if not np.all(np.isfinite(f)) or not np.all(f == np.round(f)):
      bad = f[~np.isfinite(f) | (f != np.round(np.nan_to_num(f)))].ravel()[:3]
      raise ValueError(f"factors must be integer class indices, got values such as "
                       f"{bad.tolist()}; discretize continuous factors first (e.g. "
                       f"lsx.metrics.histogram_discretize).")
    f = f.astype(np.int64)
  if not integer_factors and not np.all(np.isfinite(f)):
    raise ValueError("factors contain NaN or Inf.")
  return z, f


def bucket(k: int) -> int:
  """Static class-count bound: next power of two (>= 2) so similar inputs share a compile."""
  return max(2, 1 << (int(k) - 1).bit_length())


def encode_columns(x) -> tuple[np.ndarray, int, np.ndarray]:
  """Each column's values -> dense codes (like sklearn's LabelEncoder), per column.

  Returns (codes int32 [n, F], static bound K, number of distinct values per column [F]).
  """
  x = np.asarray(x)
  codes, counts = [], []
  for j in range(x.shape[1]):
    _, inv = np.unique(x[:, j], return_inverse=True)
    codes.append(inv.reshape(-1).astype(np.int32))
    counts.append(int(inv.max()) + 1)
  return np.stack(codes, 1), bucket(max(counts)), np.asarray(counts)


# ----------------------------------------------------------------------------- in-jit
def column_codes(x, max_values: int):
  """In-jit LabelEncoder for one column with at most `max_values` distinct values."""
  _, inv = jnp.unique(x, return_inverse=True, size=max_values, fill_value=jnp.max(x))
  return inv.reshape(-1).astype(jnp.int32)


def joint_counts(a, b, ka: int, kb: int):
  """Contingency table [ka, kb] of two code vectors."""
  ones = jnp.ones(a.shape, jnp.float32)
  return jax.ops.segment_sum(ones, a * kb + b, num_segments=ka * kb).reshape(ka, kb)


def _xlogx_ratio(p, q):
  return jnp.where(p > 0, p * (jnp.log(jnp.where(p > 0, p, 1.0)) - jnp.log(jnp.where(q > 0, q, 1.0))), 0.0)


def discrete_mi(a, b, ka: int, kb: int):
  """Plug-in mutual information of two code vectors (as sklearn's mutual_info_score)."""
  c = joint_counts(a, b, ka, kb)
  p = c / c.sum()
  pa = p.sum(1, keepdims=True)
  pb = p.sum(0, keepdims=True)
  return jnp.maximum(jnp.sum(_xlogx_ratio(p, pa * pb)), 0.0)


def entropy(a, k: int):
  """Plug-in entropy (nats) of a code vector."""
  c = jax.ops.segment_sum(jnp.ones(a.shape, jnp.float32), a, num_segments=k)
  p = c / c.sum()
  return -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))


def mi_matrix(a, b, ka: int, kb: int):
  """[A, B] plug-in MI between every column of codes a [n, A] and of codes b [n, B]."""
  per_b = jax.vmap(lambda bj: jax.vmap(lambda ai: discrete_mi(ai, bj, ka, kb), in_axes=1)(a),
                   in_axes=1)
  return per_b(b).T


def standardize(x, axis=0):
  """(x - mean) / std with population std; a constant column becomes zeros."""
  mu = x.mean(axis, keepdims=True)
  sd = x.std(axis, keepdims=True)
  return (x - mu) / jnp.where(sd > 0, sd, 1.0)


@functools.partial(jax.jit, static_argnames=("num_classes", "k"))
def ksg_mi_cd(c, labels, num_classes: int, k: int = 10):
  """Mutual information (nats) between a continuous c [n] and a discrete label [n].

  The k-nearest-neighbour estimator of Ross (2014), with the conventions of
  scikit-learn's `mutual_info_classif`: per-point k = min(k, n_label - 1), the radius is
  the distance to that neighbour (exclusive), points whose label occurs once are
  ignored, the result is clipped at 0. In one dimension the k nearest same-label
  neighbours lie within k places in the label-then-value sort order, and neighbour
  counts are two binary searches, so this is O(n log n + nk) with static shapes.
  """
  n = c.shape[0]
  counts = jax.ops.segment_sum(jnp.ones((n,), jnp.float32), labels, num_segments=num_classes)
  order = jnp.lexsort((c, labels))
  cs, ls = c[order], labels[order]
  cnt = counts[ls]
  keff = jnp.minimum(k, cnt - 1).astype(jnp.int32)
  # The k nearest same-label neighbours of a point are a window of k sorted places around
  # it: a on the left and k - a on the right. Its k-th distance is the smallest over a of
  # max(left distance a places away, right distance k - a places away).
  def shifted(x, by, fill):
    if by == 0:
      return x
    pad = jnp.full((abs(by),), fill, x.dtype)
    return jnp.concatenate([pad, x[:-by]]) if by > 0 else jnp.concatenate([x[-by:], pad])

  def dist_at(by):  # |cs[i - by] - cs[i]| if that place holds the same label, else inf
    same = shifted(ls, by, -1) == ls
    return jnp.where(same, jnp.abs(shifted(cs, by, 0.0) - cs), jnp.inf)

  left = jnp.stack([dist_at(a) for a in range(k + 1)])  # [k+1, n]
  right = jnp.stack([dist_at(-b) for b in range(k + 1)])
  a = jnp.arange(k + 1)[:, None]
  b = jnp.clip(keff[None, :] - a, 0, k)
  cand = jnp.maximum(left, jnp.take_along_axis(right, b, axis=0))
  r = jnp.min(jnp.where(a <= keff[None, :], cand, jnp.inf), axis=0)
  keep = cnt > 1
  pool = jnp.sort(jnp.where(keep, cs, jnp.inf))
  # count |x_j - x_i| < r (strictly, as the reference's nextafter radius); the binary
  # searches work on x_i +- r, which can round by one place: fix each end by one step.
  # dist <= nextafter(r, 0): strictly closer than r, or equal when r is 0 (all ties)
  _within = lambda dist, r: (dist < r) | (dist == 0)
  inside = lambda j: (j >= 0) & (j < n) & _within(jnp.abs(pool[jnp.clip(j, 0, n - 1)] - cs), r)
  hi = jnp.searchsorted(pool, cs + r, side="right")
  hi = jnp.where(inside(hi - 1), hi, hi - 1)
  hi = jnp.where(inside(hi), hi + 1, hi)
  lo = jnp.searchsorted(pool, cs - r, side="left")
  lo = jnp.where(inside(lo), lo, lo + 1)
  lo = jnp.where(inside(lo - 1), lo - 1, lo)
  m = (hi - lo).astype(jnp.float32)
  w = keep.astype(jnp.float32)
  n_eff = w.sum()
  safe = lambda v: jnp.where(keep, v, 1.0)
  mean = lambda v: jnp.sum(w * v) / jnp.maximum(n_eff, 1.0)
  mi = (digamma(jnp.maximum(n_eff, 1.0)) + mean(digamma(safe(keff.astype(jnp.float32))))
        - mean(digamma(safe(cnt))) - mean(digamma(safe(m))))
  return jnp.where(n_eff > 1, jnp.maximum(mi, 0.0), 0.0)


def tie_jitter(x, scale: float = 1e-5, seed: int = 0):
  """Deterministic tiny noise that breaks ties, as scikit-learn adds before the k-NN estimate.

  scikit-learn adds 1e-10 x max(1, mean|x|) Gaussian noise in float64; in float32 that
  is below one ulp, so the same tie-breaking is done at 1e-5 of the standardized scale.
  """
  noise = jax.random.normal(jax.random.key(seed), x.shape, x.dtype)
  return x + scale * jnp.maximum(1.0, jnp.mean(jnp.abs(x), axis=0, keepdims=True)) * noise


# ----------------------------------------------------------------------------- classifier
def fit_logistic(x, y, num_classes: int, *, balanced: bool = True, l2: float = 0.0,
                 steps: int = 100, tol: float = 1e-4):
  """Multinomial logistic regression by full-batch L-BFGS (optax): at most `steps`
  iterations, stopping when the largest gradient entry is below `tol` (as scikit-learn).

  Minimizes the (class-balanced) mean cross-entropy + l2/2 |W|^2 (no penalty on the
  intercept). Classes that never occur are masked out. Returns (W [p, K], b [K], probs
  [n, K] on the training inputs).
  """
  import optax

  n, p = x.shape
  counts = jax.ops.segment_sum(jnp.ones((n,), jnp.float32), y, num_segments=num_classes)
  present = counts > 0
  k_present = jnp.maximum(present.sum(), 1)
  if balanced:
    cw = jnp.where(present, n / (k_present * jnp.maximum(counts, 1.0)), 0.0)
  else:
    cw = jnp.ones((num_classes,), jnp.float32)
  sw = cw[y]
  sw = sw / sw.sum()
  onehot = jax.nn.one_hot(y, num_classes, dtype=x.dtype)
  neg = jnp.where(present, 0.0, -1e9)

  def logits_of(params):
    return x @ params["w"] + params["b"] + neg

  def objective(params):
    lp = jax.nn.log_softmax(logits_of(params))
    ce = -jnp.sum(onehot * lp, axis=1)
    return jnp.sum(sw * ce) + 0.5 * l2 * jnp.sum(params["w"] ** 2)

  params = {"w": jnp.zeros((p, num_classes), x.dtype), "b": jnp.zeros((num_classes,), x.dtype)}
  opt = optax.lbfgs()
  vg = optax.value_and_grad_from_state(objective)

  def cond(carry):
    _, state, it, gnorm = carry
    return (it < steps) & (gnorm > tol)

  def body(carry):
    params, state, it, _ = carry
    value, grad = vg(params, state=state)
    updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=objective)
    params = optax.apply_updates(params, updates)
    # stop like scikit-learn's lbfgs: largest gradient entry below tol
    gnorm = jax.tree.reduce(jnp.maximum, jax.tree.map(lambda g: jnp.max(jnp.abs(g)), grad))
    return params, state, it + 1, gnorm

  params, _, _, _ = jax.lax.while_loop(
      cond, body, (params, opt.init(params), jnp.int32(0), jnp.float32(jnp.inf)))
  return params["w"], params["b"], jax.nn.softmax(logits_of(params))


def log_loss(probs, y):
  """Unweighted mean negative log-likelihood with scikit-learn's clipping to [eps, 1-eps]."""
  eps = jnp.finfo(probs.dtype).eps
  p = jnp.clip(jnp.take_along_axis(probs, y[:, None], axis=1)[:, 0], eps, 1 - eps)
  return -jnp.mean(jnp.log(p))
