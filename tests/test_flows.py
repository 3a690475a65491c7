"""Potential-flow pieces: exact and Hutchinson Laplacians, analytic paths, purity."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lsx import flows, runs


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


def test_path_pde_terms_against_a_loop_and_the_relative_residual_closed_forms():
  params = {"log_c": jnp.log(jnp.array([0.5, 2.0]))}
  # u_k = t^3/6 + |z|^2/2 (k-independent): u_tt = t, c_k^2 lap u = c_k^2 d
  flow = flows.Flow(None, lambda p, z, t, k: t ** 3 / 6 + 0.5 * jnp.sum(z ** 2), 2, 3)
  paths = jax.random.normal(jax.random.key(0), (2, 4, 3))
  ks = jnp.array([0, 1])
  l_pde, rel = flows.path_pde_terms(flow, params, paths, ks, jax.random.key(1))
  c2 = np.array([0.25, 4.0])
  a = np.broadcast_to(np.arange(4.0), (2, 4))          # u_tt at times 0..3
  b = np.broadcast_to(c2[:, None] * 3.0, (2, 4))       # c^2 * d
  np.testing.assert_allclose(l_pde, np.mean((a - b) ** 2), rtol=1e-5)
  np.testing.assert_allclose(rel, np.sum((a - b) ** 2) / np.sum(a ** 2 + b ** 2), rtol=1e-5)
  assert float(flows.path_pde_loss(flow, params, paths, ks, jax.random.key(1))) == float(l_pde)
  # an exact solution (u = c^2 t^2/2 + |z|^2/(2d)) has relative residual 0; a static
  # potential (u_tt = 0) has 1, whatever its scale
  one = {"log_c": jnp.zeros(1)}
  exact = flows.Flow(None, lambda p, z, t, k: 0.5 * t ** 2 + 0.5 * jnp.sum(z ** 2) / 3, 1, 3)
  static = flows.Flow(None, lambda p, z, t, k: 40.0 * jnp.sum(z ** 2), 1, 3)
  k0 = jnp.zeros(2, jnp.int32)
  assert float(flows.path_pde_terms(exact, one, paths, k0, jax.random.key(1))[1]) < 1e-6
  np.testing.assert_allclose(flows.path_pde_terms(static, one, paths, k0, jax.random.key(1))[1],
                             1.0, rtol=1e-6)


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
  vg = jax.jit(jax.value_and_grad(loss, has_aux=True))  # reused below: hp values are traced
  (val, aux), grads = vg(params, z0, jax.random.key(4), hp)
  assert np.isfinite(float(val)) and all(np.isfinite(float(aux[n])) for n in aux)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
  assert float(jnp.abs(grads["flow"]["log_c"]).sum()) > 0  # the wave speed is learned
  # the weights are traced: lambda_pde = 0 leaves only the classifier term
  (v0, a0), _ = vg(params, z0, jax.random.key(4), {"lambda_cls": jnp.float32(1.0),
                                                     "lambda_pde": jnp.float32(0.0)})
  assert float(v0) == pytest.approx(float(a0["cls"]), rel=1e-5)
  _, loss_h = flows.make_flow_objective(flow, decode, (8, 8, 1), path_len=4,
                                             laplacian_mode="hutchinson", num_probes=2)
  vh, _ = jax.jit(loss_h)(params, z0, jax.random.key(4), hp)
  assert np.isfinite(float(vh))
  _, loss_n = flows.make_flow_objective(flow, decode, (8, 8, 1), path_len=4, normalize_jvp=True)
  _, an = jax.jit(loss_n)(params, z0, jax.random.key(4), hp)
  a1 = aux
  assert np.isfinite(float(an["jvp"])) and float(an["jvp"]) != pytest.approx(float(a1["jvp"]))


def test_bounded_potentials_and_the_per_pixel_jvp_reward():
  d = 3
  w = jax.random.normal(jax.random.key(0), (d, 8 * 8))
  decode = lambda z: jax.nn.sigmoid(z @ w).reshape(-1, 8, 8, 1)
  lin, tanh = flows.make_flow(d, 2, output="linear"), flows.make_flow(d, 2)  # tanh: the default
  params = lin.init(jax.random.key(1))  # the same parameters: tanh adds none
  params = jax.tree.map(lambda p: 3.0 * p, params)  # larger weights: an unbounded potential
  zs = 3.0 * jax.random.normal(jax.random.key(2), (64, d))
  u_lin = jax.vmap(lambda z: lin.potential(params, z, 1.0, 1))(zs)
  u_tanh = jax.vmap(lambda z: tanh.potential(params, z, 1.0, 1))(zs)
  assert float(jnp.abs(u_lin).max()) > 1.0
  assert float(jnp.abs(u_tanh).max()) <= 1.0
  np.testing.assert_allclose(u_tanh, jnp.tanh(u_lin), rtol=1e-5, atol=1e-6)
  # L_JVP directly: the image change along the velocity, by a finite-free jvp per sample
  ks, ts = jnp.array([0, 1, 1, 0]), jnp.array([0.0, 1.0, 2.0, 3.0])
  z = zs[:4]

  def direct(i):
    v = jax.grad(lambda zz: lin.potential(params, zz, ts[i], ks[i]))(z[i])
    return jax.jvp(lambda zz: decode(zz[None])[0], (z[i],), (v,))[1] ** 2

  sq = [direct(i) for i in range(4)]
  total = flows.jvp_reward(lin, params, decode, z, ts, ks, reduction="sum")
  mean = flows.jvp_reward(lin, params, decode, z, ts, ks)  # the default: per pixel
  np.testing.assert_allclose(total, np.mean([float(jnp.sum(q)) for q in sq]), rtol=1e-5)
  np.testing.assert_allclose(mean, np.mean([float(jnp.mean(q)) for q in sq]), rtol=1e-5)
  with pytest.raises(ValueError, match="flow output"):
    flows.make_flow(d, 2, output="relu")
  with pytest.raises(ValueError, match="jvp_reduction"):
    flows.make_flow_objective(lin, decode, (8, 8, 1), path_len=4, jvp_reduction="max")


# --- joint training with a VAE on one-factor sequences --------------------------------------

def test_sequence_batch_moves_one_factor_at_its_speed():
  from lsx.data import Sprites
  ds = Sprites(size=32)
  tr, sp = flows.check_transforms(ds, (1, 2, 3, 4), (1, 2, 3, 3), 5)
  b = jax.jit(lambda r: flows.sequence_batch(ds, r, 64, tr, sp, 5))(jax.random.key(0))
  f = np.asarray(b["factors"])  # [n, 3 frames, F]
  k, t = np.asarray(b["k"]), np.asarray(b["t"])
  assert set(k) == {0, 1, 2, 3} and t.min() >= 0 and t.max() <= 3
  assert set(np.asarray(b["sign"]).tolist()) == {-1.0, 1.0}  # sequences run both ways
  sizes = np.array(ds.factor_sizes)
  for i in range(64):
    col, speed = tr[k[i]], sp[k[i]]
    other = np.arange(5) != col
    assert (f[i, :, other] == f[i, 0, other][:, None]).all()  # nothing else moves
    sign = int(b["sign"][i])
    assert f[i, 1, col] - f[i, 0, col] == sign * t[i] * speed
    assert f[i, 2, col] - f[i, 0, col] == sign * (t[i] + 1) * speed
    assert 0 <= f[i, 0, col] + sign * 4 * speed <= sizes[col] - 1  # the sequence stays in range
  np.testing.assert_array_equal(np.asarray(b["xt1"][:4]), np.asarray(ds.render(f[:4, 2])))
  with pytest.raises(ValueError, match="does not fit"):
    flows.check_transforms(ds, (1,), (2,), 5)  # scale has 6 values: 4 moves of 2 overshoot
  with pytest.raises(ValueError, match="one speed"):
    flows.check_transforms(ds, (1, 2), (1,), 5)


def test_joint_objective_with_a_resting_flow_matches_its_closed_form():
  from lsx.data import Sprites
  from lsx.latents import gaussian_kl
  from lsx.models import make_autoencoder
  from lsx.models.objectives import neg_log_likelihood
  ds = Sprites(size=32)
  model = make_autoencoder(ds.image_shape, 3, "mlp", hidden=(16,))
  flow = flows.make_flow(3, 2)
  loss = flows.make_joint_objective(model, flow, path_len=4)
  params = {"vae": model.init(jax.random.key(1)), "flow": flow.init(jax.random.key(2))}
  batch = flows.sequence_batch(ds, jax.random.key(3), 5, (3, 4), (2, 2), 4)
  hp = {"beta": jnp.float32(2.0), "lambda_latent": jnp.float32(1.0), "lambda_pde": jnp.float32(1.0),
        "lambda_jvp": jnp.float32(1.0)}
  vg = jax.jit(jax.value_and_grad(loss, has_aux=True))  # one program for every call below
  (val, aux), grads = vg(params, batch, jax.random.key(4), hp)
  assert np.isfinite(float(val))
  for part in ("vae", "flow"):  # both models learn from the joint loss
    assert sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads[part])) > 0
  # a potential with zero output weights never moves: every path point is z0, so the
  # losses reduce to ones computed here directly from the encoder and decoder
  still = jax.tree.map(lambda a: a, params)
  still["flow"]["net"]["w3"] = jnp.zeros_like(params["flow"]["net"]["w3"])
  (v0, a0), _ = vg(still, batch, jax.random.key(4), hp)
  st = model.encode(params["vae"], batch["x0"])
  z0 = model.bottleneck.sample(st, jax.random.split(jax.random.key(4))[0])
  et = model.represent(params["vae"], batch["xt"])
  et1 = model.represent(params["vae"], batch["xt1"])
  latent = jnp.mean(jnp.sum((et1 - et) ** 2, 1) + jnp.sum((et - z0) ** 2, 1))
  rec1 = neg_log_likelihood(model.decode(params["vae"], z0), batch["xt1"]).mean()
  st1 = model.encode(params["vae"], batch["xt1"])
  rec0 = neg_log_likelihood(model.decode(params["vae"], z0), batch["x0"]).mean()
  vae = rec0 + rec1 + 2.0 * (gaussian_kl(st["mean"], st["logvar"]).mean()
                             + gaussian_kl(st1["mean"], st1["logvar"]).mean())
  assert float(a0["latent"]) == pytest.approx(float(latent), rel=1e-4)
  assert float(a0["rec_next"]) == pytest.approx(float(rec1), rel=1e-5)
  assert float(a0["ic"]) == 0.0 and float(a0["jvp"]) == 0.0
  # the weights are traced: with the lambdas 0 the loss is the two ELBO terms alone
  (v_vae, _), _ = vg(still, batch, jax.random.key(4), dict(hp, lambda_latent=jnp.float32(0.0),
                                                         lambda_pde=jnp.float32(0.0),
                                                         lambda_jvp=jnp.float32(0.0)))
  assert float(v_vae) == pytest.approx(float(vae), rel=1e-5)


def test_a_joint_runs_vae_exports_as_an_autoencoder_workdir(tmp_path):
  # (a killed joint run resuming bit-exact: tests/test_families.py, with every family)
  from configs import common
  from conftest import assert_trees_equal
  from lsx import train as lt

  c = common.load("configs/flows_joint_sprites.py:smoke")
  with c.unlocked():
    c.train.steps, c.workdir = 6, str(tmp_path / "whole")
  whole, _ = lt.train(c, print_fn=lambda s: None)
  # the joint run's VAE, exported as a training workdir, loads like any trained beta-VAE
  out = runs.export_vae(str(tmp_path / "whole"), str(tmp_path / "vae"))
  vsetup, state = lt.load_run(out)
  assert int(state.step) == 6 and vsetup.config.objective.name == "beta_vae"
  assert_trees_equal(state.params, whole.params["vae"])
  with pytest.raises(FileExistsError, match="already holds checkpoints"):
    runs.export_vae(str(tmp_path / "whole"), out)
  with pytest.raises(FileNotFoundError, match="config.json"):
    runs.export_vae(str(tmp_path / "never"), str(tmp_path / "vae2"))


def test_joint_flows_experiment_writes_figures_and_scores(tmp_path):
  import json
  import subprocess
  import sys
  out = subprocess.run([sys.executable, "-m", "experiments.flows", "--config",
                        "configs/flows_joint_sprites.py:smoke", f"--config.workdir={tmp_path}",
                        "--config.eval.protocol=reference", "--config.eval.vp_pairs=12"],
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  res = json.load(open(tmp_path / "scores.json"))
  # the papers' protocols (lsx.directions.protocols): the flows set the image change the
  # linear rows are scaled to
  flows_change = res["rows"]["flows"]["members"][0]["ref_change"]
  for name in ("flows", "latent axes", "random"):
    m = res["rows"][name]["members"][0]
    assert 0.0 <= m["ref_vp"] <= 1.0 and set(m["manipulation"]) == set(res["factor_names"])
    if name != "flows":
      assert m["ref_change"] == pytest.approx(flows_change, rel=0.25), name
  assert res["mode"] == "joint" and res["factor_names"] == ["scale", "orientation", "x", "y"]
  rows = res["rows"]
  assert set(rows) == {"flows", "latent axes", "random"}
  for name in ("flows", "latent axes"):
    for key in ("disentanglement", "completeness", "direction_mig", "vp", "disentanglement_cc"):
      assert 0.0 <= rows[name]["members"][0][key] <= 1.0 + 1e-6, (name, key)
  for png in ("flows.png", "flows_losses.png", "scores.png"):
    assert (tmp_path / png).stat().st_size > 0
  assert "flows scored" in out.stdout and "steps/s" in out.stderr

  # the post-hoc objective probed from this run's flows: value and DFA per start
  out = subprocess.run([sys.executable, "-m", "experiments.probe_objective", "--config",
                        "configs/flows_joint_sprites.py:smoke", f"--config.workdir={tmp_path}",
                        "--steps=2", "--classifier_steps=2", "--eval_batches=1",
                        "--path_len=3", "--terms=all"], capture_output=True, text=True,
                       timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  probe = json.load(open(tmp_path / "probe_objective.json"))
  assert list(probe["rows"]) == ["joint flows", "post hoc from joint (all)",
                                 "post hoc from random (all)"]
  for name, r in probe["rows"].items():
    assert np.isfinite(r["objective"]) and 0.0 <= r["disentanglement"] <= 1.0, name
  # trained: the objective moved (2 Adam steps move each weight ~1e-3: the oracle's
  # readings, R, may not change at 4 decimals)
  assert probe["rows"]["joint flows"]["objective"] != probe["rows"]["post hoc from joint (all)"]["objective"]
  # scored in one stack with the other sets = scored alone by the experiment
  flows = rows["flows"]["members"][0]
  np.testing.assert_allclose(probe["rows"]["joint flows"]["R"], flows["R"], atol=2e-4)
  assert probe["rows"]["joint flows"]["disentanglement"] == pytest.approx(
      flows["disentanglement"], abs=1e-3)


def test_score_run_refuses_names_that_overwrite_a_reference():
  from types import SimpleNamespace
  from lsx.flows import family
  setup = SimpleNamespace(config=SimpleNamespace(eval=None, flows=SimpleNamespace(mode="posthoc")),
                          objective=SimpleNamespace(info={"flow": None, "decoder": SimpleNamespace(
                              model=None, params=None, dataset=None)}))
  with pytest.raises(ValueError, match="clash with the reference rows"):
    family.score_run(setup, {}, None, flow_sets={"random": {}})


def _analytic_flow(d, num):
  """u_k(z, t) = (w_k . z)(1 + 0.1 t^2) + q_k (s_k . z)^2 / 2: velocity, Hessian row sums
  and u_tt in closed form (numpy below)."""
  rng = np.random.default_rng(0)
  w, s = rng.normal(size=(num, d)) * 0.3, rng.normal(size=(num, d)) * 0.5
  q = rng.uniform(0.1, 0.4, size=num)
  params = {"w": jnp.asarray(w, jnp.float32), "s": jnp.asarray(s, jnp.float32),
            "q": jnp.asarray(q, jnp.float32), "log_c": jnp.log(jnp.asarray([0.7, 1.3, 1.1][:num]))}
  pot = lambda p, z, t, k: (p["w"][k] @ z) * (1 + 0.1 * t ** 2) + 0.5 * p["q"][k] * (p["s"][k] @ z) ** 2
  flow = flows.Flow(lambda rng: params, pot, num, d)
  return flow, params


def _reference_numpy(p, z0, k, t_star, steps, m):
  """The public code's wave loss (PDETraversal lib/WavePDE.py) for the analytic flow and
  G(z) = tanh(z M), written out in numpy (float64)."""
  w, s, q, c2 = p["w"][k], p["s"][k], p["q"][k], np.exp(p["log_c"][k]) ** 2
  vel = lambda z, t: w[None] * (1 + 0.1 * t ** 2) + q * (z @ s)[:, None] * s[None]
  ic = np.mean(vel(z0, 0.0) ** 2)
  z, pde, path = z0, 0.0, []
  for i in range(steps):
    u_tt = np.sum(0.2 * (z @ w))  # summed over the batch: t is one shared tensor
    rows = np.broadcast_to(c2 * q * s * s.sum(), z.shape)  # Hessian q s s^T times 1
    pde += np.mean((u_tt - rows) ** 2)
    path.append(z)
    z = z + vel(z, float(i))
  z_t = path[t_star]
  lat1 = z_t + vel(z_t, float(t_star))
  v1 = vel(lat1, t_star + 1.0)
  jvp = (1 - np.tanh(lat1 @ m) ** 2) * (v1 @ m)
  return ic + pde / steps - np.mean(jvp ** 2), lat1, lat1 + v1


@pytest.mark.parametrize("k,t_star", [(0, 0), (2, 1), (1, 2)])
def test_reference_wave_loss_equals_the_public_computation_in_numpy(k, t_star):
  d, num, steps = 4, 3, 4
  flow, params = _analytic_flow(d, num)
  m = np.random.default_rng(1).normal(size=(d, 5)) * 0.5
  image = lambda z: jnp.tanh(z @ jnp.asarray(m, jnp.float32))
  z0 = np.random.default_rng(2).normal(size=(6, d)) * 0.5
  loss, lat1, lat2, parts = flows.reference_wave_loss(flow, params, image, jnp.asarray(z0, jnp.float32),
                                                       k, t_star, steps)
  p64 = {n: np.asarray(v, np.float64) for n, v in params.items()}
  want, w1, w2 = _reference_numpy(p64, z0, k, t_star, steps, m)
  np.testing.assert_allclose(float(loss), want, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(lat1, w1, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(lat2, w2, rtol=1e-6, atol=1e-6)
  # the gradient flows back along the path (the public code never detaches it): jax's
  # gradient in q_k equals a central difference of the numpy loss, and differs from the
  # gradient with the path detached
  def jax_loss(qk, detach=False):
    p = {**params, "q": params["q"].at[k].set(qk)}
    if not detach:
      return flows.reference_wave_loss(flow, p, image, jnp.asarray(z0, jnp.float32), k, t_star, steps)[0]
    f2 = flow._replace(potential=lambda pp, z, t, kk: flow.potential(pp, jax.lax.stop_gradient(z), t, kk))
    return flows.reference_wave_loss(f2, p, image, jnp.asarray(z0, jnp.float32), k, t_star, steps)[0]
  g = float(jax.grad(jax_loss)(params["q"][k]))
  eps = 1e-5
  up, down = dict(p64), dict(p64)
  up["q"] = p64["q"].copy(); up["q"][k] += eps
  down["q"] = p64["q"].copy(); down["q"][k] -= eps
  fd = (_reference_numpy(up, z0, k, t_star, steps, m)[0] - _reference_numpy(down, z0, k, t_star, steps, m)[0]) / (2 * eps)
  np.testing.assert_allclose(g, fd, rtol=1e-4, atol=1e-5)
  if t_star > 0 or steps > 1:
    assert abs(float(jax.grad(lambda q: jax_loss(q, detach=True))(params["q"][k])) - g) > 1e-3 * abs(g)


def _tiny_reference_objective(**kw):
  """The reference objective of the analytic flow (d = 4, K = 3) on an 8 x 8 sigmoid
  decoder: (flow, params, decode, loss, full params, z0 [5, d])."""
  d, num = 4, 3
  flow, params = _analytic_flow(d, num)
  w = jax.random.normal(jax.random.key(0), (d, 8 * 8)) * 0.3
  decode = lambda z: jax.nn.sigmoid(z @ w).reshape(-1, 8, 8, 1)
  init_clf, loss = flows.make_flow_objective(flow, decode, (8, 8, 1), path_len=3,
                                             convention="reference", **kw)
  p = {"flow": params, "classifier": init_clf(jax.random.key(1))}
  return flow, params, decode, loss, p, jax.random.normal(jax.random.key(2), (5, d)) * 0.5


def test_reference_flow_objective_reflects_half_of_the_batches():
  num = 3
  flow, params, decode, loss, p, z0 = _tiny_reference_objective()
  hp = {"lambda_cls": jnp.float32(1.0), "lambda_pde": jnp.float32(1.0)}
  clf = flows.FrameClassifier(num)
  import optax
  flips = []
  for seed in range(12):
    rng = jax.random.key(seed)
    total, aux = jax.jit(loss)(p, z0, rng, hp)
    k_k, k_t, k_r = jax.random.split(rng, 3)
    k = int(jax.random.randint(k_k, (), 0, num))
    t = int(jax.random.randint(k_t, (), 0, 2))
    flip = bool(jax.random.bernoulli(k_r, 0.5))
    wave, lat1, lat2, _ = flows.reference_wave_loss(flow, params, decode, z0, k, t, 3)
    za, zb = (2 * z0 - lat2, 2 * z0 - lat1) if flip else (lat1, lat2)
    logits = clf.apply({"params": p["classifier"]}, decode(za), decode(zb))
    cls = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.full((5,), k)).mean()
    np.testing.assert_allclose(aux["cls"], cls, rtol=1e-5)
    np.testing.assert_allclose(total, cls + wave, rtol=1e-5)
    flips.append(flip)
  assert 0 < sum(flips) < len(flips)  # both the positive and the reflected pairs occur
  with pytest.raises(ValueError, match="convention"):
    flows.make_flow_objective(flow, decode, (8, 8, 1), convention="public")


def _np_gelu(x):
  from math import erf
  return 0.5 * x * (1 + np.vectorize(erf)(x / np.sqrt(2)))


def test_reference_potentials_equal_the_public_mlp_written_in_numpy():
  """The public MLP (PDETraversal lib/WavePDE.py `MLP`) from its formulas, float64: its own
  d-dim time branch (base 10,000, Linear -> exact GELU -> Linear) added after the first
  tanh, output bias, tanh output; the wave speed c learned directly."""
  d, num = 6, 3
  flow = flows.make_flow(d, num, net="reference", speed="direct")
  params = flow.init(jax.random.key(0))
  assert params["c"].tolist() == [1.0] * num and "log_c" not in params
  p = {k: np.asarray(v, np.float64) for k, v in params["net"].items()}
  z = np.random.default_rng(0).normal(size=d)
  half = d // 2
  for k, t in ((0, 0.0), (2, 3.0), (1, 1.5)):
    lin = lambda x, n: x @ p[f"{n}_w"][k] + p[f"{n}_b"][k]
    freqs = np.exp(-np.log(10000.0) * np.arange(half) / (half - 1))
    pe = np.concatenate([np.sin(t * freqs), np.cos(t * freqs)])
    h = np.tanh(lin(z, "x"))
    e = lin(_np_gelu(lin(pe, "time1")), "time2")
    want = np.tanh(lin(np.tanh(lin(h + e, "fusion")), "out"))[0]
    got = float(flow.potential(params, jnp.asarray(z, jnp.float32), t, k))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  # PyTorch's default init: weights and biases uniform within 1/sqrt(fan_in)
  assert np.abs(p["x_w"]).max() <= 1 / np.sqrt(d) and np.abs(p["x_b"]).max() > 0
  np.testing.assert_allclose(float(flow.speed({"c": jnp.asarray([0.5, -2.0, 3.0])}, 1)), -2.0)
  with pytest.raises(ValueError, match="even"):
    flows.make_flow(5, 2, net="reference")
  with pytest.raises(ValueError, match="potential net"):
    flows.make_flow(4, 2, net="public")


def _np_conv4s2(x, w, b):
  """Conv2d(kernel 4, stride 2, padding 1) by loops: x [N,H,W,C], w [4,4,C,O]."""
  n, h, wd, c = x.shape
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  out = np.zeros((n, h // 2, wd // 2, w.shape[-1]))
  for i in range(h // 2):
    for j in range(wd // 2):
      out[:, i, j] = np.einsum("nabc,abco->no", xp[:, 2 * i:2 * i + 4, 2 * j:2 * j + 4], w) + b
  return out


def test_conv_frame_classifier_equals_the_public_reconstructor_in_numpy():
  """ConvEncoder2 (PDETraversal models/vae.py) on the channel-stacked pair, its logits
  reparameterized: mean + eps exp(logvar / 2), written with loops in numpy."""
  clf = flows.FrameClassifier(5, 3, kind="conv")
  xa = jax.random.uniform(jax.random.key(0), (2, 8, 8, 1))
  xb = jax.random.uniform(jax.random.key(1), (2, 8, 8, 1))
  rng = jax.random.key(2)
  params = clf.init(jax.random.key(3), xa, xb, rng)["params"]
  got = np.asarray(clf.apply({"params": params}, xa, xb, rng))
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  x = np.concatenate([np.asarray(xa), np.asarray(xb)], -1).astype(np.float64)
  relu = lambda v: np.maximum(v, 0)
  x = relu(_np_conv4s2(x, p["conv0_kernel"], p["conv0_bias"]))
  x = relu(_np_conv4s2(x, p["conv1_kernel"], p["conv1_bias"]))  # [2, 2, 2, 6]
  # the valid conv with a kernel over the whole 2x2 map, then two 1x1 convs
  x = relu(np.einsum("nhwc,hwco->no", x, p["dense0_kernel"].reshape(2, 2, 6, 9)) + p["dense0_bias"])
  x = relu(x @ p["dense1_kernel"] + p["dense1_bias"])
  x = x @ p["dense2_kernel"] + p["dense2_bias"]
  mean = x @ p["means"]["kernel"] + p["means"]["bias"]
  log_var = x @ p["log_var"]["kernel"] + p["log_var"]["bias"]
  eps = np.asarray(jax.random.normal(rng, mean.shape), np.float64)
  np.testing.assert_allclose(got, mean + eps * np.exp(0.5 * log_var), rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match="rng"):
    clf.apply({"params": params}, xa, xb)


def test_reference_objective_logs_the_trajectory_and_lambda_jvp_scales_the_reward():
  num = 3
  flow, params, decode, loss, p, z0 = _tiny_reference_objective(classifier="conv",
                                                                classifier_width=2)
  hp = {"lambda_cls": jnp.float32(1.0), "lambda_pde": jnp.float32(1.0)}
  rng = jax.random.key(3)
  total, aux = loss(p, z0, rng, hp)
  total2, _ = loss(p, z0, rng, {**hp, "lambda_jvp": jnp.float32(3.0)})
  np.testing.assert_allclose(total - total2, 2.0 * aux["jvp"], rtol=1e-4)
  # the image change of the pair the classifier read: one flow step, recomputed here
  k_k, k_t, k_r = jax.random.split(rng, 3)
  k, t = int(jax.random.randint(k_k, (), 0, num)), int(jax.random.randint(k_t, (), 0, 2))
  _, lat1, lat2, parts = flows.reference_wave_loss(flow, params, decode, z0, k, t, 3)
  za, zb = (2 * z0 - lat2, 2 * z0 - lat1) if bool(jax.random.bernoulli(k_r, 0.5)) else (lat1, lat2)
  want = np.mean(np.linalg.norm((decode(zb) - decode(za)).reshape(5, -1), axis=1))
  np.testing.assert_allclose(aux["image_change"], want, rtol=1e-5)
  assert 0.0 <= float(aux["cls_acc"]) <= 1.0 and float(aux["speed"]) > 0
  # jvp_reduction 'sum' = the per-pixel mean times the pixel count
  s = flows.reference_wave_loss(flow, params, decode, z0, k, t, 3, "sum")[3]["jvp"]
  np.testing.assert_allclose(s, 64 * parts["jvp"], rtol=1e-5)


def test_lsx_potentials_are_initialized_with_each_potentials_own_fan_in():
  """'per_potential': each of the K stacked MLPs has LeCun-normal weights of its own
  fan-in (std 1/sqrt(d)); 'stacked' (lsx's former init) took all K as one fan-in, every
  layer 1/sqrt(K) smaller, so its velocity starts ~K^(3/2) x smaller."""
  d, num = 64, 16
  z = jax.random.normal(jax.random.key(1), (32, d))
  speeds = {}
  for init in flows.POTENTIAL_INITS:
    flow = flows.make_flow(d, num, init=init)
    p = flow.init(jax.random.key(0))
    std = float(jnp.std(p["net"]["w1"]))
    want = 1 / np.sqrt(d) if init == "per_potential" else 1 / np.sqrt(d * num)
    assert std == pytest.approx(want, rel=0.1), init
    v = jax.vmap(lambda zz: flows.velocity(flow.potential, p, zz, 0.0, 3))(z)
    speeds[init] = float(jnp.linalg.norm(v, axis=1).mean())
  assert speeds["per_potential"] > 10 * speeds["stacked"]
  with pytest.raises(ValueError, match="potential init"):
    flows.make_flow(d, num, init="torch")


def test_frame_probe_tells_distinct_flows_apart_and_identical_ones_not():
  from types import SimpleNamespace
  import ml_collections
  from lsx.flows import family
  d, num = 4, 3
  w = jax.random.normal(jax.random.key(0), (d, 8 * 8)) * 0.8
  decode = lambda z: jax.nn.sigmoid(z @ w).reshape(-1, 8, 8, 1)
  # u_k(z, t) = a_k . z: flow k moves every code by a_k, one step at a time
  pot = lambda p, z, t, k: p["a"][k] @ z
  flow = flows.Flow(None, pot, num, d)
  cfg = ml_collections.ConfigDict(dict(flows=dict(
      mode="posthoc", path_len=3, convention="reference", classifier="mlp",
      classifier_width=32)))
  setup = SimpleNamespace(
      config=cfg, objective=SimpleNamespace(info={"flow": flow,
                                                  "decoder": SimpleNamespace(generate=decode)}),
      sample=lambda rng, n: (jax.random.normal(rng, (n, d)) * 0.5, None))
  distinct = {"a": jnp.eye(d)[:num] * 0.6}
  same = {"a": jnp.tile(jnp.eye(d)[:1] * 0.6, (num, 1))}
  kw = dict(steps=150, lr=3e-3, batch_size=48, eval_batches=3)
  told = family.frame_probe(setup, distinct, labels="mixed", **kw)
  assert told["accuracy"] > 0.9 and told["chance"] == pytest.approx(1 / 3)
  alike = family.frame_probe(setup, same, labels="mixed", **kw)
  assert alike["accuracy"] < 0.55  # three labels of one motion: chance, 1/3
  one = family.frame_probe(setup, distinct, labels="batch", **kw)
  assert 0 <= one["accuracy"] <= 1 and one["labels"] == "batch"
  with pytest.raises(ValueError, match="labels must be one of"):
    family.frame_probe(setup, distinct, labels="per_sample")
  # small steps: lsx's MLP, which reads x_b - x_a, still tells them apart; the public conv
  # classifier on the channel-stacked pair reads large steps and not small ones
  small = {"a": jnp.eye(d)[:num] * 0.1}
  assert family.frame_probe(setup, small, **kw)["accuracy"] > 0.9
  assert family.frame_probe(setup, distinct, classifier="conv", **kw)["accuracy"] > 0.9
  assert family.frame_probe(setup, small, classifier="conv", **kw)["accuracy"] < 0.6


def test_mixed_classifier_labels_give_each_sample_its_own_potential_and_pair():
  import optax
  num = 3
  flow, params, decode, loss_b, p, z0 = _tiny_reference_objective()
  init_clf, loss = flows.make_flow_objective(flow, decode, (8, 8, 1), path_len=3,
                                             convention="reference", classifier_labels="mixed")
  hp = {"lambda_cls": jnp.float32(1.0), "lambda_pde": jnp.float32(1.0)}
  clf = flows.FrameClassifier(num)
  rng = jax.random.key(3)
  total, aux = jax.jit(loss)(p, z0, rng, hp)
  # the wave terms are the batch's (the same k and t* as with 'batch' labels) ...
  total_b, aux_b = jax.jit(loss_b)(p, z0, rng, hp)
  np.testing.assert_allclose(aux["pde"], aux_b["pde"], rtol=1e-6)
  np.testing.assert_allclose(total - aux["cls"], total_b - aux_b["cls"], rtol=1e-5, atol=1e-6)
  # ... and the classifier's pairs come from each sample's own potential, time and coin
  k_k, k_t, k_r = jax.random.split(jax.random.fold_in(rng, 2), 3)
  ks = np.asarray(jax.random.randint(k_k, (5,), 0, num))
  ts = np.asarray(jax.random.randint(k_t, (5,), 0, 2))
  flip = np.asarray(jax.random.bernoulli(k_r, 0.5, (5, 1)))[:, 0]
  za, zb = [], []
  for i in range(5):
    z, path = z0[i], [z0[i]]
    for j in range(3):  # z_{j+1} = z_j + grad u_k(z_j, j), written out
      z = z + jax.grad(flow.potential, argnums=1)(params, z, jnp.float32(j), int(ks[i]))
      path.append(z)
    a, b = path[ts[i] + 1], path[ts[i] + 2]
    za.append(2 * z0[i] - b if flip[i] else a)
    zb.append(2 * z0[i] - a if flip[i] else b)
  logits = clf.apply({"params": p["classifier"]}, decode(jnp.stack(za)), decode(jnp.stack(zb)))
  want = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray(ks)).mean()
  np.testing.assert_allclose(aux["cls"], want, rtol=1e-5)
  assert len(set(ks.tolist())) > 1  # the labels of one batch differ
  with pytest.raises(ValueError, match="classifier_labels must be one of"):
    flows.make_flow_objective(flow, decode, (8, 8, 1), convention="reference",
                              classifier_labels="each")
  with pytest.raises(ValueError, match="labels every sample with its own potential"):
    flows.make_flow_objective(flow, decode, (8, 8, 1), classifier_labels="batch")
