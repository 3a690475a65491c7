"""Sparse autoencoders (lsx.sae): bottlenecks against hand-computed cases, AuxK, matching
pursuit against brute force, the streamed array source, and the family on the runner
(a sweep member equals its run alone, reading the same batches; exact resume)."""
import itertools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common
from lsx import sae as ls
from lsx import train as lt

QUIET = lambda s: None


def test_relu_and_topk_forward_and_gradient():
  pre = jnp.array([[3.0, -1.0, 2.0, 5.0], [0.5, 4.0, -2.0, 1.0]])
  mask = jnp.ones(4, bool)
  f = ls.topk_codes(pre, 2, 3, mask)  # k = 2 of a static bound 3
  np.testing.assert_array_equal(f, [[3, 0, 0, 5], [0, 4, 0, 1]])
  g = jax.grad(lambda p: jnp.sum(ls.topk_codes(p, 2, 3, mask) * jnp.arange(1.0, 5.0)))(pre)
  np.testing.assert_array_equal(g, [[1, 0, 0, 4], [0, 2, 0, 4]])  # only the kept entries
  # a masked latent (past the member's width) is never selected
  f = ls.topk_codes(pre, 2, 2, jnp.array([True, True, True, False]))
  np.testing.assert_array_equal(f, [[3, 0, 2, 0], [0.5, 4, 0, 0]])
  np.testing.assert_array_equal(ls.encode(ls.SAE(4, 4, "relu"), {
      "W_enc": jnp.eye(4), "b_enc": jnp.zeros(4), "b_dec": jnp.zeros(4)}, pre, {}),
      jax.nn.relu(pre))


def test_batchtopk_keeps_the_k_times_n_largest_of_the_batch():
  pre = jnp.array([[3.0, -1.0, 2.0, 5.0], [0.5, 4.0, -2.0, 1.0]])
  f, kth = ls.batchtopk_codes(pre, 1, 2, jnp.ones(4, bool))  # 1 x 2 rows = the 2 largest
  np.testing.assert_array_equal(f, [[0, 0, 0, 5], [0, 4, 0, 0]])
  assert float(kth) == 4.0
  f, _ = ls.batchtopk_codes(pre, 2, 2, jnp.ones(4, bool))  # 4 largest: 5, 4, 3, 2
  np.testing.assert_array_equal(f, [[3, 0, 2, 5], [0, 4, 0, 0]])


def test_jumprelu_and_step_pseudo_derivatives():
  eps = 0.001
  z = jnp.array([[0.5, 0.0013, 0.0004], [0.0011, 0.0, 0.2]])
  theta = jnp.array([0.001, 0.001, 0.001])
  np.testing.assert_allclose(ls.jumprelu(z, theta, eps), [[0.5, 0.0013, 0], [0.0011, 0, 0.2]])
  # d/dz: H(z - theta); d/dtheta: -(theta/eps) K((z - theta)/eps), K = 1 on (-1/2, 1/2)
  gz, gt = jax.grad(lambda a, t: jnp.sum(ls.jumprelu(a, t, eps)), argnums=(0, 1))(z, theta)
  np.testing.assert_array_equal(gz, [[1, 1, 0], [1, 0, 1]])
  # (z - theta)/eps: column 0 -> 499, 0.1 (K=1); column 1 -> 0.3 (K=1), -1; column 2 -> -0.6, 199
  np.testing.assert_allclose(gt, [-1.0, -1.0, 0.0], rtol=1e-5)
  gz, gt = jax.grad(lambda a, t: jnp.sum(ls.step_fn(a, t, eps)), argnums=(0, 1))(z, theta)
  np.testing.assert_array_equal(gz, np.zeros((2, 3)))
  np.testing.assert_allclose(gt, [-1000.0, -1000.0, 0.0], rtol=1e-5)


