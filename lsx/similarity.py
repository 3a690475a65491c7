"""Comparing latent spaces: relative representations, similarity measures, translations.

Pure functions of latent arrays `x [n, d]`, `y [n, e]` (the same n samples encoded by two
models), jittable and `vmap`pable over pairs of sweep members (`pair_matrix`):

- `relative_projection(x, anchors)`: cosine similarity of every sample to every anchor
  (Moschella et al., ICLR 2023, "Relative representations enable zero-shot latent space
  communication"); invariant to rotations and rescaling of the latent space.
  `choose_anchors`: random, farthest-point or per-class anchor indices.
- `linear_cka`, `rbf_cka` (Kornblith et al. 2019): 1 for a space with itself, invariant
  to orthogonal transforms and isotropic scaling.
- `knn_jaccard` (mutual k-NN overlap), `mean_reciprocal_rank` and `mean_cosine` (between
  matched samples): the retrieval measures of Moschella et al.
- `fit_procrustes` / `fit_affine` and `translate`: a map from one space to another fitted
  on anchors (Maiorca et al., NeurIPS 2023, "Latent space translation via semantic
  alignment": standardize, then an orthogonal map by SVD).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

_EPS = 1e-8


def _pair(x, y, what: str, same_width: bool = False):
  """Shapes of two spaces compared sample by sample (static: checked while tracing)."""
  sx, sy = jnp.shape(x), jnp.shape(y)
  if len(sx) != 2 or len(sy) != 2:
    raise ValueError(f"{what} takes two [n, d] arrays, got shapes {sx} and {sy}.")
  if sx[0] != sy[0]:
    raise ValueError(f"{what} compares sample i of one space with sample i of the other: "
                     f"both need the same number of samples, got {sx[0]} and {sy[0]}.")
  if same_width and sx[1] != sy[1]:
    raise ValueError(f"{what} needs spaces of the same width, got {sx[1]} and {sy[1]} "
                     f"(relative representations on the same anchors have it).")


def _unit(x):
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), _EPS)


def relative_projection(x, anchors):
  """[n, A]: cos(x_i, a_k) for samples x [n, d] and anchors [A, d] of the same space."""
  if jnp.shape(x)[-1] != jnp.shape(anchors)[-1]:
    raise ValueError(f"relative_projection: samples and anchors must be in one space (the "
                     f"same width), got {jnp.shape(x)} and {jnp.shape(anchors)}.")
  return _unit(x) @ _unit(anchors).T


ANCHOR_METHODS = ("random", "farthest", "per_class")


def choose_anchors(num: int, method: str = "random", *, n: int | None = None, rng=None,
                   space=None, labels=None):
  """Indices [num] of anchor samples among n: 'random' (a random subset, `rng`),
  'farthest' (farthest-point sampling in `space` [n, d], from a random start), or
  'per_class' (as many from each class of `labels` [n], at random)."""
  if method not in ANCHOR_METHODS:
    raise ValueError(f"Unknown anchor method {method!r}; choose one of {ANCHOR_METHODS}.")
  rng = jax.random.key(0) if rng is None else rng
  if method == "random":
    if n is None or not 1 <= num <= n:
      raise ValueError(f"{num} anchors from {n} samples: random anchors need "
                       f"1 <= num <= n (pass n=, the number of samples).")
    return jax.random.permutation(rng, n)[:num]
  if method == "farthest":
    if space is None:
      raise ValueError("farthest-point anchors need the space to spread them in (space=).")
    s = jnp.asarray(space)
    first = jax.random.randint(rng, (), 0, s.shape[0])

    def body(carry, _):
      dist, last = carry
      dist = jnp.minimum(dist, jnp.sum((s - s[last]) ** 2, -1))
      nxt = jnp.argmax(dist)
      return (dist, nxt), nxt

    init = (jnp.full((s.shape[0],), jnp.inf), first)
    _, rest = jax.lax.scan(body, init, None, length=num - 1)
    return jnp.concatenate([first[None], rest])
  if labels is None:
    raise ValueError("per-class anchors need the labels (labels=).")
  labels = np.asarray(labels)
  classes = np.unique(labels)
  per = -(-num // len(classes))
  keys = jax.random.split(rng, len(classes))
  idx = [np.asarray(jax.random.permutation(k, np.flatnonzero(labels == c)))[:per]
         for k, c in zip(keys, classes)]
  return jnp.asarray(np.concatenate(idx)[:num])


def _center(k):
  return k - k.mean(0, keepdims=True) - k.mean(1, keepdims=True) + k.mean()


def _cka_from_grams(kx, ky):
  kx, ky = _center(kx), _center(ky)
  return jnp.sum(kx * ky) / jnp.maximum(jnp.linalg.norm(kx) * jnp.linalg.norm(ky), _EPS)


def linear_cka(x, y):
  """Linear CKA of x [n, d] and y [n, e]: ||y_c^T x_c||_F^2 / (||x_c^T x_c||_F ||y_c^T y_c||_F)."""
  _pair(x, y, "linear_cka")
  xc, yc = x - x.mean(0), y - y.mean(0)
  num = jnp.sum((yc.T @ xc) ** 2)
  return num / jnp.maximum(jnp.linalg.norm(xc.T @ xc) * jnp.linalg.norm(yc.T @ yc), _EPS)


def rbf_cka(x, y, sigma: float = 0.8):
  """RBF-kernel CKA, the bandwidth `sigma` times the median pairwise distance (Kornblith
  et al.'s choice), per space."""
  def gram(a):
    d2 = jnp.maximum(jnp.sum(a * a, 1)[:, None] + jnp.sum(a * a, 1)[None] - 2 * a @ a.T, 0.0)
    med = jnp.median(jnp.sqrt(d2[jnp.triu_indices(a.shape[0], 1)]))
    return jnp.exp(-d2 / (2 * (sigma * jnp.maximum(med, _EPS)) ** 2))
  _pair(x, y, "rbf_cka")
  return _cka_from_grams(gram(x), gram(y))


def _neighbours(a, k: int):
  s = _unit(a) @ _unit(a).T
  s = s - 3.0 * jnp.eye(a.shape[0])  # never oneself
  return jax.lax.top_k(s, k)[1]  # [n, k] by cosine similarity


def knn_jaccard(x, y, k: int = 10):
  """Mean Jaccard index of every sample's k nearest neighbours (cosine) in x and in y."""
  _pair(x, y, "knn_jaccard")
  if not 1 <= int(k) < jnp.shape(x)[0]:
    raise ValueError(f"knn_jaccard: k={k} neighbours need 1 <= k < the {jnp.shape(x)[0]} "
                     f"samples.")
  nx, ny = _neighbours(x, k), _neighbours(y, k)
  inter = jnp.sum(jnp.any(nx[:, :, None] == ny[:, None, :], -1), -1)
  return jnp.mean(inter / (2 * k - inter))


def mean_reciprocal_rank(x, y):
  """Mean over samples i of 1 / rank of y_i among all y by cosine to x_i (x, y in spaces
  of the same width: relative representations on the same anchors, say)."""
  _pair(x, y, "mean_reciprocal_rank", same_width=True)
  s = _unit(x) @ _unit(y).T
  diag = jnp.diagonal(s)[:, None]
  rank = 1 + jnp.sum((s > diag) & ~jnp.eye(s.shape[0], dtype=bool), 1)
  return jnp.mean(1.0 / rank)


def mean_cosine(x, y):
  """Mean cosine between matched samples x_i and y_i (same width)."""
  _pair(x, y, "mean_cosine", same_width=True)
  return jnp.mean(jnp.sum(_unit(x) * _unit(y), -1))


class Translation(NamedTuple):
  """y ≈ translate(t, x) = ((x - mx) / sx) @ w * sy + my (w orthogonal for Procrustes)."""
  mx: jax.Array
  sx: jax.Array
  w: jax.Array
  my: jax.Array
  sy: jax.Array


def _standardize(a):
  m = a.mean(0)
  s = jnp.sqrt(jnp.mean(jnp.sum((a - m) ** 2, -1)))
  return m, jnp.maximum(s, _EPS)


def fit_procrustes(xa, ya) -> Translation:
  """The orthogonal map from space x to space y fitted on anchors xa [A, d], ya [A, e]
  (each centred and scaled to unit mean norm; d != e pads the narrower with zeros)."""
  _pair(xa, ya, "fit_procrustes (anchors of both spaces)")
  mx, sx = _standardize(xa)
  my, sy = _standardize(ya)
  a, b = (xa - mx) / sx, (ya - my) / sy
  d, e = a.shape[1], b.shape[1]
  m = max(d, e)
  a = jnp.pad(a, ((0, 0), (0, m - d)))
  b = jnp.pad(b, ((0, 0), (0, m - e)))
  u, _, vt = jnp.linalg.svd(a.T @ b)
  w = (u @ vt)[:d, :e]
  return Translation(mx, sx, w, my, sy)


def fit_affine(xa, ya, l2: float = 1e-6) -> Translation:
  """The least-squares affine map from x to y fitted on anchors (ridge `l2`)."""
  _pair(xa, ya, "fit_affine (anchors of both spaces)")
  mx, sx = _standardize(xa)
  my, sy = _standardize(ya)
  a, b = (xa - mx) / sx, (ya - my) / sy
  w = jnp.linalg.solve(a.T @ a + l2 * jnp.eye(a.shape[1]), a.T @ b)
  return Translation(mx, sx, w, my, sy)


def translate(t: Translation, x):
  return ((x - t.mx) / t.sx) @ t.w * t.sy + t.my


def pair_matrix(measure: Callable, spaces, *, chunk: int | None = None):
  """[M, M] of `measure(spaces[i], spaces[j])` for stacked spaces [M, n, ...]: one
  program (vmap over j inside lax.map over i, so memory holds one row of pairs)."""
  spaces = jnp.asarray(spaces)
  row = lambda a: jax.vmap(lambda b: measure(a, b))(spaces)
  return jax.lax.map(row, spaces, batch_size=chunk)
