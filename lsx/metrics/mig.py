"""Mutual information gap (Chen et al. 2018), as computed by disentanglement_lib.

Each latent is discretized by a `num_bins`-bin histogram over its own range (numpy's
`digitize` against the histogram's left edges: bins 1..num_bins), the plug-in MI with
each factor is computed, and MIG = mean over factors of (largest MI - second largest MI)
/ H(factor). Edge cases given values (the reference divides by zero or fails): constant
factors are left out of the mean; with a single latent the second MI is 0.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lsx.metrics import _info


def histogram_discretize(z, num_bins: int = 20):
  """disentanglement_lib's discretizer for one column: codes in 0..num_bins (static)."""
  lo, hi = z.min(), z.max()
  # numpy.histogram widens a zero range to [v - 0.5, v + 0.5]
  lo, hi = jnp.where(hi > lo, lo, lo - 0.5), jnp.where(hi > lo, hi, hi + 0.5)
  edges = lo + (hi - lo) * jnp.arange(num_bins, dtype=z.dtype) / num_bins
  return jnp.searchsorted(edges, z, side="right").astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("kf", "num_bins"))
def mig_from_codes(latents, codes, num_values, *, kf: int, num_bins: int = 20):
  """Jitted core; returns dict(mig, per_factor [F], mi [d, F])."""
  z = jnp.asarray(latents, jnp.float32)
  zc = jax.vmap(lambda col: histogram_discretize(col, num_bins), in_axes=1, out_axes=1)(z)
  mi = _info.mi_matrix(zc, codes, num_bins + 1, kf)  # [d, F]
  h = jax.vmap(lambda c: _info.entropy(c, kf), in_axes=1)(codes)
  top = jnp.sort(mi, axis=0)[::-1]
  second = top[1] if mi.shape[0] > 1 else jnp.zeros_like(top[0])
  informative = num_values > 1
  per = jnp.where(informative, (top[0] - second) / jnp.where(h > 0, h, 1.0), 0.0)
  return {"mig": jnp.sum(per) / jnp.maximum(informative.sum(), 1), "per_factor": per, "mi": mi}


def make_mig(factors, num_bins: int = 20) -> Callable:
  """Pure, jittable, vmappable `fn(latents [n, d]) -> dict(mig, per_factor, mi)`."""
  codes, kf, nvals = _info.encode_columns(np.asarray(factors))
  return functools.partial(mig_from_codes, codes=jnp.asarray(codes),
                           num_values=jnp.asarray(nvals, jnp.int32), kf=kf, num_bins=num_bins)


def mig(latents, factors, num_bins: int = 20) -> float:
  """MIG of `latents [n, d]` against integer `factors [n, F]` (a float in [0, 1])."""
  z, f = _info.validate(latents, factors, standardize=True)
  if int(num_bins) < 2:
    raise ValueError(f"num_bins must be >= 2, got {num_bins}.")
  if all(np.unique(f[:, i]).size < 2 for i in range(f.shape[1])):
    raise ValueError("every factor is constant: MIG is undefined. Sample factors that vary.")
  return float(make_mig(f, int(num_bins))(jnp.asarray(z, jnp.float32))["mig"])
