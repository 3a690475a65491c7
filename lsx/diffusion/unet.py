"""A small U-Net for ε-prediction whose bottleneck is an editable latent (h-space).

    eps, h = UNet(...).apply({"params": p}, x_t, t)              # h: the middle block's output
    eps_edit, h = UNet(...).apply({"params": p}, x_t, t, delta_h)  # h + delta_h sent up

The down path is a 3x3 convolution then, per level, a residual block and a stride-2 4x4
convolution (lsx.nn.conv.Conv4S2); the middle block is a residual block whose output is
h (Kwon et al. 2023, "Diffusion models already have a semantic latent space": the
U-Net's bottleneck); the up path is, per level, a stride-2 transposed convolution, the
matching skip concatenated, and a residual block. An edit `delta_h` is added to h and
sent up the decoder with the original skip connections, as Asyrp does. The timestep
enters every residual block through a sinusoidal embedding and an MLP.

Convolutions are lsx.nn.conv's forms on the reference parameterisation ([k, k, C, O]
kernels and a bias), chosen per model by `impl` (stride-2 layers) and `conv3` (3x3 layers)
-- for a run, by `diffusion.conv_impl` (lsx.diffusion.family.conv_forms). 'native' (the
configs' default): `lax.conv` with derivatives written as canonical convolutions; 'gemm':
GEMMs over shifted copies of the input; 'xla': `lax.conv` with JAX's own derivatives.
Inside the runner's scanned training chunk on XLA:CPU, 'gemm' runs
at 1.75 steps/s, 'native' at 2.86 and 'xla' about 20x slower (one core, batch 32 of 32 x 32;
its derivatives leave XLA:CPU's fast path inside loops -- lsx.nn.conv). Under a vmap over a
sweep's members the native layers run as batched GEMMs.
"""
from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from lsx.nn.conv import Conv4S2, ConvT4S2, conv3x3


def timestep_embedding(t, dim: int, max_period: float = 10_000.0):
  """[n] timesteps -> [n, dim] sinusoidal features (cos half, sin half)."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None]
  return jnp.concatenate([jnp.cos(args), jnp.sin(args)], -1)


class Conv3x3(nn.Module):
  """Conv2d(k=3, s=1, p=1) on a [3, 3, C, O] kernel: lsx.nn.conv.conv3x3's forms ('gemm':
  one GEMM over the nine shifted copies of the input; 'xla': `lax.conv`; 'native':
  `lax.conv` with canonical derivatives)."""
  features: int
  impl: str = "gemm"

  @nn.compact
  def __call__(self, x):
    w = self.param("kernel", nn.initializers.lecun_normal(in_axis=(0, 1, 2), out_axis=3),
                   (3, 3, x.shape[-1], self.features))
    b = self.param("bias", nn.initializers.zeros, (self.features,))
    return conv3x3(x, w, b, self.impl)


class ResBlock(nn.Module):
  """GroupNorm -> SiLU -> conv, + the timestep's projection, GroupNorm -> SiLU -> conv,
  plus the input (a 1x1 projection when the width changes)."""
  features: int
  groups: int = 8
  conv3: str = "gemm"

  @nn.compact
  def __call__(self, x, emb):
    g = lambda c: min(self.groups, c)
    h = Conv3x3(self.features, self.conv3)(nn.silu(nn.GroupNorm(g(x.shape[-1]))(x)))
    h = h + nn.Dense(self.features)(nn.silu(emb))[:, None, None, :]
    h = Conv3x3(self.features, self.conv3)(nn.silu(nn.GroupNorm(g(self.features))(h)))
    skip = x if x.shape[-1] == self.features else nn.Dense(self.features)(x)
    return skip + h


class UNet(nn.Module):
  """ε(x_t, t) and the bottleneck h (module doc). widths[0] is the stem's width; each
  further entry is a level (halving the resolution), the last one h's width. impl: the
  stride-2 layers' form (lsx.nn.conv); conv3: the 3x3 layers' ('gemm' | 'xla')."""
  out_channels: int
  widths: Sequence[int] = (32, 64, 64)
  emb_dim: int = 128
  impl: str = "gemm"
  conv3: str = "gemm"

  @nn.compact
  def __call__(self, x, t, delta_h=None):
    emb = timestep_embedding(t, self.emb_dim)
    emb = nn.Dense(self.emb_dim)(nn.silu(nn.Dense(self.emb_dim)(emb)))
    h = Conv3x3(self.widths[0], self.conv3)(x)
    skips = []
    for w_in, w_out in zip(self.widths[:-1], self.widths[1:]):
      h = ResBlock(w_in, conv3=self.conv3)(h, emb)
      skips.append(h)
      h = Conv4S2(w_out, impl=self.impl)(h)
    hspace = ResBlock(self.widths[-1], conv3=self.conv3, name="middle")(h, emb)
    h = hspace if delta_h is None else hspace + delta_h
    for w_in, w_out in zip(self.widths[::-1][:-1], self.widths[::-1][1:]):
      h = ConvT4S2(w_out, impl=self.impl)(h)
      h = ResBlock(w_out, conv3=self.conv3)(jnp.concatenate([h, skips.pop()], -1), emb)
    h = nn.silu(nn.GroupNorm(min(8, h.shape[-1]))(h))
    eps = Conv3x3(self.out_channels, self.conv3, name="out")(h)
    return eps, hspace


def h_shape(image_shape: Sequence[int], widths: Sequence[int]) -> tuple:
  """The shape of h for one image of `image_shape` (H, W, C)."""
  s = 2 ** (len(widths) - 1)
  hh, ww = int(image_shape[0]), int(image_shape[1])
  if hh % s or ww % s:
    raise ValueError(f"images of {hh}x{ww} cannot be halved {len(widths) - 1} times "
                     f"(widths {tuple(widths)}): use a size divisible by {s}.")
  return (hh // s, ww // s, int(widths[-1]))


def init_unet(net: UNet, rng, image_shape):
  x = jnp.zeros((1,) + tuple(image_shape), jnp.float32)
  return net.init(rng, x, jnp.zeros((1,), jnp.int32))["params"]

