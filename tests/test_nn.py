import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lsx import nn as lnn


def _ref_conv(x, w):
  """Direct loop: Conv2d(k=4, s=2, p=1), NHWC / HWIO."""
  n, h, wd, c = x.shape
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  out = np.zeros((n, h // 2, wd // 2, w.shape[-1]))
  for i in range(h // 2):
    for j in range(wd // 2):
      out[:, i, j] = np.einsum("nabc,abco->no", xp[:, 2 * i:2 * i + 4, 2 * j:2 * j + 4], w)
  return out


def _ref_conv_transpose(x, w):
  """Direct loop: ConvTranspose2d(k=4, s=2, p=1): out[2i-1+k] += x[i] w[k]."""
  n, h, wd, c = x.shape
  out = np.zeros((n, 2 * h + 2, 2 * wd + 2, w.shape[-1]))  # index shifted by +1 (padding)
  for i in range(h):
    for j in range(wd):
      for a in range(4):
        for b in range(4):
          out[:, 2 * i + a, 2 * j + b] += x[:, i, j] @ w[a, b]
  return out[:, 1:-1, 1:-1]


@pytest.mark.parametrize("impl", lnn.conv.IMPLS)
@pytest.mark.parametrize("in_ch,out_ch", [(3, 1), (1, 5), (3, 5)])  # gemm: each path once
def test_conv_matches_loop_reference(impl, in_ch, out_ch):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 8, 6, in_ch)).astype(np.float32)
  w = rng.normal(size=(4, 4, in_ch, out_ch)).astype(np.float32)
  np.testing.assert_allclose(lnn.conv4s2(x, w, impl=impl), _ref_conv(x, w), atol=1e-4)
  np.testing.assert_allclose(lnn.conv_transpose4s2(x, w, impl=impl), _ref_conv_transpose(x, w),
                             atol=1e-4)


def test_unknown_conv_impl_names_the_choices():
  with pytest.raises(ValueError, match="s2d"):
    lnn.conv4s2(jnp.zeros((1, 4, 4, 1)), jnp.zeros((4, 4, 1, 1)), impl="cudnn")


@pytest.mark.parametrize("shape", [(64, 64, 1), (28, 28, 1), (64, 64, 3), (32, 32, 2)])
def test_conv_autoencoder_shapes(shape):
  enc, dec = lnn.make_networks("conv", shape, 20)
  x = jax.ShapeDtypeStruct((2,) + shape, jnp.float32)  # shapes only: nothing to compile
  pe = jax.eval_shape(enc.init, jax.random.key(0), x)
  h = jax.eval_shape(enc.apply, pe, x)
  assert h.shape == (2, 20)
  z = jax.ShapeDtypeStruct((2, 10), jnp.float32)
  pd = jax.eval_shape(dec.init, jax.random.key(1), z)
  assert jax.eval_shape(dec.apply, pd, z).shape == (2,) + shape


def test_locatello_parameter_count():
  # 4 convs (4x4: 1->32->32->64->64), dense 1024->256->20; decoder mirrors it.
  enc, dec = lnn.make_networks("conv", (64, 64, 1), 20)
  count = lambda p: sum(a.size for a in jax.tree.leaves(p))
  pe = jax.eval_shape(enc.init, jax.random.key(0), jnp.zeros((1, 64, 64, 1)))
  convs = 16 * (1 * 32 + 32 * 32 + 32 * 64 + 64 * 64) + 32 + 32 + 64 + 64
  assert count(pe) == convs + 1024 * 256 + 256 + 256 * 20 + 20


def test_mlp_pair():
  enc, dec = lnn.make_networks("mlp", (28, 28, 1), 6, hidden=(32,))
  x = jnp.zeros((3, 28, 28, 1))
  h = enc.apply(enc.init(jax.random.key(0), x), x)
  assert h.shape == (3, 6)
  z = h[:, :3]
  assert dec.apply(dec.init(jax.random.key(0), z), z).shape == (3, 28, 28, 1)


def test_bad_arch_is_named():
  with pytest.raises(ValueError, match="Unknown architecture 'resnet'"):
    lnn.make_networks("resnet", (64, 64, 1), 4)


@pytest.mark.parametrize("impl", ["s2d", "patch", "native"])
def test_gemm_forms_compose_with_jvp_vmap_and_second_order(impl):
  """The shift primitives support every transformation lax.conv does, with equal results:
  jvp, reverse over forward, vmap of grad (input and weight gradients), vmap on any axis."""
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.normal(size=(2, 6, 4, 3)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(4, 4, 3, 5)), jnp.float32)
  for f in (lnn.conv4s2, lnn.conv_transpose4s2):
    ours, ref = (lambda x, w: f(x, w, impl=impl)), (lambda x, w: f(x, w, impl="xla"))
    close = lambda a, b: np.testing.assert_allclose(a, b, atol=2e-4, rtol=1e-4)
    close(jax.jvp(ours, (x, w), (0.3 * x, 0.2 * w))[1], jax.jvp(ref, (x, w), (0.3 * x, 0.2 * w))[1])
    # reverse over forward (second order: the flows' L_JVP term), per-member vmap
    rof = lambda g: jax.grad(lambda x: jnp.sum(jnp.sin(jax.jvp(
        lambda xx: jnp.tanh(g(xx, w)), (x,), (0.5 * x,))[1])))(x)
    close(rof(ours), rof(ref))
    xs, ws = jnp.stack([x, 2 * x]), jnp.stack([w, -w])
    vg = lambda g: jax.vmap(jax.grad(lambda x, w: jnp.sum(jnp.sin(g(x, w))), (0, 1)))(xs, ws)
    for a, b in zip(vg(ours), vg(ref)):
      close(a, b)
    moved = jax.vmap(lambda xx: ours(xx, w), in_axes=3, out_axes=3)(jnp.stack([x, -x], 3))
    close(moved[..., 1, :], ref(-x, w))


def _ref_conv3(x, w):
  """Direct loop: Conv2d(k=3, s=1, p=1), NHWC / HWIO."""
  n, h, wd, c = x.shape
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  out = np.zeros((n, h, wd, w.shape[-1]))
  for i in range(h):
    for j in range(wd):
      out[:, i, j] = np.einsum("nabc,abco->no", xp[:, i:i + 3, j:j + 3], w)
  return out


@pytest.mark.parametrize("impl", lnn.conv.CONV3_IMPLS)
def test_conv3x3_matches_loop_reference(impl):
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 5, 6, 3)).astype(np.float32)
  w = rng.normal(size=(3, 3, 3, 4)).astype(np.float32)
  np.testing.assert_allclose(lnn.conv.conv3x3(x, w, impl=impl), _ref_conv3(x, w), atol=1e-4)
  # leading axes beyond N are folded and restored
  np.testing.assert_allclose(lnn.conv.conv3x3(np.stack([x, -x]), w, impl=impl)[1],
                             -_ref_conv3(x, w), atol=1e-4)
  with pytest.raises(ValueError, match="conv3x3 impl must be one of"):
    lnn.conv.conv3x3(x, w, impl="cudnn")


