from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from lsx.latents import BOTTLENECKS, Bottleneck, make_quantized
from lsx.nn import make_networks


class Autoencoder(NamedTuple):
  """Pure functions of `params = {"encoder": ..., "decoder": ...[, "latent": ...]}`.

  `params["latent"]` holds the bottleneck's own parameters when it has any (QLAE's
  codebooks)."""
  init: Callable[[jax.Array], Any]
  encode: Callable  # (params, x) -> stats dict (e.g. mean, logvar)
  decode: Callable  # (params, z) -> logits [n,H,W,C]
  bottleneck: Bottleneck
  latent_dim: int
  image_shape: tuple
  decoder_net: Any = None  # the flax decoder module (for intermediate-layer features)
  arch: str = ""  # 'conv', 'mlp' or 'style' (which compiler options its programs get)
  encoder_net: Any = None  # the flax encoder module (for intermediate-layer features)

  def represent(self, params, x):
    """Deterministic representation (the encoder mean) of images x."""
    return self.bottleneck.mean(self.encode(params, x))

  def generate(self, params, z):
    """Images in [0, 1] decoded from codes z [n, d] (the decoder's Bernoulli means)."""
    return jax.nn.sigmoid(self.decode(params, z))

  def reconstruct(self, params, x):
    return self.generate(params, self.represent(params, x))


def make_autoencoder(image_shape, latent_dim: int, arch: str = "conv",
                     bottleneck: str = "gaussian", conv_impl: str = "gemm",
                     hidden=None, num_values: int = 10, style_widths=None) -> Autoencoder:
  if bottleneck not in BOTTLENECKS:
    raise ValueError(f"Unknown bottleneck {bottleneck!r}; choose one of {sorted(BOTTLENECKS)}.")
  if int(latent_dim) < 1:
    raise ValueError(f"latent_dim must be >= 1, got {latent_dim}.")
  image_shape = tuple(int(s) for s in image_shape)
  bn = make_quantized(num_values) if bottleneck == "quantized" else BOTTLENECKS[bottleneck]
  enc, dec = make_networks(arch, image_shape, bn.enc_dim(latent_dim), conv_impl, hidden,
                           style_widths)

  def init(rng):
    k1, k2 = jax.random.split(rng)
    x = jnp.zeros((1,) + image_shape, jnp.float32)
    z = jnp.zeros((1, latent_dim), jnp.float32)
    params = {"encoder": enc.init(k1, x)["params"], "decoder": dec.init(k2, z)["params"]}
    latent = bn.init(latent_dim)
    if latent:
      params["latent"] = latent
    return params

  def encode(params, x):
    return bn.stats(enc.apply({"params": params["encoder"]}, x), params.get("latent"))

  def decode(params, z):
    return dec.apply({"params": params["decoder"]}, z)

  return Autoencoder(init, encode, decode, bn, int(latent_dim), image_shape, dec, arch, enc)
