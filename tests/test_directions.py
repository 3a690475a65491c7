"""Direction discovery: losses against loop references, closed forms against numpy, the
orthogonal parameterizations, and recovery of known directions of a linear generator."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lsx.objective import Objective

from lsx import directions as ld
from lsx.train import make_optimizer, make_train_step
from lsx.train.state import TrainState


def _unit_features(seed, k=3, n=4, dim=5):
  f = np.random.default_rng(seed).normal(size=(k, n, dim))
  return f / np.linalg.norm(f, axis=-1, keepdims=True)


def _latentclr_reference(f, tau):
  k, n = f.shape[:2]
  total = 0.0
  for a, i in itertools.product(range(k), range(n)):
    e = lambda b, j: np.exp(abs(float(f[a, i] @ f[b, j])) / tau)
    pos = np.mean([e(a, j) for j in range(n) if j != i])
    neg = np.mean([e(b, j) for b in range(k) if b != a for j in range(n)])
    total += -np.log(pos / neg)
  return total / (k * n)


def _noiseclr_reference(f, tau):
  k, n = f.shape[:2]
  total = 0.0
  for a, i in itertools.product(range(k), range(n)):
    e = lambda b, j: np.exp(float(f[a, i] @ f[b, j]) / tau)
    pos = np.mean([e(a, j) for j in range(n) if j != i])
    neg = np.mean([e(b, i) for b in range(k) if b != a])
    total += -np.log(pos / neg)
  return total / (k * n)


@pytest.mark.parametrize("seed,tau", [(0, 0.5), (1, 0.1), (2, 1.0)])
def test_contrastive_losses_match_loop_reference(seed, tau):
  f = _unit_features(seed)
  np.testing.assert_allclose(float(ld.latentclr_loss(jnp.asarray(f), tau)),
                             _latentclr_reference(f, tau), rtol=1e-5)
  np.testing.assert_allclose(float(ld.noiseclr_loss(jnp.asarray(f), tau)),
                             _noiseclr_reference(f, tau), rtol=1e-5)


def test_contrastive_loss_needs_two_directions_and_samples():
  with pytest.raises(ValueError, match="K=1"):
    ld.latentclr_loss(jnp.ones((1, 4, 3)), 0.5)


def test_contrastive_features_are_normalized_feature_differences():
  dirs = ld.make_directions("global", 3, 4)
  params = dirs.init(jax.random.key(0))
  a = jax.random.normal(jax.random.key(1), (4, 6))
  feat = lambda z: jnp.tanh(z @ a)
  z = jax.random.normal(jax.random.key(2), (5, 4))
  f = ld.contrastive_features(feat, dirs, params, z, 0.3)
  for k, n in itertools.product(range(3), range(5)):
    u = params["d"][k] / jnp.linalg.norm(params["d"][k])
    diff = feat((z[n] + 0.3 * u)[None])[0] - feat(z[n][None])[0]
    np.testing.assert_allclose(f[k, n], diff / jnp.linalg.norm(diff), atol=1e-5)


def test_voynov_terms_match_loop_reference():
  dirs = ld.make_directions("global", 3, 4)
  a = jax.random.normal(jax.random.key(3), (4, 8 * 8))
  generate = lambda z: jax.nn.sigmoid(z @ a).reshape(-1, 8, 8, 1)
  init, loss = ld.make_voynov_objective(dirs, generate, (8, 8, 1), width=4)
  params = jax.jit(init)(jax.random.key(0))
  z = jax.random.normal(jax.random.key(1), (6, 4))
  k = jnp.array([0, 1, 2, 0, 1, 2])
  eps = jnp.array([0.5, -1.0, 2.0, -3.0, 5.5, -0.7])
  hp = {"shift_weight": 0.25}
  value, aux = jax.jit(loss.terms)(params, z, k, eps, hp)
  u = params["directions"]["d"][k] / jnp.linalg.norm(params["directions"]["d"][k], axis=1,
                                                      keepdims=True)
  logits, e_hat = jax.jit(loss.reconstructor.apply)(
      {"params": params["reconstructor"]}, generate(z), generate(z + eps[:, None] * u))
  ce, err = [], []
  for i in range(6):  # the loss, one sample at a time
    lg = np.asarray(logits[i], np.float64)
    ce.append(-(lg[int(k[i])] - np.log(np.sum(np.exp(lg)))))
    err.append(abs(float(e_hat[i]) - float(eps[i])))
  np.testing.assert_allclose(float(value), np.mean(ce) + 0.25 * np.mean(err), rtol=1e-5)
  np.testing.assert_allclose(float(aux["ce"]), np.mean(ce), rtol=1e-5)


def test_voynov_shift_sampling():
  k, eps = ld.sample_shifts(jax.random.key(0), 4000, 5, 0.5, 6.0)
  assert set(np.unique(np.asarray(k))) == set(range(5))
  e = np.abs(np.asarray(eps))
  assert e.min() >= 0.5 and e.max() <= 6.0
  assert 0.45 < np.mean(np.asarray(eps) > 0) < 0.55


def test_pca_and_sefa_match_numpy():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6))
  u, var = ld.pca_directions(jnp.asarray(z), 3)
  _, s, vt = np.linalg.svd(z - z.mean(0), full_matrices=False)
  np.testing.assert_allclose(np.abs(np.sum(np.asarray(u) * vt[:3], 1)), 1.0, atol=1e-4)
  np.testing.assert_allclose(var, s[:3] ** 2 / 499, rtol=1e-4)
  w = rng.normal(size=(6, 20))
  u, ev = ld.sefa_directions(jnp.asarray(w), 4)
  wn = w / np.linalg.norm(w, axis=0, keepdims=True)
  lam, vec = np.linalg.eigh(wn @ wn.T)
  np.testing.assert_allclose(ev, lam[::-1][:4], rtol=1e-4)
  np.testing.assert_allclose(np.abs(np.sum(np.asarray(u) * vec[:, ::-1][:, :4].T, 1)), 1.0,
                             atol=1e-4)


def test_ganspace_of_identity_features_is_pca():
  z = jnp.asarray(np.random.default_rng(1).normal(size=(400, 5)) * [3.0, 2.0, 1.5, 1.0, 0.5])
  u1, _ = ld.ganspace_directions(lambda x: x, z, 3)
  u2, _ = ld.pca_directions(z, 3)
  np.testing.assert_allclose(np.abs(np.sum(np.asarray(u1) * np.asarray(u2), 1)), 1.0, atol=1e-4)


def test_jacobian_svd_matches_svd_of_jacfwd():
  a = jax.random.normal(jax.random.key(0), (5, 12))
  b = jax.random.normal(jax.random.key(1), (12, 30)) / 3
  g = lambda z: jnp.tanh(jnp.tanh(z @ a) @ b)
  z = jax.random.normal(jax.random.key(2), (5,))
  u, sig = ld.jacobian_svd(g, z, 3, iters=300)
  _, s, vt = np.linalg.svd(np.asarray(jax.jacfwd(g)(z)))
  np.testing.assert_allclose(sig, s[:3], rtol=1e-3)
  np.testing.assert_allclose(np.abs(np.sum(np.asarray(u) * vt[:3], 1)), 1.0, atol=1e-3)
  # a batch of anchors: eigenvectors of the mean J^T J
  zs = jax.random.normal(jax.random.key(3), (4, 5))
  u, sig = ld.jacobian_svd(g, zs, 2, iters=300)
  gram = np.mean([np.asarray(jax.jacfwd(g)(zz)).T @ np.asarray(jax.jacfwd(g)(zz)) for zz in zs], 0)
  lam, vec = np.linalg.eigh(gram)
  np.testing.assert_allclose(sig ** 2, lam[::-1][:2], rtol=1e-3)
  np.testing.assert_allclose(np.abs(np.sum(np.asarray(u) * vec[:, ::-1][:, :2].T, 1)), 1.0,
                             atol=1e-3)


@pytest.mark.parametrize("kind", ["householder", "expm"])
def test_orthogonal_parameterizations_stay_orthogonal_in_training(kind):
  d = 6
  dirs = ld.make_directions(kind, 4, d)
  a = jax.random.normal(jax.random.key(0), (d, 16))
  init, loss = ld.make_contrastive_objective(dirs, lambda z: jnp.tanh(z @ a), "latentclr")
  opt = make_optimizer("adamw")
  step = jax.jit(make_train_step(Objective("latentclr", init, loss), opt))
  state = TrainState.create(init(jax.random.key(1)), opt, jax.random.key(2))
  hp = {"lr": jnp.float32(0.05), "weight_decay": jnp.float32(1e-3),
        "temperature": jnp.float32(0.5), "alpha": jnp.float32(0.5)}
  unitary = (ld.householder_matrix if kind == "householder" else ld.skew_expm)
  key = "v" if kind == "householder" else "S"
  first = state.params["directions"][key]
  for i in range(30):
    z = jax.random.normal(jax.random.key(100 + i), (8, d))
    state, m = step(state, hp, z, jax.random.key(i))
    u = unitary(state.params["directions"][key])
    assert np.abs(np.asarray(u.T @ u) - np.eye(d)).max() < 1e-5, (i, m["loss"])
  assert not np.allclose(first, state.params["directions"][key])  # it did train
  m = dirs.matrix(state.params["directions"])
  np.testing.assert_allclose(np.asarray(m @ m.T), np.eye(4), atol=1e-5)


def test_parameterization_errors_and_traversal():
  with pytest.raises(ValueError, match="num=7 > dim=5"):
    ld.make_directions("householder", 7, 5)
  with pytest.raises(ValueError, match="Unknown direction parameterization"):
    ld.make_directions("spherical", 3, 5)
  dirs = ld.make_directions("linear", 3, 5)
  with pytest.raises(ValueError, match="depend on z"):
    dirs.matrix(dirs.init(jax.random.key(0)))
  # global directions traverse a straight line, conditional ones follow their field
  g = ld.make_directions("global", 3, 5)
  p = g.init(jax.random.key(1))
  z = jnp.arange(5.0)
  path = jax.jit(ld.traverse, static_argnums=(0, 3, 4))(g, p, z, 1, 2, 0.5)
  u = p["d"][1] / jnp.linalg.norm(p["d"][1])
  np.testing.assert_allclose(path, z + 0.5 * jnp.arange(-2, 3)[:, None] * u, atol=1e-5)
  nl = ld.make_directions("nonlinear", 3, 5)
  q = nl.init(jax.random.key(2))
  path = jax.jit(ld.traverse, static_argnums=(0, 3, 4))(nl, q, z, 2, 3, 0.1)
  np.testing.assert_allclose(path[4], path[3] + 0.1 * nl.unit(q, path[3], 2), atol=1e-6)
  np.testing.assert_allclose(path[2], path[3] - 0.1 * nl.unit(q, path[3], 2), atol=1e-6)


def _linear_generator():
  """G(z) = z @ W with each output unit aligned to one ground-truth direction g_i
  (unit-norm columns, multiplicities 5, 3, 2, 1): A^T A = sum_i m_i g_i g_i^T."""
  d = 4
  gt = np.linalg.qr(np.random.default_rng(0).normal(size=(d, d)))[0].T  # rows g_i
  cols = [gt[i] for i, m in enumerate((5, 3, 2, 1)) for _ in range(m)]
  w = np.stack(cols, 1).astype(np.float32)  # [d, 11]
  return gt, jnp.asarray(w)


def _match_cos(found, gt):
  from scipy.optimize import linear_sum_assignment
  c = np.abs(np.asarray(found) @ gt.T)
  r, col = linear_sum_assignment(-c)
  return c[r, col]


def test_closed_forms_recover_known_directions_of_a_linear_generator():
  gt, w = _linear_generator()
  z = np.random.default_rng(1).normal(size=(2000, 4)) * [2.0, 1.5, 1.0, 0.5] @ gt
  assert _match_cos(ld.pca_directions(jnp.asarray(z), 4)[0], gt).min() >= 0.95
  assert _match_cos(ld.sefa_directions(w, 4)[0], gt).min() >= 0.95
  u, _ = ld.jacobian_svd(lambda zz: zz @ w, jnp.zeros(4), 4, iters=200)
  assert _match_cos(u, gt).min() >= 0.95


def test_contrastive_recovers_known_directions_of_a_linear_generator():
  # LatentCLR's |cos| makes orthogonal feature changes the optimum: with orthogonal
  # directions that singles out the eigenvectors of A^T A. (The NoiseCLR form's signed
  # cosine instead favours anti-aligned changes, a simplex, so it is not expected to.)
  form = "latentclr"
  gt, w = _linear_generator()
  dirs = ld.make_directions("expm", 4, 4)
  init, loss = ld.make_contrastive_objective(dirs, lambda z: z @ w, form)
  opt = make_optimizer("adam")
  state = TrainState.create(init(jax.random.key(0)), opt, jax.random.key(1))
  hp = {"lr": jnp.float32(0.02), "temperature": jnp.float32(0.5), "alpha": jnp.float32(1.0)}
  step = make_train_step(Objective(form, init, loss), opt)

  @jax.jit
  def run(state):
    def body(s, i):
      z = jax.random.normal(jax.random.fold_in(jax.random.key(5), i), (16, 4))
      return step(s, hp, z, jax.random.key(0))[0], None
    return jax.lax.scan(body, state, jnp.arange(600))[0]

  state = run(state)
  cos = _match_cos(dirs.matrix(state.params["directions"]), gt)
  assert cos.min() >= 0.95, cos


def test_edit_encodes_moves_decodes():
  from lsx.models import make_autoencoder
  model = make_autoencoder((28, 28, 1), 3, arch="mlp", hidden=(16,))
  mp = model.init(jax.random.key(0))
  dirs = ld.make_directions("global", 2, 3)
  p = dirs.init(jax.random.key(1))
  edit = jax.jit(ld.make_edit(model, mp, dirs), static_argnums=())
  x = jax.random.uniform(jax.random.key(2), (4, 28, 28, 1))
  out = edit(p, x, 1, 0.7)
  u = p["d"][1] / jnp.linalg.norm(p["d"][1])
  ref = jax.nn.sigmoid(model.decode(mp, model.represent(mp, x) + 0.7 * u))
  np.testing.assert_allclose(out, ref, atol=1e-6)
  with pytest.raises(ValueError, match="edit: images of shape"):
    ld.make_edit(model, mp, dirs)(p, jnp.zeros((2, 64, 64, 1)), 0, 1.0)


def test_feature_maps():
  from lsx.models import make_autoencoder
  model = make_autoencoder((64, 64, 1), 4)
  mp = jax.jit(model.init)(jax.random.key(0))
  z = jnp.zeros((2, 4))
  shape = lambda name: jax.eval_shape(ld.make_feature_map(name, model, mp), z).shape
  assert shape("pixels") == (2, 64 * 64)
  assert shape("encoder") == (2, 4)
  assert shape("decoder:ConvT4S2_0") == (2, 8 * 8 * 64)
  lin = ld.make_feature_map("decoder:Dense_0", model, mp)(jnp.ones((1, 4)))
  dense = mp["decoder"]["Dense_0"]
  np.testing.assert_allclose(lin, jnp.ones((1, 4)) @ dense["kernel"] + dense["bias"], atol=1e-5)
  with pytest.raises(ValueError, match="no submodule 'Dense_9'"):
    ld.make_feature_map("decoder:Dense_9", model, mp)
  with pytest.raises(ValueError, match="Unknown feature map"):
    ld.make_feature_map("vgg", model, mp)


def test_direction_sets_scored_in_one_oracle_pass_equal_scored_alone():
  from lsx import metrics as lm

  class Blobs:  # a blob at (row, col) = factors on a 16x16 image
    factor_names = ("row", "col")
    factor_sizes = (12, 12)
    num_examples = 144

    def index_to_factors(self, i):
      return jnp.stack([i // 12, i % 12], -1).astype(jnp.int32)

    def render(self, f):
      return self.draw(f.astype(jnp.float32))

    def draw(self, pos):
      xs = jnp.arange(16.0)
      img = jnp.exp(-((xs[None, :, None] - 2 - pos[:, 0, None, None]) ** 2
                      + (xs[None, None, :] - 2 - pos[:, 1, None, None]) ** 2) / 2.0)
      return img[..., None]

  ds = Blobs()
  generate = lambda z: ds.draw(5.5 + 2.0 * z)  # latent axes move the blob by 2 cells per unit
  calls = []
  base = lm.grid_oracle(ds)
  oracle = lambda x: (calls.append(x.shape[0]), base(x))[1]
  sets = {"axes": ld.fixed_directions(jnp.eye(2)),
          "diagonal": ld.fixed_directions(jnp.array([[1.0, 1.0], [1.0, -1.0]]) / jnp.sqrt(2.0))}
  anchors = jax.random.uniform(jax.random.key(0), (4, 2), minval=-0.5, maxval=0.5)
  kw = dict(num_steps=2, step_size=0.5, dataset=ds, vp=False)
  joint = ld.score_direction_sets(sets, generate, oracle, anchors, anchors, **kw)
  assert len(calls) == 1
  assert joint["axes"]["disentanglement"] > 0.95 and joint["axes"]["coverage"] == 2
  assert joint["diagonal"]["disentanglement"] < 0.1
  for name, (d, p) in sets.items():
    alone = ld.score_directions(d, p, generate, oracle, anchors, anchors, **kw)
    for key in ("disentanglement", "completeness", "direction_mig", "coverage", "off_manifold"):
      assert alone[key] == pytest.approx(joint[name][key], abs=1e-6), (name, key)


def test_factor_directions_recover_the_code_of_each_ordinal_factor():
  # codes linear in two ordinal factors plus a categorical one, with noise: the supervised
  # reference returns each ordinal factor's code direction (unit, in factor order, positive
  # = the factor grows) and its norm (the code change over the factor's range); the
  # categorical factor's offsets do not leak into them
  rng = np.random.default_rng(0)
  sizes = (3, 6, 32)
  f = np.stack([rng.integers(0, s, 4000) for s in sizes], 1)
  a_scale, a_x = rng.normal(size=5), rng.normal(size=5)
  shape_offsets = rng.normal(size=(3, 5)) * 2.0
  z = (f[:, 1:2] / 5 * a_scale + f[:, 2:3] / 31 * a_x + shape_offsets[f[:, 0]]
       + 0.01 * rng.normal(size=(4000, 5)))
  u, norms = ld.factor_directions(jnp.asarray(z), f, sizes, ordinal=(False, True, True))
  assert u.shape == (2, 5)
  want = np.stack([a_scale, a_x])
  np.testing.assert_allclose(np.asarray(u), want / np.linalg.norm(want, axis=1, keepdims=True),
                             atol=5e-3)
  np.testing.assert_allclose(np.asarray(norms), np.linalg.norm(want, axis=1), rtol=5e-3)
  # a factor the code ignores gets a (near) zero norm
  _, n2 = ld.factor_directions(jnp.asarray(z[:, :1] * 0 + rng.normal(size=(4000, 1))), f, sizes,
                               ordinal=(False, True, True))
  assert np.all(np.asarray(n2) < 0.2)
  with pytest.raises(ValueError, match="factor_sizes names"):
    ld.factor_directions(jnp.asarray(z), f[:, :2], sizes)
  with pytest.raises(ValueError, match="same n"):
    ld.factor_directions(jnp.asarray(z[:10]), f, sizes)


def _public_latentclr_numpy(feats_kn, temp):
  """colat/loss.py (abs=True, reduce='mean') written out in numpy: rows ordered by
  direction, sim = exp(|out out^T| * temp), pos/neg means per row, -mean log(pos/neg)."""
  k, n, d = feats_kn.shape
  out = feats_kn.reshape(k * n, d).astype(np.float64)
  sim = np.exp(np.abs(out @ out.T) * temp)
  losses = []
  for r in range(k * n):
    kr = r // n
    pos = [sim[r, c] for c in range(k * n) if c // n == kr and c != r]
    neg = [sim[r, c] for c in range(k * n) if c // n != kr]
    losses.append(-np.log(np.mean(pos) / np.mean(neg)))
  return float(np.mean(losses))


def _public_noiseclr_numpy(feats_kn, temp):
  """core/loss.py: sums of exp(cos / temp) over positive pairs (direction k on inputs i < j)
  and negative pairs (directions k != l on input i), -log(mean_pos / mean_neg)."""
  k, n, _ = feats_kn.shape
  f = feats_kn.astype(np.float64)
  pos, neg = [], []
  for a in range(k):
    for i in range(n):
      for j in range(i + 1, n):
        pos.append(np.exp(f[a, i] @ f[a, j] / temp))
      for b in range(k):
        if b != a:
          neg.append(np.exp(f[a, i] @ f[b, i] / temp))
  return float(-np.log(np.mean(pos) / np.mean(neg)))


def test_reference_contrastive_losses_equal_the_public_computation():
  rng = np.random.default_rng(0)
  f = rng.normal(size=(3, 4, 5))
  f /= np.linalg.norm(f, axis=-1, keepdims=True)
  for temp in (0.5, 2.0):
    got = float(ld.latentclr_loss_reference(jnp.asarray(f, jnp.float32), temp))
    assert got == pytest.approx(_public_latentclr_numpy(f, temp), abs=1e-6)
    got = float(ld.noiseclr_loss_reference(jnp.asarray(f, jnp.float32), temp))
    assert got == pytest.approx(_public_noiseclr_numpy(f, temp), abs=1e-6)
  # the public trainer's estimator: one anchor direction a step against sampled negatives
  def one_anchor(f, a, negs, temp):
    pos = [np.exp(f[a, i] @ f[a, j] / temp) for i in range(4) for j in range(i + 1, 4)]
    neg = [np.exp(f[a, i] @ f[b, i] / temp) for b in negs for i in range(4)]
    return -np.log(np.mean(pos) / np.mean(neg))
  f3 = jnp.asarray(f, jnp.float32)
  for a, negs in ((0, [2]), (1, [0, 2]), (2, [1])):
    got = float(ld.noiseclr_loss_reference(f3, 0.5, a, jnp.asarray(negs)))
    assert got == pytest.approx(one_anchor(f, a, negs, 0.5), abs=1e-5)
  assert float(ld.noiseclr_loss_reference(f3, 0.5, 1)) == pytest.approx(
      one_anchor(f, 1, [0, 2], 0.5), abs=1e-5)  # default: every other direction
  from lsx.directions._objectives import sample_negatives
  for seed in range(20):  # distinct, never the anchor, every subset reachable
    n = np.asarray(sample_negatives(jax.random.key(seed), 5, 3, 2))
    assert len(set(n.tolist())) == 2 and 3 not in n and n.min() >= 0 and n.max() < 5
  # lsx's NoiseCLR form averages per-row log ratios: a different number
  assert abs(float(ld.noiseclr_loss(jnp.asarray(f, jnp.float32), 0.5))
             - _public_noiseclr_numpy(f, 0.5)) > 1e-3


def test_reference_features_normalize_before_the_difference():
  # phi(G(z + Delta)) and phi(G(z)) are unit-normalized first (the public projector), then
  # their difference; lsx's form normalizes only the raw difference
  dirs = ld.make_directions("global", 2, 3)
  params = dirs.init(jax.random.key(0))
  z = jax.random.normal(jax.random.key(1), (4, 3))
  feat = lambda zz: jnp.concatenate([zz, zz ** 2], -1)
  a = ld.contrastive_features(feat, dirs, params, z, 0.5)
  b = ld.contrastive_features(feat, dirs, params, z, 0.5, normalize_first=True)
  h0, h1 = feat(z), jax.vmap(lambda k: jax.vmap(lambda zz: dirs.shift(params, zz, k, 0.5))(z))(
      jnp.arange(2))
  h1 = jax.vmap(feat)(h1)
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  np.testing.assert_allclose(b, unit(unit(np.asarray(h1)) - unit(np.asarray(h0))[None]), atol=1e-6)
  np.testing.assert_allclose(a, unit(np.asarray(h1) - np.asarray(h0)[None]), atol=1e-6)


def _axis_world(d=3, size=9):
  """G(z) = z W as 8x8 images, W's rows orthonormal (latent j lights its own pixels), and
  an oracle that reads factor j as round(z_j) + size // 2 (clipped) from the image: the
  closed forms of the protocols are known."""
  class World:
    factor_sizes = (size,) * d
    factor_names = tuple(f"f{j}" for j in range(d - 1)) + ("orientation",)
    categorical = ()
  w = np.zeros((d, 64), np.float32)
  for j in range(d):
    w[j, j * 16:(j + 1) * 16] = 0.25  # 16 pixels of 1/4: unit rows
  w = jnp.asarray(w)
  gen = lambda z: (z @ w).reshape(z.shape[0], 8, 8, 1)
  oracle = lambda x: (jnp.clip(jnp.round(x.reshape(x.shape[0], -1) @ w.T) + size // 2, 0, size - 1)
                      .astype(jnp.int32), jnp.zeros(x.shape[0]))
  return World(), gen, oracle


def test_protocols_closed_forms_on_an_axis_world():
  from lsx.directions import protocols
  d = 3
  world, gen, oracle = _axis_world(d)
  dirs = ld.make_directions("global", d, d)
  params = {"d": jnp.eye(d) * jnp.asarray([1.0, 2.0, 3.0])[:, None]}  # unit after normalizing
  trav = ld.linear_traversal(dirs, 4, 0.5)  # full path: 2 units along the axis
  z = jax.random.normal(jax.random.key(0), (6, d))
  k = jnp.arange(6) % d
  np.testing.assert_allclose(protocols.path_ends(trav, params, z, k), z + 2.0 * jnp.eye(d)[k], atol=1e-6)
  np.testing.assert_allclose(protocols.path_ends(trav, params, z, k, sign=-1.0, scale=0.5),
                             z - 1.0 * jnp.eye(d)[k], atol=1e-6)
  # the image change of a unit-axis shift is its length: scale for a target change 3.0 = 1.5
  s = protocols.match_scale(trav, params, gen, d, 3.0, jax.random.key(1), num_directions=d)
  assert s == pytest.approx(1.5, rel=1e-4)
  with pytest.raises(ValueError, match="no scale"):
    protocols.match_scale(trav, params, gen, d, 1e5, jax.random.key(1), num_directions=d)
  # VP: each axis moves its own pixel, the classifier reads it: 100 pairs per direction,
  # 10% for training
  out = protocols.vp_protocol(trav, params, gen, d, jax.random.key(2), num_directions=d,
                              pairs_per_direction=100, steps=200)
  assert out["num_train"] == 30 and out["num_test"] == 270
  assert out["vp"] > 0.95 and out["change"] == pytest.approx(2.0, rel=1e-5)
  # manipulation: axis j moves factor j by 2 of its range 8 (orientation: circular,
  # period 9, half-period 4.5) and nothing else
  anchors = jnp.zeros((5, d))
  m = protocols.manipulation(trav, params, gen, oracle, world, anchors, num_directions=d)
  for j, name in enumerate(world.factor_names):
    row = m["factors"][name]
    unit = 4.5 if name == "orientation" else 8.0
    assert row["direction"] == j and row["leakage"] == 0.0
    assert row["change_pos"] == pytest.approx(2 / unit) and row["change_neg"] == pytest.approx(2 / unit)
  # held out: the direction chosen on 2 anchors, its change measured on the other 3
  held = protocols.manipulation(trav, params, gen, oracle, world, anchors, num_directions=d,
                                select=2)
  for name, row in m["factors"].items():  # every anchor moves alike: choosing on 2 changes nothing
    assert held["factors"][name]["direction"] == row["direction"]
    assert held["factors"][name]["change_pos"] == pytest.approx(row["change_pos"])
  with pytest.raises(ValueError, match="select"):
    protocols.manipulation(trav, params, gen, oracle, world, anchors, num_directions=d, select=5)
  # a circular factor's change is the shorter way round: 9 - 7 = 2 steps
  np.testing.assert_allclose(protocols.factor_change(world, [[0, 0, 1]], [[0, 0, 8]]),
                             [[0, 0, 2 / 4.5]])


def _public_bn_network(p, z, k, running=None):
  """The public LatentCLR direction network (3 layers, batch norm, ReLU) written in numpy
  from torch's formulas: training mode normalizes with the batch's biased variance and
  returns the batch mean and unbiased variance; evaluation uses `running`."""
  p = {n: np.asarray(v, np.float64) for n, v in p.items() if n != "stats"}
  h, stats = np.asarray(z, np.float64), {}
  for i in (1, 2):
    h = h @ p[f"w{i}"][k] + p[f"b{i}"][k]
    if running is None:
      mean, var = h.mean(0), h.var(0)
      stats[f"mean{i}"], stats[f"var{i}"] = mean, h.var(0, ddof=1)
    else:
      mean, var = running[f"mean{i}"][k], running[f"var{i}"][k]
    h = np.maximum((h - mean) / np.sqrt(var + 1e-5) * p[f"g{i}"][k] + p[f"c{i}"][k], 0.0)
  out = h @ p["w3"][k]
  return out / np.linalg.norm(out, axis=-1, keepdims=True), stats


def test_batchnorm_directions_train_on_batch_statistics_and_score_on_running_ones():
  """kind 'nonlinear_bn' against the numpy network: training-mode units and statistics,
  the running statistics after an optimizer step (momentum 0.1), evaluation-mode units,
  and the gradient never reaching the running statistics."""
  num, dim, n = 3, 5, 6
  dirs = ld.make_directions("nonlinear_bn", num, dim)
  p = dirs.init(jax.random.key(0))
  assert p["w1"].shape == (num, dim, dim) and "b3" not in p  # h = d; no bias on the last
  bound = 1 / np.sqrt(dim)
  assert np.abs(np.asarray(p["w1"])).max() <= bound and np.abs(np.asarray(p["w1"])).max() > 0.8 * bound
  z = jax.random.normal(jax.random.key(1), (n, dim)) * 2.0 + 0.5
  units, stats = dirs.batch_unit(p, z, 1)
  ref_units, ref_stats = _public_bn_network(p, z, 1)
  np.testing.assert_allclose(units, ref_units, atol=1e-5)
  for key in ref_stats:
    np.testing.assert_allclose(stats[key], ref_stats[key], rtol=1e-4, atol=1e-5)
  # the objective: post_update folds each direction's batch statistics in
  feat = lambda x: jnp.concatenate([x, jnp.sin(x)], -1)
  init, loss = ld.make_contrastive_objective(dirs, feat, "latentclr", "reference")
  obj = Objective("latentclr", init, loss, {"temperature": 0.5, "alpha": 0.3},
                  post_update=lambda q, post, hp: {
                      **q, "directions": dirs.update_stats(q["directions"],
                                                           post["directions_stats"],
                                                           post["running"])})
  params = init(jax.random.key(0))
  grads = jax.grad(lambda q: loss(q, z, jax.random.key(3), {"temperature": 0.5,
                                                              "alpha": 0.3})[0])(params)
  assert all(float(jnp.abs(g).max()) == 0.0
             for g in jax.tree.leaves(grads["directions"]["stats"]))
  assert float(jnp.abs(grads["directions"]["w1"]).max()) > 0
  opt = make_optimizer("adam_l2")  # coupled decay: would move the statistics if not overwritten
  state = TrainState.create(params, opt, jax.random.key(4))
  step = jax.jit(make_train_step(obj, opt))
  new, _ = step(state, {"temperature": jnp.float32(0.5), "alpha": jnp.float32(0.3),
                        "lr": jnp.float32(1e-2), "weight_decay": jnp.float32(0.1)}, z,
                jax.random.key(3))
  for kk in range(num):
    _, st = _public_bn_network(params["directions"], z, kk)
    for key, v in st.items():
      init_v = 1.0 if key.startswith("var") else 0.0
      np.testing.assert_allclose(new.params["directions"]["stats"][key][kk],
                                 0.9 * init_v + 0.1 * v, rtol=1e-4, atol=1e-5)
  # evaluation (every traversal and score): the running statistics, per sample
  q = new.params["directions"]
  running = {k: np.asarray(v, np.float64) for k, v in q["stats"].items()}
  ev = jax.vmap(lambda zz: dirs.unit(q, zz, 2))(z)
  np.testing.assert_allclose(ev, _public_bn_network(q, z, 2, running)[0], atol=1e-5)
  np.testing.assert_allclose(dirs.unit(q, z[0], 2), ev[0], atol=1e-6)  # one code alone
  with pytest.raises(ValueError, match="batches of >= 2"):
    dirs.batch_unit(p, z[:1], 0)