def test_jump_gradient_to_the_pre_activations_anthropic_2025():
  # jump_grad='pre': the kernel terms reach z as well, with the opposite sign of theta's:
  # d(z H(z - theta))/dz = H + (theta/eps) K, dH(z - theta)/dz = (1/eps) K
  eps = 0.5
  z = jnp.array([[1.1, 0.9, 3.0], [0.5, 1.3, -2.0]])
  theta = jnp.array([1.0, 1.0, 1.0])
  # (z - theta)/eps: [[0.2, -0.2, 4], [-1, 0.6, -6]] -> K = [[1, 1, 0], [0, 0, 0]]
  gz, gt = jax.grad(lambda a, t: jnp.sum(ls.jumprelu(a, t, eps, True)), argnums=(0, 1))(z, theta)
  np.testing.assert_allclose(gz, [[1 + 2.0, 0 + 2.0, 1], [0, 1, 0]])
  np.testing.assert_allclose(gt, [-2.0, -2.0, 0.0])  # -(theta/eps) K summed over rows
  gz, gt = jax.grad(lambda a, t: jnp.sum(ls.step_fn(a, t, eps, True)), argnums=(0, 1))(z, theta)
  np.testing.assert_allclose(gz, [[2.0, 2.0, 0], [0, 0, 0]])
  np.testing.assert_allclose(gt, [-2.0, -2.0, 0.0])
  # the paper's form (default) leaves z out of the kernel terms
  gz, _ = jax.grad(lambda a, t: jnp.sum(ls.step_fn(a, t, eps)), argnums=(0, 1))(z, theta)
  np.testing.assert_array_equal(gz, np.zeros((2, 3)))


def test_jumprelu_tanh_penalty_init_rate_and_auxk():
  # sparsity='tanh': l0_coeff * mean_n sum_i tanh(c f_ni ||W_dec,i||), against numpy;
  # init_rate: b_enc makes each latent fire on that share of the median sample at init;
  # aux_coeff > 0 adds AuxK on dead latents (0 while none is dead)
  rng = np.random.default_rng(0)
  d, m, n = 6, 16, 512
  x = jnp.asarray(rng.normal(size=(n, d)), jnp.float32)
  sae = ls.SAE(dim=d, max_width=m, bottleneck="jumprelu", k_max=2, bandwidth=0.5,
               threshold_init=0.2, sparsity="tanh", init_rate=0.25, aux_k=4, dead_tokens=1)
  obj = ls.make_objective(sae, lambda r, k: (x[:k], None), median_samples=n)
  p = obj.init(jax.random.key(0))
  fires = np.mean(np.asarray(ls.encode(sae, p, x, {"width": float(m)})) > 0, 0)
  np.testing.assert_allclose(fires, 0.25, atol=2.0 / n)
  hp = {**obj.hp_defaults, "l0_coeff": 0.7, "tanh_scale": 3.0, "aux_coeff": 0.0}
  _, aux = obj.loss(p, x, None, hp)
  f = np.asarray(ls.encode(sae, p, x, hp), np.float64)
  norms = np.linalg.norm(np.asarray(p["W_dec"], np.float64), axis=-1)
  np.testing.assert_allclose(aux["sparsity"], np.mean(np.sum(np.tanh(3.0 * f * norms), -1)),
                             rtol=1e-5)
  assert float(aux["aux_loss"]) == 0.0  # nothing dead yet
  p["stats"]["since_fired"] = jnp.where(jnp.arange(m) < 4, 5.0, 0.0)
  l0_, a0 = obj.loss(p, x, None, hp)
  l1_, a1 = obj.loss(p, x, None, {**hp, "aux_coeff": 0.5})
  assert float(a1["aux_loss"]) > 0 and float(a1["dead"]) == 4 / m
  np.testing.assert_allclose(l1_ - l0_, 0.5 * a1["aux_loss"], rtol=1e-5)
  for bad, msg in (({"jump_grad": "both"}, "jump_grad"), ({"sparsity": "l1"}, "sparsity"),
                   ({"init_rate": 1.0}, "init_rate")):
    with pytest.raises(ValueError, match=msg):
      ls.model.check(sae._replace(**bad))


