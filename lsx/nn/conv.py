"""Stride-2, 4x4 convolutions expressed as matrix products.

Why: on XLA:CPU, `lax.conv` (and above all its transposed form) is several times
slower than the same arithmetic written as GEMMs, and a `vmap` over a sweep's member
axis turns convolutions into grouped convolutions, which XLA:CPU runs slowly, while
it turns GEMMs into batched GEMMs, which it runs well. Every form keeps the
reference parameterisation (a [4,4,Cin,Cout] kernel and a bias) and computes exactly
the function of the `lax` form (tested against a loop reference), so the `impl`
values are interchangeable on the same parameters.

The common step: pad by 1 and take the 2x2 space-to-depth (s2d) of a stride-2
layer's high-resolution side. A stride-2 4x4 kernel is then a 2x2 stride-1 kernel
of 2x2 "quadrants" w[2a:2a+2, 2b:2b+2], and every form is GEMMs plus one of two
pairs of mutually adjoint shift operations on the low-resolution grid:

- `spread` [H,W,C] -> [H+1,W+1,4C] (block ab: the input shifted by (a,b)) and its
  adjoint `gather` (sum of block ab read at offset (a,b));
- `windows` [H+1,W+1,C] -> [H,W,4C] (block ab: the window at offset (a,b)) and its
  adjoint `overlap` (sum of block ab written at offset (a,b)).

Forms, chosen per layer by `impl="gemm"` from the channel counts:

- "s2d": conv = gather(s2d(x) @ W[4C,4O]), transposed conv = d2s(spread(x) @ W[4C,4O]).
  Intermediates have 4C and 4O channels: best when both sides are wide.
- "patch": conv = windows(s2d(x)) @ W[16C,O] (im2col), transposed conv =
  d2s(overlap(x @ W[C,16O])) (col2im). Intermediates have 16C or 16O channels: best
  for the image layers (C or O of 1-3).

The four shifts are small linear JAX primitives whose transposes are each other, so
reverse mode never sees the transpose XLA would derive by itself (a sum of four pads,
which XLA:CPU ran 3x slower than the layer's whole forward GEMM); everything else is
reshapes and 2-D GEMMs. `grad`, `jvp`, their compositions and `vmap` (batched GEMMs)
all apply.

Measured on a 2-core x86 CPU, batch 64, forward+backward (ms): 32x32x32->32 conv
im2col 93, s2d 23, PyTorch 27; 16x16x32->32 transposed conv sub-pixel GEMMs 75, s2d
15, PyTorch 24 (benchmarks/train_throughput.py for the whole network).

The "native" form (`impl="native"`) is the other way round: `lax.conv` itself, with
derivatives written as convolutions in canonical NHWC/HWIO layout (see `native_conv`).
JAX differentiates `lax.conv` into convolutions with permuted dimension labels (the
kernel gradient `f01b_i01o->01bf`); outside loops XLA:CPU turns those back into its fast
form, but inside a loop body -- `lax.scan`, the runner's training chunk -- it leaves them to
its generic emitter. Measured (jaxlib 0.10.2, one core, batch 32 of 32x32x32, 3x3 32->32):
the kernel gradient takes 15.7 ms in a jitted function and 1,007 ms per step of a scan;
the input gradient 13.6 and 258 ms. With the native primitives both run at the jitted
speed in the scan. Under a `vmap` that gives each member its own kernel (a sweep) the
native primitives fall back to the GEMM forms (batched GEMMs, not grouped convolutions).

Conventions follow PyTorch's `Conv2d(k=4, s=2, p=1)` / `ConvTranspose2d(k=4, s=2,
p=1)`, the Locatello et al. (2019) architecture: spatial size halves / doubles.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

_DN = ("NHWC", "HWIO", "NHWC")
IMPLS = ("gemm", "s2d", "patch", "xla", "native")
_SHIFTS = ((0, 0), (0, 1), (1, 0), (1, 1))  # block k = 2a + b of the shift ops


def _pad_ab(y, a, b):
  """Shift y [..., H, W, C] by (a, b) inside an [..., H+1, W+1, C] frame."""
  return jnp.pad(y, [(0, 0)] * (y.ndim - 3) + [(a, 1 - a), (b, 1 - b), (0, 0)])


def _spread_impl(y):
  *lead, h, w, c = y.shape  # stack, not concatenate: one fused pass on XLA:CPU
  return jnp.stack([_pad_ab(y, a, b) for a, b in _SHIFTS], -2).reshape(*lead, h + 1, w + 1, 4 * c)


def _gather_impl(q):
  *lead, h1, w1, c4 = q.shape
  q = q.reshape(*lead, h1, w1, 4, c4 // 4)
  return sum(q[..., a:a + h1 - 1, b:b + w1 - 1, k, :] for k, (a, b) in enumerate(_SHIFTS))


def _windows_impl(y):
  *lead, h1, w1, c = y.shape
  blocks = [y[..., a:a + h1 - 1, b:b + w1 - 1, :] for a, b in _SHIFTS]
  return jnp.stack(blocks, -2).reshape(*lead, h1 - 1, w1 - 1, 4 * c)


def _overlap_impl(q):
  *lead, h, w, c4 = q.shape
  q = q.reshape(*lead, h, w, 4, c4 // 4)
  return sum(_pad_ab(q[..., k, :], a, b) for k, (a, b) in enumerate(_SHIFTS))


def _linear_primitive(name, impl, d_side, wider):
  """A linear shift op on the last three axes [H, W, C] (any leading axes) as a primitive:
  H and W change by `d_side`, C is multiplied (`wider`) or divided by 4."""
  p = Primitive(name)
  p.def_impl(impl)

  def shape(s):
    return s[:-3] + (s[-3] + d_side, s[-2] + d_side, s[-1] * 4 if wider else s[-1] // 4)
  p.def_abstract_eval(lambda x: x.update(shape=shape(x.shape)))
  mlir.register_lowering(p, mlir.lower_fun(impl, multiple_results=False))

  def batch(args, dims):  # the impls take any leading axes: put the batch axis first
    return p.bind(jnp.moveaxis(args[0], dims[0], 0)), 0
  batching.primitive_batchers[p] = batch
  return p


_spread = _linear_primitive("lsx_conv_spread", _spread_impl, 1, True)
_gather = _linear_primitive("lsx_conv_gather", _gather_impl, -1, False)
_windows = _linear_primitive("lsx_conv_windows", _windows_impl, -1, True)
_overlap = _linear_primitive("lsx_conv_overlap", _overlap_impl, 1, False)
for _p, _t in ((_spread, _gather), (_gather, _spread), (_windows, _overlap), (_overlap, _windows)):
  ad.deflinear2(_p, lambda ct, _, t=_t: [t.bind(ct)])


def _s2d(x):
  """Pad by 1, then 2x2 space-to-depth: [N,2H,2W,C] -> [N,H+1,W+1,4C], channels (p,q,c)."""
  x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  n, h2, w2, c = x.shape
  return x.reshape(n, h2 // 2, 2, w2 // 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(
      n, h2 // 2, w2 // 2, 4 * c)


def _d2s(s):
  """Inverse of `_s2d` (depth-to-space, then crop the padding)."""
  n, h, w, c4 = s.shape
  y = s.reshape(n, h, w, 2, 2, c4 // 4).transpose(0, 1, 3, 2, 4, 5)
  return y.reshape(n, 2 * h, 2 * w, c4 // 4)[:, 1:-1, 1:-1]


def _mm(a, m):
  """a[..., K] @ m[K, N] as one 2-D GEMM: its autodiff transposes stay plain 2-D GEMMs."""
  return (a.reshape(-1, a.shape[-1]) @ m).reshape(a.shape[:-1] + (m.shape[-1],))


def _kernel(w, rows, cols):
  """Regroup w[4,4,C,O], indexed w[2a+p, 2b+q], into a matrix with axes `rows` x `cols`."""
  c, o = w.shape[2:]
  sizes = dict(a=2, p=2, b=2, q=2, c=c, o=o)
  order = "apbqco"
  w6 = w.reshape(2, 2, 2, 2, c, o).transpose([order.index(k) for k in rows + cols])
  return w6.reshape(-1, math.prod(sizes[k] for k in cols))


def gemm_form(transposed: bool, c: int, o: int) -> str:
  """The form `impl="gemm"` uses for a layer with C input and O output channels: the one
  with the smaller intermediates (conv: s2d 4*O vs im2col 16*C channels; transposed conv:
  s2d 4*C + 4*O vs col2im 16*O)."""
  if transposed:
    return "s2d" if 3 * o > c else "patch"
  return "s2d" if o <= 4 * c else "patch"


def _check_impl(impl):
  if impl not in IMPLS:
    raise ValueError(f"conv impl must be one of {IMPLS}, got {impl!r}")


def conv4s2(x, w, b=None, impl: str = "gemm"):
  """Conv2d(kernel 4, stride 2, padding 1). x [N,H,W,C] (H, W even), w [4,4,C,O]."""
  _check_impl(impl)
  c, o = w.shape[2:]
  if impl == "gemm":
    impl = gemm_form(False, c, o)
  if impl == "native":
    y = native_conv(x, w, "s2")
  elif impl == "xla":
    y = _xla_conv(x, w)
  elif impl == "patch":
    y = _mm(_windows.bind(_s2d(x)), _kernel(w, "abpqc", "o"))
  else:
    y = _gather.bind(_mm(_s2d(x), _kernel(w, "pqc", "abo")))
  return y if b is None else y + b


def conv_transpose4s2(x, w, b=None, impl: str = "gemm"):
  """ConvTranspose2d(kernel 4, stride 2, padding 1): [N,H,W,C] -> [N,2H,2W,O].

  `w` is [4,4,C,O]; out[2i-1+k] += x[i] * w[k] along each spatial axis (PyTorch's
  convention). It is the adjoint of `conv4s2` with the kernel's channel axes swapped.
  """
  _check_impl(impl)
  c, o = w.shape[2:]
  if impl == "gemm":
    impl = gemm_form(True, c, o)
  if impl == "native":
    y = native_conv(x, w, "t2")
  elif impl == "xla":
    y = _xla_convT(x, w)
  elif impl == "patch":
    y = _d2s(_overlap.bind(_mm(x, _kernel(w, "c", "abpqo"))))
  else:
    y = _d2s(_mm(_spread.bind(x), _kernel(w, "abc", "pqo")))
  return y if b is None else y + b


def _xla_conv(x, w):
  return lax.conv_general_dilated(x, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=_DN)


def _xla_convT(x, w):
  # lhs-dilated convolution with the spatially flipped kernel == PyTorch ConvTranspose2d.
  return lax.conv_general_dilated(x, w[::-1, ::-1], (1, 1), ((2, 2), (2, 2)),
                                  lhs_dilation=(2, 2), dimension_numbers=_DN)



# --- native forms: lax.conv with derivatives in canonical layout --------------------------
#
# One primitive, five kinds, each bilinear in its two operands (x an activation [N,H,W,C]):
#   s1(x, w)  3x3 conv, stride 1, padding 1           w [3,3,C,O] -> [N,H,W,O]
#   s2(x, w)  4x4 conv, stride 2, padding 1           w [4,4,C,O] -> [N,H/2,W/2,O]
#   t2(x, w)  4x4 transposed conv, stride 2, pad 1    w [4,4,C,O] -> [N,2H,2W,O]
#   w1(x, g)  the kernel gradient of s1: sum_n,i,j xpad[n,i+a,j+b,c] g[n,i,j,o] -> [3,3,C,O]
#   w2(x, g)  the kernel gradient of s2: sum_n,i,j xpad[n,2i+a,2j+b,c] g[n,i,j,o] -> [4,4,C,O]
# The transposes, from <s1(x,w), y> = <x, s1(y, flip(w)^io)> = <w, w1(x, y)>,
# <s2(x,w), y> = <x, t2(y, w^io)> = <w, w2(x, y)> and <t2(x,w), y> = <x, s2(y, w^io)>
# (flip: both spatial axes reversed; ^io: the channel axes swapped), are again these kinds,
# so every derivative of any order is a canonical convolution.

def _flip_io(w):
  return w[::-1, ::-1].swapaxes(2, 3)


def _io(w):
  return w.swapaxes(2, 3)


def _kernel_grad(x, g, dilation):
  # batch <- C, features <- N: x^T [C,H,W,N] (*) g^T [h,w,N,O] -> [C,k,k,O]
  y = lax.conv_general_dilated(x.transpose(3, 1, 2, 0), g.transpose(1, 2, 0, 3), (1, 1),
                               ((1, 1), (1, 1)), rhs_dilation=(dilation, dilation),
                               dimension_numbers=_DN)
  return y.transpose(1, 2, 0, 3)


_NATIVE_IMPLS = {
    "s1": lambda x, w: lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                                dimension_numbers=_DN),
    "s2": _xla_conv,
    "t2": _xla_convT,
    "w1": lambda x, g: _kernel_grad(x, g, 1),
    "w2": lambda x, g: _kernel_grad(x, g, 2),
}


def _cols3(x):
  """[..., H, W, C] -> [..., H, W, 9C]: the nine shifted copies of the zero-padded input."""
  h, wd = x.shape[-3], x.shape[-2]
  p = jnp.pad(x, [(0, 0)] * (x.ndim - 3) + [(1, 1), (1, 1), (0, 0)])
  return jnp.concatenate([p[..., i:i + h, j:j + wd, :] for i in range(3) for j in range(3)],
                         -1)


def _w2_gemm(x, g):
  c, o = x.shape[-1], g.shape[-1]
  m = _windows.bind(_s2d(x)).reshape(-1, 16 * c).T @ g.reshape(-1, o)  # rows (a,b,p,q,c)
  return m.reshape(2, 2, 2, 2, c, o).transpose(0, 2, 1, 3, 4, 5).reshape(4, 4, c, o)


# the same kinds as GEMMs: what a vmap over members' own kernels runs (batched GEMMs)
_GEMM_IMPLS = {
    "s1": lambda x, w: _mm(_cols3(x), w.reshape(-1, w.shape[-1])),
    "s2": lambda x, w: conv4s2(x, w),
    "t2": lambda x, w: conv_transpose4s2(x, w),
    "w1": lambda x, g: (_cols3(x).reshape(-1, 9 * x.shape[-1]).T
                        @ g.reshape(-1, g.shape[-1])).reshape(3, 3, x.shape[-1], -1),
    "w2": _w2_gemm,
}

_native_p = Primitive("lsx_conv_native")
_native_p.def_impl(lambda x, w, *, kind: _NATIVE_IMPLS[kind](x, w))


def _native_abstract(x, w, *, kind):
  out = jax.eval_shape(_NATIVE_IMPLS[kind], jax.ShapeDtypeStruct(x.shape, x.dtype),
                       jax.ShapeDtypeStruct(w.shape, w.dtype))
  return x.update(shape=out.shape, dtype=out.dtype)


_native_p.def_abstract_eval(_native_abstract)
mlir.register_lowering(
    _native_p, lambda ctx, x, w, *, kind: mlir.lower_fun(
        _NATIVE_IMPLS[kind], multiple_results=False)(ctx, x, w))


def _bind(x, w, kind):
  return _native_p.bind(x, w, kind=kind)


def _transpose_first(ct, x, w, *, kind):  # x is the undefined (linear) operand
  if kind == "s1":
    return _bind(ct, _flip_io(w), "s1")
  if kind == "s2":
    return _bind(ct, _io(w), "t2")
  if kind == "t2":
    return _bind(ct, _io(w), "s2")
  if kind == "w1":  # here w is the output gradient g and ct a kernel
    return _bind(w, _flip_io(ct), "s1")
  return _bind(w, _io(ct), "t2")  # w2


def _transpose_second(ct, x, w, *, kind):  # w is the undefined (linear) operand
  if kind == "s1":
    return _bind(x, ct, "w1")
  if kind == "s2":
    return _bind(x, ct, "w2")
  if kind == "t2":
    return _io(_bind(ct, x, "w2"))
  return _bind(x, ct, "s1" if kind == "w1" else "s2")


ad.defbilinear(_native_p, _transpose_first, _transpose_second)


def _native_batch(args, dims, *, kind):
  (x, w), (dx, dw) = args, dims
  if dw is None and kind in ("s1", "s2", "t2"):  # one kernel for all: fold into N
    x = jnp.moveaxis(x, dx, 0)
    y = _bind(x.reshape((-1,) + x.shape[2:]), w, kind)
    return y.reshape(x.shape[:2] + y.shape[1:]), 0
  return jax.vmap(_GEMM_IMPLS[kind], in_axes=(dx, dw))(x, w), 0


batching.primitive_batchers[_native_p] = _native_batch


def native_conv(x, w, kind: str):
  """One of the native kinds (table above) on x [..., H, W, C] (leading axes folded into
  N for the activation kinds). Forward `lax.conv`; every derivative a canonical conv."""
  if kind not in _NATIVE_IMPLS:
    raise ValueError(f"native conv kind must be one of {list(_NATIVE_IMPLS)}, got {kind!r}")
  if kind in ("w1", "w2"):
    return _bind(x, w, kind)
  lead = x.shape[:-3]
  y = _bind(x.reshape((-1,) + x.shape[-3:]), w, kind)
  return y.reshape(lead + y.shape[1:])


CONV3_IMPLS = ("gemm", "xla", "native")


def conv3x3(x, w, b=None, impl: str = "gemm"):
  """Conv2d(kernel 3, stride 1, padding 1) on x [..., H, W, C], w [3,3,C,O]: one GEMM over
  the nine shifted copies of the input ('gemm'), `lax.conv` ('xla'), or `lax.conv` with
  canonical derivatives ('native') -- the same function of the same kernel."""
  if impl not in CONV3_IMPLS:
    raise ValueError(f"conv3x3 impl must be one of {CONV3_IMPLS}, got {impl!r}")
  if impl == "native":
    y = native_conv(x, w, "s1")
  elif impl == "xla":
    lead = x.shape[:-3]
    y = _NATIVE_IMPLS["s1"](x.reshape((-1,) + x.shape[-3:]), w)
    y = y.reshape(lead + y.shape[1:])
  else:
    y = _mm(_cols3(x), w.reshape(-1, w.shape[-1]))
  return y if b is None else y + b


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
