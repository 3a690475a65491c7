"""Potential-flow pieces: exact and Hutchinson Laplacians, analytic paths, purity."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lsx import flows


def test_exact_laplacian_equals_trace_of_hessian_and_hutchinson_is_close():
  flow = flows.make_flow(dim=5, num=3)
  params = flow.init(jax.random.key(0))
  z = jax.random.normal(jax.random.key(1), (5,))
  fn = lambda zz: flow.potential(params, zz, 0.7, 2)
  ref = float(jnp.trace(jax.hessian(fn)(z)))
  # independent reference: central finite differences of the gradient, per coordinate
  eps = 1e-2
  g = jax.grad(fn)
  fd = sum(float((g(z.at[i].add(eps))[i] - g(z.at[i].add(-eps))[i]) / (2 * eps)) for i in range(5))
  assert float(flows.laplacian(fn, z)) == pytest.approx(ref, rel=1e-6)
  assert ref == pytest.approx(fd, abs=1e-3)
  est = flows.laplacian(fn, z, mode="hutchinson", rng=jax.random.key(2), num_probes=4000)
  scale = float(jnp.abs(jax.hessian(fn)(z)).sum())
  assert abs(float(est) - ref) <= 0.05 * scale  # unbiased; 4000 probes
  with pytest.raises(ValueError, match="exact' or 'hutchinson"):
    flows.laplacian(fn, z, mode="fd")


def test_quadratic_potential_gives_the_analytic_path():
  # u = a/2 |z|^2: grad = a z, so z_t = (1 + a)^t z_0 forward and (1 - a)^t z_0 backward
  a = 0.1
  pot = lambda params, z, t, k: 0.5 * a * jnp.sum(z ** 2)
  z0 = jnp.array([1.0, -2.0, 0.5])
  up = flows.traverse(pot, None, z0, 0, 6)
  down = flows.traverse(pot, None, z0, 0, 6, sign=-1.0)
  t = np.arange(7)[:, None]
  np.testing.assert_allclose(up, (1 + a) ** t * np.asarray(z0), rtol=1e-5)
  np.testing.assert_allclose(down, (1 - a) ** t * np.asarray(z0), rtol=1e-5)
  # wave residual of u = t^2/2 + |z|^2/(2d) with c = 1 is 1 - 1 = 0 exactly
  flow = flows.Flow(None, lambda p, z, t, k: 0.5 * t ** 2 + 0.5 * jnp.sum(z ** 2) / z.shape[0], 1, 3)
  r = flows.wave_residual(flow, {"log_c": jnp.zeros(1)}, z0, 0.3, 0)
  assert abs(float(r)) < 1e-5


def test_traversal_is_pure_and_vmaps_over_anchors_and_potentials():
  flow = flows.make_flow(dim=4, num=3)
  params = flow.init(jax.random.key(0))
  zs = jax.random.normal(jax.random.key(1), (5, 4))
  f = jax.jit(jax.vmap(jax.vmap(lambda z, k: flows.traverse(flow.potential, params, z, k, 4),
                                in_axes=(0, None)), in_axes=(None, 0)))
  paths = f(zs, jnp.arange(3))
  assert paths.shape == (3, 5, 5, 4)
  one = flows.traverse(flow.potential, params, zs[2], 1, 4)
  np.testing.assert_allclose(paths[1, 2], one, rtol=1e-5, atol=1e-6)


def test_flow_objective_is_finite_differentiable_and_traced():
  d, k = 3, 4
  w = jax.random.normal(jax.random.key(0), (d, 8 * 8))
  decode = lambda z: jax.nn.sigmoid(z @ w).reshape(-1, 8, 8, 1)
  flow = flows.make_flow(d, k)
  init_clf, loss = flows.make_flow_objective(flow, decode, (8, 8, 1), path_len=4)
  params = {"flow": flow.init(jax.random.key(1)), "classifier": init_clf(jax.random.key(2))}
  z0 = jax.random.normal(jax.random.key(3), (6, d))
  hp = {"lambda_cls": jnp.float32(1.0), "lambda_pde": jnp.float32(1.0)}
  (val, aux), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params, z0, jax.random.key(4), hp)
  assert np.isfinite(float(val)) and all(np.isfinite(float(aux[n])) for n in aux)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
  assert float(jnp.abs(grads["flow"]["log_c"]).sum()) > 0  # the wave speed is learned
  # the weights are traced: lambda_pde = 0 leaves only the classifier term
  v0, a0 = loss(params, z0, jax.random.key(4), {"lambda_cls": jnp.float32(1.0),
                                                 "lambda_pde": jnp.float32(0.0)})
  assert float(v0) == pytest.approx(float(a0["cls"]), rel=1e-5)
  _, loss_h = flows.make_flow_objective(flow, decode, (8, 8, 1), path_len=4,
                                             laplacian_mode="hutchinson", num_probes=2)
  vh, _ = loss_h(params, z0, jax.random.key(4), hp)
  assert np.isfinite(float(vh))
  _, loss_n = flows.make_flow_objective(flow, decode, (8, 8, 1), path_len=4, normalize_jvp=True)
  _, an = loss_n(params, z0, jax.random.key(4), hp)
  _, a1 = loss(params, z0, jax.random.key(4), hp)
  assert np.isfinite(float(an["jvp"])) and float(an["jvp"]) != pytest.approx(float(a1["jvp"]))