def test_native_conv3x3_derivatives_equal_lax_and_stay_native():
  """impl='native' has lax.conv's derivatives of every order (the adjoint table in
  lsx.nn.conv, checked against JAX's own rules for lax.conv), under vmap both with one
  kernel and with each member's own (the GEMM fallback), and its gradient program holds
  no convolution but the native primitive's (the point: XLA:CPU's fast path in loops)."""
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.normal(size=(2, 5, 4, 3)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(3, 3, 3, 2)), jnp.float32)
  conv3x3 = lnn.conv.conv3x3
  ours, ref = (lambda x, w: conv3x3(x, w, impl="native")), (lambda x, w: conv3x3(x, w, impl="xla"))
  close = lambda a, b: np.testing.assert_allclose(a, b, atol=2e-4, rtol=1e-4)
  loss = lambda g: (lambda x, w: jnp.sum(jnp.sin(g(x, w))))
  for a, b in zip(jax.grad(loss(ours), (0, 1))(x, w), jax.grad(loss(ref), (0, 1))(x, w)):
    close(a, b)
  close(jax.jvp(ours, (x, w), (0.3 * x, 0.2 * w))[1], jax.jvp(ref, (x, w), (0.3 * x, 0.2 * w))[1])
  # grad of grad through the kernel gradient (the w1 kind and its transposes)
  gg = lambda g: jax.grad(lambda x, w: jnp.sum(jax.grad(loss(g), 1)(x, w) ** 2), (0, 1))(x, w)
  for a, b in zip(gg(ours), gg(ref)):
    close(a, b)
  xs, ws = jnp.stack([x, 2 * x]), jnp.stack([w, -w])
  for in_w in (0, None):
    vg = lambda g: jax.vmap(jax.grad(loss(g), (0, 1)), (0, in_w))(xs, ws if in_w == 0 else w)
    for a, b in zip(vg(ours), vg(ref)):
      close(a, b)
  prims = {e.primitive.name for e in jax.make_jaxpr(jax.grad(loss(ours), (0, 1)))(x, w).eqns}
  assert "lsx_conv_native" in prims and "conv_general_dilated" not in prims, prims


def test_native_kind_is_named():
  with pytest.raises(ValueError, match="native conv kind must be one of"):
    lnn.conv.native_conv(jnp.zeros((1, 4, 4, 1)), jnp.zeros((3, 3, 1, 1)), "s3")
