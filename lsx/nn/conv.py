"""Stride-2, 4x4 convolutions expressed as matrix products.

Why: on XLA:CPU, `lax.conv` (and above all its transposed form) is several times
slower than the same arithmetic written as GEMMs, and a `vmap` over a sweep's member
axis turns convolutions into grouped convolutions, which XLA:CPU runs slowly, while
it turns GEMMs into batched GEMMs, which it runs well. Every form keeps the
reference parameterisation (a [4,4,Cin,Cout] kernel and a bias) and computes exactly
the function of the `lax` form (tested against a loop reference), so the `impl`
values are interchangeable on the same parameters.

Two GEMM forms, chosen per layer by `impl="gemm"` from the channel counts:

- "s2d" (space-to-depth). A stride-2 4x4 conv on the 1-padded input is a stride-1
  2x2 conv on its 2x2 space-to-depth s [N,H/2+1,W/2+1,4C]. Instead of gathering the
  2x2 neighbourhoods (a patch tensor 4x the input), lsx multiplies all of s once by
  a [4C, 4O] matrix (one column block per kernel quadrant) and sums the four quadrant
  blocks shifted by (0|1, 0|1) ("gather"): the only intermediate is [N,H/2+1,W/2+1,4O].
  The transposed conv is the adjoint: stack x padded four ways ("spread"), one GEMM,
  depth-to-space, crop. `gather` and `spread` are each other's transposes; they are
  two small JAX primitives so that reverse mode uses that fact. Left to autodiff, the
  transpose of a sum of four slices is four pads and an add, which XLA:CPU ran 3x
  slower than the whole forward GEMM. Everything else is reshapes and 2-D GEMMs, so
  `grad`, `jvp`, their compositions and `vmap` (batched GEMMs) all apply.
- "patch": im2col + one GEMM for the conv, and one GEMM + overlap-add (col2im) for
  the transposed conv. Smaller intermediates when the layer has few input channels
  (the image layer of the encoder) or few output channels (that of the decoder).

Measured on a 2-core x86 CPU, batch 64, forward+backward (ms): 32x32x32->32 conv
im2col 93, s2d 23, PyTorch 27; 16x16x32->32 transposed conv sub-pixel GEMMs 75, s2d
15, PyTorch 24 (benchmarks/train_throughput.py for the whole network).

Conventions follow PyTorch's `Conv2d(k=4, s=2, p=1)` / `ConvTranspose2d(k=4, s=2,
p=1)`, the Locatello et al. (2019) architecture: spatial size halves / doubles.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

_DN = ("NHWC", "HWIO", "NHWC")
IMPLS = ("gemm", "s2d", "patch", "xla")
# Transposed conv, output phase a in {0,1} along one axis: out[2i+a] sums
# x_pad[i + offset] * w[tap] over these (offset into the 1-padded input, tap) pairs.
_PHASE_TAPS = {0: ((0, 3), (1, 1)), 1: ((1, 2), (2, 0))}


def _pad1(x):
  return jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))


def _spread_impl(y):
  """[..., H, W, C] -> [..., H+1, W+1, 4C]: channel block 2a+b holds y shifted by (a, b)."""
  *lead, h, w, c = y.shape
  keep = [(0, 0)] * len(lead)
  parts = [jnp.pad(y, keep + [(a, 1 - a), (b, 1 - b), (0, 0)]) for a in (0, 1) for b in (0, 1)]
  return jnp.stack(parts, -2).reshape(*lead, h + 1, w + 1, 4 * c)  # stack: one fused pass


def _gather_impl(q):
  """Adjoint of `_spread_impl`: [..., H+1, W+1, 4C] -> [..., H, W, C]."""
  *lead, h1, w1, c4 = q.shape
  q = q.reshape(*lead, h1, w1, 4, c4 // 4)
  return sum(q[..., a:a + h1 - 1, b:b + w1 - 1, 2 * a + b, :] for a in (0, 1) for b in (0, 1))


def _linear_primitive(name, impl, out_shape):
  p = Primitive(name)
  p.def_impl(impl)
  p.def_abstract_eval(lambda x: x.update(shape=out_shape(x.shape)))
  mlir.register_lowering(p, mlir.lower_fun(impl, multiple_results=False))

  def batch(args, dims):  # the impls take any leading dims: put the batch axis first
    return p.bind(jnp.moveaxis(args[0], dims[0], 0)), 0
  batching.primitive_batchers[p] = batch
  return p


_spread_p = _linear_primitive("lsx_s2d_spread", _spread_impl,
                              lambda s: s[:-3] + (s[-3] + 1, s[-2] + 1, 4 * s[-1]))
_gather_p = _linear_primitive("lsx_s2d_gather", _gather_impl,
                              lambda s: s[:-3] + (s[-3] - 1, s[-2] - 1, s[-1] // 4))
ad.deflinear2(_spread_p, lambda ct, _: [_gather_p.bind(ct)])
ad.deflinear2(_gather_p, lambda ct, _: [_spread_p.bind(ct)])


def _mm(a, m):
  """a[..., K] @ m[K, N] as one 2-D GEMM: its autodiff transposes stay plain 2-D GEMMs."""
  return (a.reshape(-1, a.shape[-1]) @ m).reshape(a.shape[:-1] + (m.shape[-1],))


def _check_impl(impl):
  if impl not in IMPLS:
    raise ValueError(f"conv impl must be one of {IMPLS}, got {impl!r}")


def _quadrants(w):
  """[4,4,C,O] -> [(a,b,C) rows, (p,q,O) columns] with w[2a+p, 2b+q] in block (a,b),(p,q)."""
  c, o = w.shape[2:]
  return w.reshape(2, 2, 2, 2, c, o).transpose(0, 2, 4, 1, 3, 5).reshape(4 * c, 4 * o)


def conv4s2(x, w, b=None, impl: str = "gemm"):
  """Conv2d(kernel 4, stride 2, padding 1). x [N,H,W,C] (H, W even), w [4,4,C,O]."""
  _check_impl(impl)
  n, h, wd, c = x.shape
  o = w.shape[-1]
  if impl == "gemm":  # s2d's intermediate has 4*O channels, im2col's patches 16*C
    impl = "s2d" if o <= 4 * c else "patch"
  if impl == "xla":
    y = lax.conv_general_dilated(x, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=_DN)
  elif impl == "patch":
    xp = _pad1(x)
    cols = [xp[:, i:i + h:2, j:j + wd:2, :] for i in range(4) for j in range(4)]
    y = jnp.concatenate(cols, axis=-1) @ w.reshape(16 * c, o)
  else:  # s2d: y[u,v] = sum over quadrants (a,b) of s[u+a, v+b] @ w[2a:2a+2, 2b:2b+2]
    hs, ws = h // 2 + 1, wd // 2 + 1
    s = _pad1(x).reshape(n, hs, 2, ws, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, hs, ws, 4 * c)
    wq = w.reshape(2, 2, 2, 2, c, o).transpose(1, 3, 4, 0, 2, 5).reshape(4 * c, 4 * o)
    y = _gather_p.bind(_mm(s, wq))
  return y if b is None else y + b


def conv_transpose4s2(x, w, b=None, impl: str = "gemm"):
  """ConvTranspose2d(kernel 4, stride 2, padding 1): [N,H,W,C] -> [N,2H,2W,O].

  `w` is [4,4,C,O]; out[2i-1+k] += x[i] * w[k] along each spatial axis (PyTorch's
  convention).
  """
  _check_impl(impl)
  n, h, wd, c = x.shape
  o = w.shape[-1]
  if impl == "gemm":  # s2d's intermediates have 4*(C+O) channels, col2im's 16*O
    impl = "s2d" if 3 * o > c else "patch"
  if impl == "xla":
    y = _xla_convT(x, w)
  elif impl == "patch":
    # GEMM + overlap-add, over micro-batches of 8 in sequence so the [n,h,w,16*o]
    # contributions stay in cache (measured 3-4x faster forward+backward than one pass
    # over a batch of 64 on a 2-core CPU).
    groups = n // 8 if n % 8 == 0 and n >= 16 else 1
    if groups > 1:
      y = lax.map(lambda xg: _col2im_convT(xg, w), x.reshape((groups, 8) + x.shape[1:]))
      y = y.reshape((n,) + y.shape[2:])
    else:
      y = _col2im_convT(x, w)
  else:
    # s2d: the adjoint of conv4s2's s2d form. Quadrant (a,b) of the kernel moves x[u]
    # to output block u+a, u+b of the 1-padded output's space-to-depth [N,H+1,W+1,4O].
    s = _mm(_spread_p.bind(x), _quadrants(w)).reshape(n, h + 1, wd + 1, 2, 2, o)
    y = s.transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * h + 2, 2 * wd + 2, o)[:, 1:-1, 1:-1]
  return y if b is None else y + b


def _col2im_convT(x, w):
  """ConvTranspose as one GEMM x @ W[C, 16*O] and an overlap-add of the 4x4 contributions."""
  n, h, wd, c = x.shape
  o = w.shape[-1]
  contrib = (x @ w.transpose(2, 0, 1, 3).reshape(c, 16 * o)).reshape(n, h, wd, 4, 4, o)
  contrib = jnp.pad(contrib, ((0, 0), (1, 1), (1, 1), (0, 0), (0, 0), (0, 0)))
  phases = [[sum(contrib[:, oi:oi + h, oj:oj + wd, ki, kj]
                 for oi, ki in _PHASE_TAPS[a] for oj, kj in _PHASE_TAPS[bb])
             for bb in (0, 1)] for a in (0, 1)]
  y = jnp.stack([jnp.stack(row, axis=3) for row in phases], axis=2)  # [n,h,2,w,2,o]
  return y.reshape(n, 2 * h, 2 * wd, o)


def _xla_convT(x, w):
  # lhs-dilated convolution with the spatially flipped kernel == PyTorch ConvTranspose2d.
  return lax.conv_general_dilated(x, w[::-1, ::-1], (1, 1), ((2, 2), (2, 2)),
                                  lhs_dilation=(2, 2), dimension_numbers=_DN)


class Conv4S2(nn.Module):
  """Conv2d(k=4, s=2, p=1) layer with a [4,4,Cin,Cout] kernel and a bias."""
  features: int
  impl: str = "gemm"
  op = staticmethod(conv4s2)

  @nn.compact
  def __call__(self, x):
    w = self.param("kernel", nn.initializers.lecun_normal(in_axis=(0, 1, 2), out_axis=3),
                   (4, 4, x.shape[-1], self.features))
    b = self.param("bias", nn.initializers.zeros, (self.features,))
    return self.op(x, w, b, self.impl)


class ConvT4S2(Conv4S2):
  """ConvTranspose2d(k=4, s=2, p=1) layer, same parameterisation as `Conv4S2`."""
  op = staticmethod(conv_transpose4s2)