def test_jumprelu_threshold_gradient_of_the_whole_loss_is_the_papers_estimate():
  """d loss / d log_threshold of the JumpReLU objective, its reconstruction and L0 terms
  apart, against the paper's kernel-density estimates (Rajamanoharan et al. 2024, eqs. 11
  and 12) written out in numpy with loops: for latent i,
    d MSE / d theta_i = (1/N) sum_n -(theta_i / eps) K((z_ni - theta_i) / eps) dL_n/df_ni,
      dL_n/df_ni = -2 (x_n - xhat_n) . W_dec[i]      (L_n = ||x_n - xhat_n||^2)
    d L0 / d theta_i  = -(1/(N eps)) sum_n K((z_ni - theta_i) / eps)
  with K the rectangle kernel on (-1/2, 1/2); the log parameterization multiplies by
  theta_i. The L0 estimate is also the finite difference of the rectangle-smoothed
  step H_eps(u) = clip(u/eps + 1/2, 0, 1), a check independent of the formula."""
  rng = np.random.default_rng(3)
  d, m, n, eps = 5, 7, 400, 0.05
  x = jnp.asarray(rng.normal(size=(n, d)) * 0.5, jnp.float32)
  sae = ls.SAE(dim=d, max_width=m, bottleneck="jumprelu", k_max=2, bandwidth=eps,
               threshold_init=0.1)
  obj = ls.make_objective(sae, lambda r, k: (x[:k], None), median_samples=n)
  p = obj.init(jax.random.key(0))
  p["log_threshold"] = jnp.log(jnp.asarray(rng.uniform(0.05, 0.4, size=m), jnp.float32))
  hp = lambda c: {**obj.hp_defaults, "k": 2.0, "width": float(m), "l0_coeff": c,
                  "l0_warmup": 0.0, "preact_coeff": 0.0}
  grad = lambda c: np.asarray(jax.grad(lambda lt: obj.loss({**p, "log_threshold": lt}, x,
                                                           None, hp(c))[0])(p["log_threshold"]),
                              np.float64)
  g_rec, g_total = grad(0.0), grad(1.0)
  g_l0 = g_total - g_rec
  P = {k: np.asarray(v, np.float64) for k, v in p.items() if k != "stats"}
  xs = np.asarray(x, np.float64)
  theta = np.exp(P["log_threshold"])
  z = (xs - P["b_dec"]) @ P["W_enc"] + P["b_enc"]
  f = z * (z > theta)
  xhat = f @ P["W_dec"] + P["b_dec"]
  kern = lambda u: float(abs(u) < 0.5)
  want_rec, want_l0 = np.zeros(m), np.zeros(m)
  for i in range(m):
    for j in range(n):
      k = kern((z[j, i] - theta[i]) / eps)
      dl_df = -2.0 * (xs[j] - xhat[j]) @ P["W_dec"][i]
      want_rec[i] += -(theta[i] / eps) * k * dl_df / n
      want_l0[i] += -k / (n * eps)
  assert np.count_nonzero(want_rec) >= m - 1  # the kernel sees samples at most thresholds
  np.testing.assert_allclose(g_rec, theta * want_rec, rtol=2e-3, atol=1e-6)
  np.testing.assert_allclose(g_l0, theta * want_l0, rtol=2e-3, atol=1e-6)
  # the L0 estimate is the exact derivative of the rectangle-smoothed step
  smooth = lambda t: np.mean(np.sum(np.clip((z - t) / eps + 0.5, 0.0, 1.0), -1))
  h = 1e-7
  fd = np.array([(smooth(theta + h * np.eye(m)[i]) - smooth(theta - h * np.eye(m)[i])) / (2 * h)
                 for i in range(m)])
  np.testing.assert_allclose(want_l0, fd, rtol=1e-4, atol=1e-6)


