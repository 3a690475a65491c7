"""Closed-form direction baselines: PCA / GANSpace, SeFa, Jacobian SVD; and the
supervised reference `factor_directions`.

Each baseline returns (directions [K, d] with unit rows, a score per direction [K]) sorted
by the score, largest first, with a deterministic sign (the largest-magnitude entry
positive). `factor_directions` returns one direction per ordinal factor, in factor order.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def _canonical_sign(v):
  idx = jnp.argmax(jnp.abs(v), axis=1)
  s = jnp.sign(jnp.take_along_axis(v, idx[:, None], 1))
  return v * jnp.where(s == 0, 1.0, s)


def _top_eigh(gram, k):
  w, v = jnp.linalg.eigh(gram)
  order = jnp.argsort(-w)[:k]
  return _canonical_sign(v[:, order].T), w[order]


def _check_k(k, d, what):
  if not 1 <= int(k) <= d:
    raise ValueError(f"{what}: asked for {k} directions in a {d}-dimensional space "
                     f"(need 1 <= K <= {d}).")


def pca_directions(z, k: int):
  """Principal axes of latent codes z [n, d]: (top-k eigenvectors of their covariance,
  variances)."""
  z = jnp.asarray(z, jnp.float32)
  _check_k(k, z.shape[1], "PCA")
  if z.shape[0] < 2:
    raise ValueError(f"PCA needs >= 2 codes, got {z.shape[0]}.")
  zc = z - z.mean(0)
  return _top_eigh(zc.T @ zc / (z.shape[0] - 1), int(k))


def ganspace_directions(feature_fn: Callable, z, k: int):
  """GANSpace (Harkonen et al. 2020) for a generator whose PCA is taken on activations:
  PCA of h = feature_fn(z) [n, F], then each principal axis is carried back to latent
  space by least-squares regression of z on the PCA coordinates. With feature_fn the
  identity this is latent PCA. Returns (directions [k, d], variances of h along the axes)."""
  z = jnp.asarray(z, jnp.float32)
  h = feature_fn(z).reshape(z.shape[0], -1)
  if not 1 <= int(k) <= min(h.shape[1], z.shape[1]):
    raise ValueError(f"GANSpace: K={k} must be in [1, min(features, latent dim)] = "
                     f"[1, {min(h.shape[1], z.shape[1])}].")
  hc = h - h.mean(0)
  # principal axes of the activations from the SVD of the centred data (n x F)
  _, s, vt = jnp.linalg.svd(hc, full_matrices=False)
  coords = hc @ vt[:k].T  # [n, k]
  u, *_ = jnp.linalg.lstsq(coords, z - z.mean(0))  # z - zbar ~= coords @ u, u [k, d]
  u = u / jnp.linalg.norm(u, axis=1, keepdims=True)
  return _canonical_sign(u), (s[:k] ** 2) / (z.shape[0] - 1)


def sefa_directions(kernel, k: int):
  """SeFa (Shen & Zhou 2021) on the first layer h = z @ kernel + b, kernel [d, out]: each
  output unit's weight vector (a column of the kernel) is normalized, then the directions
  are the top eigenvectors of A^T A = kernel kernel^T [d, d]."""
  w = jnp.asarray(kernel, jnp.float32)
  if w.ndim != 2:
    raise ValueError(f"SeFa needs a 2-D first-layer kernel [latent_dim, out], got {w.shape}.")
  _check_k(k, w.shape[0], "SeFa")
  w = w / jnp.maximum(jnp.linalg.norm(w, axis=0, keepdims=True), 1e-12)
  return _top_eigh(w @ w.T, int(k))


def jacobian_svd(g: Callable, z, k: int, iters: int = 100, rng=None):
  """Top-k right singular vectors of the Jacobian dg/dz of `g` (one code [d] -> one output
  of any shape) by power iteration
  with deflation, matrix-free (one jvp and one vjp per product). z [d] gives the local
  directions at z; z [n, d] gives the top eigenvectors of mean_n J_n^T J_n (directions
  that move the output most on average). Returns (directions [k, d], singular values [k],
  root-mean-square over the anchors for a batch)."""
  z = jnp.asarray(z, jnp.float32)
  zs = z[None] if z.ndim == 1 else z
  d = zs.shape[1]
  _check_k(k, d, "Jacobian SVD")
  flat = lambda zz: g(zz).reshape(-1)

  def gram_one(zz, v):
    _, jv = jax.jvp(flat, (zz,), (v,))
    return jax.vjp(flat, zz)[1](jv)[0]

  gram = lambda v: jax.vmap(gram_one, in_axes=(0, None))(zs, v).mean(0)
  rng = jax.random.key(0) if rng is None else rng
  v0 = jax.random.normal(rng, (int(k), d))

  def one(found, i):
    def deflate(v):
      v = v - found.T @ (found @ v)  # rows of `found` not yet set are zero
      return v / jnp.maximum(jnp.linalg.norm(v), 1e-20)

    v = jax.lax.fori_loop(0, iters, lambda _, v: deflate(gram(v)), deflate(v0[i]))
    sigma = jnp.sqrt(jnp.maximum(v @ gram(v), 0.0))
    return found.at[i].set(v), sigma

  found, sig = jax.lax.scan(one, jnp.zeros((int(k), d)), jnp.arange(int(k)))
  return _canonical_sign(found), sig


def factor_directions(z, factors, factor_sizes, ordinal=None):
  """Supervised reference directions: how the code moves with each ground-truth factor.

  Least squares z ~ X B over codes z [n, d] of images with known factor indices
  factors [n, J]: X holds an intercept, every ordinal factor as index / (size - 1) (its
  whole range is one unit) and every other factor (`ordinal[j]` False: a label with no
  order, e.g. a shape) as indicator columns with its first level dropped. Row j of B is
  the code change across factor j's whole range with the other factors held fixed: the
  best a single global linear direction can do for that factor, on average, under a
  linear model of the code. A reference row for direction discovery, not a method (it
  reads the labels).

  Returns (directions [J_ordinal, d] unit rows, in factor order, positive = the factor
  grows; norms [J_ordinal]: |B_j|, 0 for a factor the code does not follow linearly).
  """
  z = jnp.asarray(z, jnp.float32)
  f = jnp.asarray(factors, jnp.int32)
  sizes = tuple(int(s) for s in factor_sizes)
  if z.ndim != 2 or f.ndim != 2 or z.shape[0] != f.shape[0]:
    raise ValueError(f"factor_directions needs codes [n, d] and factors [n, J] of the same n, "
                     f"got {z.shape} and {f.shape}.")
  if f.shape[1] != len(sizes):
    raise ValueError(f"factors have {f.shape[1]} columns but factor_sizes names {len(sizes)}.")
  ordinal = [True] * len(sizes) if ordinal is None else [bool(o) for o in ordinal]
  if len(ordinal) != len(sizes):
    raise ValueError(f"ordinal has {len(ordinal)} entries for {len(sizes)} factors.")
  if not any(ordinal):
    raise ValueError("factor_directions needs at least one ordinal factor.")
  cols, rows = [jnp.ones((z.shape[0], 1))], []
  for j, (size, o) in enumerate(zip(sizes, ordinal)):
    if o:
      rows.append(sum(c.shape[1] for c in cols))
      cols.append(f[:, j:j + 1].astype(jnp.float32) / max(size - 1, 1))
    else:
      cols.append(jax.nn.one_hot(f[:, j], size)[:, 1:])
  b, *_ = jnp.linalg.lstsq(jnp.concatenate(cols, 1), z)
  raw = b[jnp.asarray(rows)]
  norms = jnp.linalg.norm(raw, axis=1)
  return raw / jnp.maximum(norms, 1e-12)[:, None], norms
