"""Bottlenecks: how an encoder's output becomes a latent code.

Each bottleneck is a small NamedTuple of pure functions over the encoder output `h`:
`enc_dim(d)` (encoder width for d latents), `stats(h)` (dict of arrays), `sample(stats,
rng)`, `mean(stats)` (the deterministic representation used by metrics and traversals).
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

LOG2PI = math.log(2 * math.pi)


class Bottleneck(NamedTuple):
  name: str
  enc_dim: Callable[[int], int]
  stats: Callable
  sample: Callable
  mean: Callable


def gaussian_log_density(z, mean, logvar):
  """Elementwise log N(z; mean, exp(logvar))."""
  return -0.5 * (LOG2PI + logvar + (z - mean) ** 2 * jnp.exp(-logvar))


def gaussian_kl(mean, logvar):
  """KL(N(mean, exp(logvar)) || N(0, I)) summed over the last axis."""
  return 0.5 * jnp.sum(mean ** 2 + jnp.exp(logvar) - 1.0 - logvar, axis=-1)


def _gauss_stats(h):
  mean, logvar = jnp.split(h, 2, axis=-1)
  return {"mean": mean, "logvar": logvar}


def _gauss_sample(stats, rng):
  eps = jax.random.normal(rng, stats["mean"].shape, stats["mean"].dtype)
  return stats["mean"] + jnp.exp(0.5 * stats["logvar"]) * eps


gaussian = Bottleneck("gaussian", lambda d: 2 * d, _gauss_stats, _gauss_sample,
                      lambda s: s["mean"])
deterministic = Bottleneck("deterministic", lambda d: d, lambda h: {"mean": h},
                           lambda s, rng: s["mean"], lambda s: s["mean"])

BOTTLENECKS = {"gaussian": gaussian, "deterministic": deterministic}

__all__ = ["Bottleneck", "gaussian", "deterministic", "BOTTLENECKS", "gaussian_kl",
           "gaussian_log_density"]