def test_topk_gathered_path_equals_the_dense_form(monkeypatch):
  # k of m latents few enough (64 k <= m): the loss gathers the selected encoder and
  # decoder rows; loss, aux values and every gradient equal the dense form's, with AuxK
  # active (a third of the latents dead) and a member narrower than max_width
  d, m, n = 16, 1024, 64
  x = jax.random.normal(jax.random.key(0), (n, d))
  sae = ls.SAE(dim=d, max_width=m, bottleneck="topk", k_max=8, aux_k=8, dead_tokens=1)
  obj = ls.make_objective(sae, lambda r, k: (x[:k], None), median_samples=64)
  p = obj.init(jax.random.key(1))
  p["stats"]["since_fired"] = jnp.where(jnp.arange(m) % 3 == 0, 10.0, 0.0)
  hp = {"k": jnp.float32(6), "width": jnp.float32(900), "aux_coeff": jnp.float32(1 / 32)}
  run = lambda: jax.value_and_grad(obj.loss, has_aux=True)(p, x, None, hp)
  assert ls.model.gathers(8, m)
  (l_sparse, a_sparse), g_sparse = run()
  monkeypatch.setattr(ls.model, "gathers", lambda k, m: False)
  (l_dense, a_dense), g_dense = run()
  np.testing.assert_allclose(l_sparse, l_dense, rtol=1e-6)
  assert float(a_sparse["aux_loss"]) > 0
  for key in ("mse", "l0", "aux_loss", "dead"):
    np.testing.assert_allclose(a_sparse[key], a_dense[key], rtol=1e-6)
  np.testing.assert_array_equal(a_sparse["_post"]["fired"], a_dense["_post"]["fired"])
  for key in ("W_enc", "b_enc", "W_dec", "b_dec"):
    np.testing.assert_allclose(g_sparse[key], g_dense[key], atol=2e-6)


def test_jumprelu_warmup_and_preact_loss_against_numpy():
  # l0_coeff ramps as min(1, (step + 1) / l0_warmup); the pre-act loss is
  # mean_n sum_i ReLU(theta_i - pre_ni) ||W_dec,i||, its gradient -||W_dec,i|| / n on
  # each pre-activation below its threshold
  rng = np.random.default_rng(0)
  d, m, n = 4, 6, 5
  x = jnp.asarray(rng.normal(size=(n, d)), jnp.float32)
  sae = ls.SAE(dim=d, max_width=m, bottleneck="jumprelu", k_max=2, threshold_init=0.3)
  obj = ls.make_objective(sae, lambda r, k: (x[:k], None), median_samples=n)
  p = obj.init(jax.random.key(0))
  p["W_dec"] = p["W_dec"] * jnp.arange(1.0, m + 1)[:, None]  # rows of norm 1..m
  p["stats"]["step"] = jnp.float32(24)
  hp = {**obj.hp_defaults, "k": 2.0, "width": float(m), "l0_coeff": 0.5, "l0_warmup": 100.0,
        "preact_coeff": 0.0}
  _, aux = obj.loss(p, x, None, hp)
  np.testing.assert_allclose(aux["l0_coeff"], 0.5 * 25 / 100, rtol=1e-6)
  pre = (np.asarray(x) - np.asarray(p["b_dec"])) @ np.asarray(p["W_enc"]) + np.asarray(p["b_enc"])
  norms = np.arange(1.0, m + 1)
  want = np.mean(np.sum(np.maximum(0.3 - pre, 0) * norms, -1))
  np.testing.assert_allclose(aux["preact"], want, rtol=1e-5)
  base = lambda c: jax.grad(lambda b: obj.loss({**p, "b_enc": b}, x, None, {**hp, "preact_coeff": c})[0])(p["b_enc"])
  np.testing.assert_allclose(base(2.0) - base(0.0), 2.0 * -np.mean((pre < 0.3) * norms, 0), atol=1e-5)


def test_matching_pursuit_selects_what_a_brute_force_greedy_search_selects():
  rng = np.random.default_rng(0)
  w = rng.normal(size=(12, 5))
  w /= np.linalg.norm(w, axis=1, keepdims=True)
  x = rng.normal(size=(6, 5))
  params = {"W_dec": jnp.asarray(w, jnp.float32), "b_dec": jnp.zeros(5)}
  f = np.asarray(ls.mp_codes(params, jnp.asarray(x, jnp.float32), 3, 4, jnp.ones(12, bool)))
  for i in range(6):  # brute force: at each step the atom (and c >= 0) leaving the least residual
    r, want = x[i].copy(), np.zeros(12)
    for _ in range(3):
      best = min(itertools.product(range(12)), key=lambda j: np.sum(
          (r - max(r @ w[j[0]], 0) * w[j[0]]) ** 2))[0]
      c = max(r @ w[best], 0.0)
      want[best] += c
      r = r - c * w[best]
    np.testing.assert_allclose(f[i], want, atol=1e-5)


