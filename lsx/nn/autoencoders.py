"""Encoder/decoder networks (flax.linen, used only through init/apply).

Default: the convolutional architecture of Locatello et al. (2019, disentanglement_lib):
encoder conv 32,32,64,64 (4x4, stride 2, ReLU) -> dense 256 -> `out_dim`; decoder
dense 256 -> dense 4*4*64 -> transposed conv 64,32,32,C (4x4, stride 2). Inputs of any
size and channel count are zero-padded up to a multiple of 16 (28x28 -> 32x32) and the
decoder output is cropped back, so 64x64 and 28x28 share one architecture.

`arch="style"`: the same encoder with QLAE's style-modulated decoder (Hsu et al. 2023):
an MLP maps z to a style vector w; a learned constant map (init 0.1) is upsampled by
stride-2 transposed convolutions, each followed by leaky ReLU, instance normalization
and a per-channel scale and bias predicted from w; a 3x3 convolution gives the logits.
The paper stacks (3x3, 3x3, 4x4/2) blocks of widths 256..32; lsx keeps one 4x4/2 block
per resolution (widths `style_widths`, default 64, 64, 32, 32) to stay CPU-sized.
"""
from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lsx.nn.conv import Conv4S2, ConvT4S2


def padded_size(n: int, multiple: int = 16) -> int:
  return int(math.ceil(n / multiple) * multiple)


def _pad_to(x, h, w):
  dh, dw = h - x.shape[1], w - x.shape[2]
  return jnp.pad(x, ((0, 0), (dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2), (0, 0)))


def _crop_to(x, h, w):
  """Inverse of `_pad_to`: the centred h x w window."""
  dh, dw = (x.shape[1] - h) // 2, (x.shape[2] - w) // 2
  return x[:, dh:dh + h, dw:dw + w, :]


class ConvEncoder(nn.Module):
  out_dim: int
  channels: Sequence[int] = (32, 32, 64, 64)
  hidden: int = 256
  impl: str = "gemm"

  @nn.compact
  def __call__(self, x):
    h, w = padded_size(x.shape[1]), padded_size(x.shape[2])
    x = _pad_to(x, h, w)
    for c in self.channels:
      x = nn.relu(Conv4S2(c, impl=self.impl)(x))
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(self.hidden)(x))
    return nn.Dense(self.out_dim)(x)


class ConvDecoder(nn.Module):
  image_shape: Sequence[int]
  channels: Sequence[int] = (64, 32, 32)
  hidden: int = 256
  impl: str = "gemm"

  @nn.compact
  def __call__(self, z):
    hh, ww, c = self.image_shape
    ph, pw = padded_size(hh), padded_size(ww)
    s = 2 ** (len(self.channels) + 1)
    x = nn.relu(nn.Dense(self.hidden)(z))
    x = nn.relu(nn.Dense((ph // s) * (pw // s) * 64)(x))
    x = x.reshape(z.shape[0], ph // s, pw // s, 64)
    for ch in self.channels:
      x = nn.relu(ConvT4S2(ch, impl=self.impl)(x))
    return _crop_to(ConvT4S2(c, impl=self.impl)(x), hh, ww)  # logits


class StyleDecoder(nn.Module):
  image_shape: Sequence[int]
  widths: Sequence[int] = (64, 64, 32, 32)
  style_dim: int = 256
  impl: str = "gemm"

  @nn.compact
  def __call__(self, z):
    hh, ww, c = self.image_shape
    ph, pw = padded_size(hh), padded_size(ww)
    s = 2 ** len(self.widths)
    if ph % s or pw % s:
      raise ValueError(f"style decoder with {len(self.widths)} stages needs padded image sides "
                       f"divisible by {s}, got {ph}x{pw}.")
    w = nn.relu(nn.Dense(self.style_dim)(z))
    w = nn.relu(nn.Dense(self.style_dim)(w))
    const = self.param("input_map", nn.initializers.constant(0.1),
                       (ph // s, pw // s, self.widths[0]))
    x = jnp.broadcast_to(const, (z.shape[0],) + const.shape)
    for width in self.widths:
      x = nn.leaky_relu(ConvT4S2(width, impl=self.impl)(x))
      mu = x.mean(axis=(1, 2), keepdims=True)
      var = x.var(axis=(1, 2), keepdims=True)
      x = (x - mu) * jax.lax.rsqrt(var + 1e-6)
      scale, bias = jnp.split(nn.Dense(2 * width)(w), 2, axis=-1)
      x = x * scale[:, None, None, :] + bias[:, None, None, :]
    return _crop_to(nn.Conv(c, (3, 3), padding="SAME")(x), hh, ww)  # logits


class MLPEncoder(nn.Module):
  out_dim: int
  hidden: Sequence[int] = (1200, 1200)

  @nn.compact
  def __call__(self, x):
    x = x.reshape(x.shape[0], -1)
    for h in self.hidden:
      x = nn.relu(nn.Dense(h)(x))
    return nn.Dense(self.out_dim)(x)


class MLPDecoder(nn.Module):
  image_shape: Sequence[int]
  hidden: Sequence[int] = (1200, 1200, 1200)

  @nn.compact
  def __call__(self, z):
    x = z
    for h in self.hidden:
      x = nn.tanh(nn.Dense(h)(x))
    x = nn.Dense(math.prod(self.image_shape))(x)
    return x.reshape((z.shape[0],) + tuple(self.image_shape))


ENCODERS = {"conv": ConvEncoder, "mlp": MLPEncoder, "style": ConvEncoder}
DECODERS = {"conv": ConvDecoder, "mlp": MLPDecoder, "style": StyleDecoder}


def make_networks(arch: str, image_shape, enc_out: int, impl: str = "gemm", hidden=None,
                  style_widths=None):
  """(encoder, decoder) modules for an architecture key in ENCODERS/DECODERS."""
  if arch not in ENCODERS:
    raise ValueError(f"Unknown architecture {arch!r}; choose one of {sorted(ENCODERS)}.")
  if len(image_shape) != 3:
    raise ValueError(f"image_shape must be (H, W, C), got {tuple(image_shape)}.")
  if arch == "conv":
    return ConvEncoder(enc_out, impl=impl), ConvDecoder(tuple(image_shape), impl=impl)
  if arch == "style":
    kw = {} if not style_widths else {"widths": tuple(int(w) for w in style_widths)}
    return ConvEncoder(enc_out, impl=impl), StyleDecoder(tuple(image_shape), impl=impl, **kw)
  kw = {} if hidden is None else {"hidden": tuple(hidden)}
  return MLPEncoder(enc_out, **kw), MLPDecoder(tuple(image_shape), **kw)
