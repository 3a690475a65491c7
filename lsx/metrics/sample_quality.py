"""Sample quality without a download: what a factor oracle reads from generated images.

A generator of a dataset with known factors (lsx's built-in sprites and scenes) is
judged by the oracle that reads factors (`lsx.metrics.make_oracle`):

- validity: the share of samples whose oracle distance to the data manifold is below a
  threshold, the `quantile` (99%) of the distances of slightly blurred data images (a
  3x3 binomial blur: real images a decoder could plausibly produce, a little soft) —
  a sample farther from every rendered image than almost any blurred real one is not an
  image of the data;
- factor distribution: for each factor, the total-variation distance between the
  distribution of the values the oracle reads from the valid samples and that of the
  data's own factors (0: the same, 1: disjoint).

`sample_quality(images, oracle, dataset)` scores one set of samples; the same call on a
VAE's prior samples or on held-out data gives the rows to compare with.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np


def blur(images):
  """A 3x3 binomial blur ([1, 2, 1] / 4 on each axis, edges replicated) of [n, H, W, C]."""
  p = jnp.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
  y = (p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]) / 4
  return (y[:, :, :-2] + 2 * y[:, :, 1:-1] + y[:, :, 2:]) / 4


def validity_threshold(oracle: Callable, dataset, rng, n: int = 1000,
                       quantile: float = 0.99) -> float:
  """The `quantile` of the oracle distances of `n` blurred data images."""
  images, _ = dataset.sample(rng, int(n))
  _, d = oracle(blur(images))
  return float(np.quantile(np.asarray(d), float(quantile)))


def total_variation(a, b, size: int) -> float:
  """TV distance between the empirical distributions of two integer samples in [0, size)."""
  pa = np.bincount(np.asarray(a, int), minlength=size)[:size] / max(len(a), 1)
  pb = np.bincount(np.asarray(b, int), minlength=size)[:size] / max(len(b), 1)
  return float(0.5 * np.abs(pa - pb).sum())


def sample_quality(images, oracle: Callable, dataset, *, rng=None, reference: int = 1000,
                   quantile: float = 0.99, threshold: float | None = None) -> dict:
  """{"validity", "threshold", "tv" {factor: TV}, "tv_mean", "num"} of `images`
  [n, H, W, C] in [0, 1] (module doc); the data's factors are `reference` fresh draws."""
  rng = jax.random.key(0) if rng is None else rng
  k_t, k_f = jax.random.split(rng)
  if threshold is None:
    threshold = validity_threshold(oracle, dataset, k_t, reference, quantile)
  factors, d = oracle(images)
  factors, d = np.asarray(factors), np.asarray(d)
  valid = d <= threshold
  _, data_f = dataset.sample(k_f, int(reference))
  data_f = np.asarray(data_f)
  tv = {}
  for j, (name, size) in enumerate(zip(dataset.factor_names, dataset.factor_sizes)):
    tv[name] = (total_variation(factors[valid, j], data_f[:, j], int(size)) if valid.any()
                else 1.0)
  return {"validity": float(valid.mean()), "threshold": float(threshold), "tv": tv,
          "tv_mean": float(np.mean(list(tv.values()))), "num": int(len(d))}