def test_auxk_revives_dead_latents():
  # 16 latents start with encoders 100x too small: positive but almost never in the top
  # k, so the main loss gives them (almost) no gradient. AuxK trains them on the residual:
  # 14 of 16 fire after 300 steps, against 1 of 16 without it.
  src = ls.ToySuperposition(num_features=32, dim=16, active=3.0, feature_seed=1)
  sae = ls.SAE(dim=16, max_width=32, bottleneck="topk", k_max=3, aux_k=8, dead_tokens=64)
  obj = ls.make_objective(sae, src.sample, median_samples=256)
  import optax
  tx = optax.adam(3e-3)

  def run(aux_coeff, steps=300):
    p = obj.init(jax.random.key(0))
    p["W_enc"] = p["W_enc"].at[:, 16:].multiply(0.01)
    hp = {"k": 3.0, "width": 32.0, "aux_coeff": aux_coeff}
    opt = tx.init(p)

    @jax.jit
    def step(p, opt, t):
      x, _ = src.sample_at(t, 256)
      (_, aux), g = jax.value_and_grad(obj.loss, has_aux=True)(p, x, None, hp)
      upd, opt = tx.update(g, opt)
      return obj.post_update(optax.apply_updates(p, upd), aux["_post"], hp), opt
    for t in range(steps):
      p, opt = step(p, opt, t)
    x, _ = src.sample(jax.random.key(9), 2048)
    fired = np.asarray(jnp.any(ls.encode(sae, p, x, hp) > 0, 0))
    return fired[16:].mean()

  without, with_aux = run(0.0), run(1.0 / 32)
  assert without <= 0.125 and with_aux >= 0.5


def _sae_config(wd, **kw):
  from conftest import set_fields
  return set_fields(common.load("configs/sae_toy.py:smoke"), workdir=wd, **kw)


@pytest.mark.parametrize("strategy", ["vmap", "map"])
def test_sweep_members_read_one_batch_and_equal_their_runs_alone(strategy, tmp_path):
  sweep = {"sweep.seed": (0, 1), "sweep.hp": {"k": (2.0, 3.0), "width": (32.0, 24.0)},
           "sweep.mode": "zip", "sweep_strategy": strategy}
  whole, _ = lt.train(_sae_config(str(tmp_path / "w"), **sweep), print_fn=QUIET)
  # member 1: seed 1, k 3, width 24 (the last 8 latents masked) equals the run alone
  alone, _ = lt.train(_sae_config(str(tmp_path / "a"), **{"seed": 1, "hp.k": 3.0,
                                                          "hp.width": 24.0}),
                      print_fn=QUIET, write_figures=False)
  from conftest import assert_trees_equal
  assert_trees_equal(jax.tree.map(lambda y: y[1], whole.params), alone.params, rtol=2e-5,
                     atol=1e-6)
  rows = open(tmp_path / "w" / "sweep.csv").read()
  assert "fvu" in rows and "recovered" in rows and "l0" in rows
  assert os.path.exists(tmp_path / "w" / "sae_frontier.png")


