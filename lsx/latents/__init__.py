"""Bottlenecks: how an encoder's output becomes a latent code.

Each bottleneck is a small NamedTuple of pure functions over the encoder output `h`:
`enc_dim(d)` (encoder width for d latents), `init(d)` (its own parameters, e.g. a
codebook; `{}` when it has none), `stats(h, params)` (dict of arrays), `sample(stats,
rng)` (the code the decoder sees in training), `mean(stats)` (the deterministic
representation used by metrics and traversals).

- `gaussian`: mean and log-variance; reparameterized samples.
- `deterministic`: the encoder output itself.
- `quantized` (QLAE, Hsu et al. 2023): each latent snaps to the nearest value of its own
  learned scalar codebook (init linspace(-0.5, 0.5, num_values)); the decoder sees the
  straight-through code z + sg(q - z). `stats` holds `z` (continuous), `q` (quantized),
  `index`, `z_hat` (straight-through).
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
  stats: Callable  # (h, params) -> dict
  sample: Callable  # (stats, rng) -> z
  mean: Callable  # stats -> deterministic representation
  init: Callable = lambda d: {}  # d -> the bottleneck's own parameters
  discrete: bool = False  # whether `mean` takes finitely many values per latent


def gaussian_log_density(z, mean, logvar):
  """Elementwise log N(z; mean, exp(logvar))."""
  return -0.5 * (LOG2PI + logvar + (z - mean) ** 2 * jnp.exp(-logvar))


def gaussian_kl(mean, logvar):
  """KL(N(mean, exp(logvar)) || N(0, I)) summed over the last axis."""
  return 0.5 * jnp.sum(mean ** 2 + jnp.exp(logvar) - 1.0 - logvar, axis=-1)


def _gauss_stats(h, params=None):
  mean, logvar = jnp.split(h, 2, axis=-1)
  return {"mean": mean, "logvar": logvar}


def _gauss_sample(stats, rng):
  eps = jax.random.normal(rng, stats["mean"].shape, stats["mean"].dtype)
  return stats["mean"] + jnp.exp(0.5 * stats["logvar"]) * eps


gaussian = Bottleneck("gaussian", lambda d: 2 * d, _gauss_stats, _gauss_sample,
                      lambda s: s["mean"])
deterministic = Bottleneck("deterministic", lambda d: d, lambda h, params=None: {"mean": h},
                           lambda s, rng: s["mean"], lambda s: s["mean"])


def quantize(z, codebook):
  """Nearest codebook value per latent. z [..., d], codebook [d, V] -> (q, index)."""
  dist = jnp.abs(z[..., None] - codebook)
  index = jnp.argmin(dist, axis=-1)
  q = jnp.take_along_axis(jnp.broadcast_to(codebook, z.shape + codebook.shape[-1:]),
                          index[..., None], axis=-1)[..., 0]
  return q, index


def straight_through(z, q):
  """Forward value q, gradient of the identity to z."""
  return z + jax.lax.stop_gradient(q - z)


def make_quantized(num_values: int = 10) -> Bottleneck:
  """QLAE's scalar-codebook bottleneck with `num_values` learned values per latent."""
  if int(num_values) < 2:
    raise ValueError(f"a quantized latent needs >= 2 values, got {num_values}.")

  def init(d):
    return {"codebook": jnp.tile(jnp.linspace(-0.5, 0.5, int(num_values))[None], (d, 1))}

  def stats(h, params):
    q, index = quantize(h, params["codebook"])
    return {"z": h, "q": q, "index": index, "z_hat": straight_through(h, q)}

  return Bottleneck("quantized", lambda d: d, stats, lambda s, rng: s["z_hat"],
                    lambda s: s["q"], init, True)


quantized = make_quantized(10)

BOTTLENECKS = {"gaussian": gaussian, "deterministic": deterministic, "quantized": quantized}

__all__ = ["Bottleneck", "gaussian", "deterministic", "quantized", "make_quantized",
           "quantize", "straight_through", "BOTTLENECKS", "gaussian_kl",
           "gaussian_log_density"]