def test_array_shards_visit_every_row_once_per_epoch_and_refuse_a_wrong_width(tmp_path):
  rng = np.random.default_rng(0)
  parts = [rng.normal(size=(n, 6)).astype(np.float32) for n in (7, 11, 5)]
  for i, p in enumerate(parts):
    np.save(tmp_path / f"act_{i}.npy", p)
  src = ls.ArrayShards(str(tmp_path / "act_*.npy"), seed=3)
  allrows = np.concatenate(parts)
  assert src.rows == 23 and src.dim == 6
  n = 4  # 23 rows: epoch 0 ends inside step 5's batch
  idx = np.concatenate([src.indices(t, n) for t in range(23)])  # 92 = 4 epochs
  for e in range(4):
    assert sorted(idx[e * 23:(e + 1) * 23]) == list(range(23))
  assert not np.array_equal(idx[:23], idx[23:46])  # each epoch shuffled anew
  np.testing.assert_array_equal(src.read(idx[:9]), allrows[idx[:9]])
  x, _ = jax.jit(lambda t: src.sample_at(t, n))(jnp.int32(5))  # through the host callback
  np.testing.assert_array_equal(np.asarray(x), allrows[src.indices(5, n)])
  np.save(tmp_path / "act_9.npy", rng.normal(size=(3, 5)).astype(np.float32))
  with pytest.raises(ValueError, match=r"act_9\.npy has width 5 but .*act_0\.npy has 6"):
    ls.ArrayShards(str(tmp_path / "act_*.npy"))
  with pytest.raises(FileNotFoundError, match="no activation shards match"):
    ls.ArrayShards(str(tmp_path / "nothing_*.npy"))


def test_an_sae_trains_on_array_shards_and_on_a_model_layer(tmp_path):
  from conftest import tiny_config
  rng = np.random.default_rng(1)
  for i in range(2):
    np.save(tmp_path / f"a{i}.npy", rng.normal(size=(50, 8)).astype(np.float32))
  c = _sae_config(str(tmp_path / "arr"), **{"source": {"kind": "arrays",
                                                        "paths": str(tmp_path / "a*.npy"),
                                                        "data_seed": 0}})
  state, setup = lt.train(c, print_fn=QUIET)
  assert setup.model.dim == 8 and int(state.step) == 4
  # a layer of a trained autoencoder, with the disentanglement metrics of the codes
  vae = str(tmp_path / "vae")
  lt.train(tiny_config(**{"train.steps": 2, "train.ckpt_every": 2}), vae, print_fn=QUIET,
           write_figures=False)
  c = _sae_config(str(tmp_path / "m"), **{"source": {"kind": "model", "workdir": vae,
                                                      "layer": "Dense_1", "data_seed": 0},
                                           "eval.disentanglement": True})
  lt.train(c, print_fn=QUIET)
  import json
  out = json.load(open(tmp_path / "m" / "metrics.json"))
  assert {"l0", "fvu", "dead", "dense"} <= set(out) and ("infom" in out or
                                                         "disentanglement_error" in out)
  with pytest.raises(ValueError, match="no submodule 'Dense_9'"):
    lt.build(_sae_config(str(tmp_path / "x"), **{"source": {"kind": "model", "workdir": vae,
                                                             "layer": "Dense_9"}}))


def test_normalized_source_has_unit_mean_square_per_dimension_and_keeps_its_features():
  """source.normalize: one constant c with E||c x||^2 = dim (the JumpReLU paper's input
  scaling); the features, the extras and the batches' order are the source's."""
  import ml_collections
  spec = ml_collections.ConfigDict(dict(kind="toy", num_features=32, dim=8, active=2.0,
                                        decay=0.0, feature_seed=1, data_seed=0,
                                        normalize=True))
  src = ls.make_source(spec)
  raw = ls.make_source(ml_collections.ConfigDict({**spec.to_dict(), "normalize": False}))
  x = np.asarray(src.sample(jax.random.key(5), 20000)[0], np.float64)
  assert abs(np.mean(np.sum(x * x, -1)) / 8 - 1.0) < 0.03
  c = src.scale
  assert c == pytest.approx(np.sqrt(8 / np.mean(np.sum(np.asarray(
      raw.sample(jax.random.key(0), 4096)[0], np.float64) ** 2, -1))), rel=1e-6)
  xa, sa = src.sample_at(3, 16)
  xb, sb = raw.sample_at(3, 16)
  np.testing.assert_allclose(xa, c * np.asarray(xb), rtol=1e-5)
  np.testing.assert_array_equal(sa, sb)
  np.testing.assert_array_equal(src.true_features, raw.true_features)
  assert src.dim == 8
  with pytest.raises(ValueError, match="scale must be a finite number > 0"):
    ls.sources.Scaled(raw, float("nan"))
