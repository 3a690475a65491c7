"""lsx.similarity against closed forms and invariances."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lsx import similarity as ls


def _rotation(d, seed=0):
  q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
  return jnp.asarray(q, jnp.float32)


@pytest.fixture(scope="module")
def space():
  return jax.random.normal(jax.random.key(0), (200, 6))


def test_relative_representation_is_invariant_to_rotation_and_scaling(space):
  idx = ls.choose_anchors(20, "random", n=200, rng=jax.random.key(1))
  r = ls.relative_projection(space, space[idx])
  moved = 7.5 * space @ _rotation(6)
  r2 = ls.relative_projection(moved, moved[idx])
  np.testing.assert_allclose(r2, r, atol=2e-6)
  assert r.shape == (200, 20) and float(jnp.abs(r).max()) <= 1 + 1e-6
  # a sample that is an anchor has cosine 1 with itself
  np.testing.assert_allclose(r[idx, jnp.arange(20)], 1.0, atol=1e-6)


def test_cka_is_one_with_itself_and_invariant_to_rotation_and_isotropic_scaling(space):
  for cka in (ls.linear_cka, ls.rbf_cka):
    assert float(cka(space, space)) == pytest.approx(1.0, abs=1e-5)
    moved = 0.3 * space @ _rotation(6, 1)
    assert float(cka(space, moved)) == pytest.approx(1.0, abs=1e-4)
    noise = jax.random.normal(jax.random.key(9), space.shape)
    assert float(cka(space, noise)) < 0.3
  # against a slow reference: HSIC with explicit centering matrices
  x, y = np.asarray(space, np.float64), np.asarray(space[:, :3] ** 2, np.float64)
  h = np.eye(200) - 1.0 / 200
  hsic = lambda k, l: np.trace(k @ h @ l @ h)
  kx, ky = x @ x.T, y @ y.T
  ref = hsic(kx, ky) / np.sqrt(hsic(kx, kx) * hsic(ky, ky))
  assert float(ls.linear_cka(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))) == pytest.approx(ref, rel=1e-4)


def test_retrieval_measures_closed_forms(space):
  assert float(ls.mean_reciprocal_rank(space, space)) == pytest.approx(1.0)
  assert float(ls.knn_jaccard(space, 3.0 * space @ _rotation(6), k=10)) == pytest.approx(1.0)
  assert float(ls.mean_cosine(space, 2.0 * space)) == pytest.approx(1.0, abs=1e-6)
  perm = jax.random.permutation(jax.random.key(3), 200)
  assert float(ls.mean_reciprocal_rank(space, space[perm])) < 0.1  # matched samples lost
  # MRR against a loop
  x, y = np.asarray(space), np.asarray(space + 0.5 * jax.random.normal(jax.random.key(4), space.shape))
  xu = x / np.linalg.norm(x, axis=1, keepdims=True)
  yu = y / np.linalg.norm(y, axis=1, keepdims=True)
  ranks = [1 + sum(yu[j] @ xu[i] > yu[i] @ xu[i] for j in range(200) if j != i)
           for i in range(200)]
  assert float(ls.mean_reciprocal_rank(x, y)) == pytest.approx(np.mean(1 / np.array(ranks)), rel=1e-5)


def test_procrustes_recovers_a_known_rotation_and_translation(space):
  rot = _rotation(6, 2)
  y = 3.0 * space @ rot + 1.5
  t = ls.fit_procrustes(space[:50], y[:50])
  np.testing.assert_allclose(t.w, rot, atol=1e-4)
  np.testing.assert_allclose(ls.translate(t, space[50:]), y[50:], atol=1e-3)
  a = ls.fit_affine(space[:50], y[:50])
  np.testing.assert_allclose(ls.translate(a, space[50:]), y[50:], atol=1e-3)


def test_anchor_choices(space):
  far = ls.choose_anchors(10, "farthest", space=space, rng=jax.random.key(0))
  rnd = ls.choose_anchors(10, "random", n=200, rng=jax.random.key(0))
  assert len(set(np.asarray(far).tolist())) == 10
  spread = lambda i: float(jnp.min(jnp.sum((space[i][:, None] - space[i][None]) ** 2, -1)
                                   + 1e9 * jnp.eye(10)))
  assert spread(far) > spread(rnd)  # farthest-point anchors are spread out
  labels = np.repeat(np.arange(4), 50)
  per = np.asarray(ls.choose_anchors(8, "per_class", labels=labels, rng=jax.random.key(0)))
  assert sorted(np.bincount(labels[per]).tolist()) == [2, 2, 2, 2]
  with pytest.raises(ValueError, match="Unknown anchor method"):
    ls.choose_anchors(3, "kmeans", n=10)


def test_pair_matrix_equals_pairs_one_by_one(space):
  spaces = jnp.stack([space, space @ _rotation(6), space + 0.3 * jax.random.normal(jax.random.key(5), space.shape)])
  m = jax.jit(lambda s: ls.pair_matrix(ls.linear_cka, s))(spaces)
  for i in range(3):
    for j in range(3):
      assert float(m[i, j]) == pytest.approx(float(ls.linear_cka(spaces[i], spaces[j])), abs=1e-5)


def test_stitching_diagonal_is_each_members_own_reconstruction(tmp_path):
  from conftest import tiny_config
  from lsx import compare_spaces as compare, train as lt
  from lsx.models.objectives import neg_log_likelihood
  from lsx.train.config import run_config
  c = tiny_config(**{"objective.name": "ae", "sweep_strategy": "map", "train.steps": 4})
  with c.unlocked():
    c.hp, c.sweep.seed = {"lr": 1e-3}, (0, 1)
  state, setup = lt.train(c, str(tmp_path), print_fn=lambda s: None)
  images = setup.dataset.sample(jax.random.key(3), 64)[0]
  # relative decoders on the frozen encoders, trained through the runner as a sweep
  r = run_config()
  r.family, r.source, r.relative = "relative_decoder", {"workdir": str(tmp_path)}, {
      "num_anchors": 8, "anchor_seed": 1}
  r.hp, r.sweep.seed, r.sweep_strategy = {"lr": 1e-3}, (0, 1), "map"
  r.train.update(steps=2, chunk=2, ckpt_every=2, batch_size=8)
  rsetup = lt.build(r)
  rstate, _ = lt.train(r, str(tmp_path / "rel"), setup=rsetup, print_fn=lambda s: None,
                       init_params=compare.source_params(rsetup, state.params))
  from conftest import assert_trees_equal
  assert_trees_equal(rstate.params["encoder"], state.params["encoder"])  # stayed frozen
  info = rsetup.objective.info
  errs = compare.stitch_errors(setup.model, state.params, images, info["anchor_images"],
                               rel_decode=info["rel_decode"], rel_params=rstate.params)
  for i in range(2):
    p = jax.tree.map(lambda a: a[i], state.params)
    own = neg_log_likelihood(setup.model.decode(p, setup.model.represent(p, images)), images)
    assert errs["absolute"][i, i] == pytest.approx(float(own.mean()) / (32 * 32), rel=1e-5)
    # a Procrustes map of a space onto itself is the identity
    assert errs["translation"][i, i] == pytest.approx(errs["absolute"][i, i], rel=1e-4)
  assert errs["relative"].shape == (2, 2) and np.all(np.isfinite(errs["relative"]))
  table = compare.similarity_table(compare.encode_members(setup.model, state.params, images),
                                   num_anchors=8, repetitions=2, retrieval=32)
  assert table["absolute"].shape == (2, 2, 4) and table["relative"].shape == (2, 2, 2, 4)
  np.testing.assert_allclose(np.diagonal(table["absolute"][..., 3]), 1.0, atol=1e-5)  # CKA(i, i)


def test_pair_table_from_member_statistics_equals_the_measures(space):
  from lsx import compare_spaces as compare
  spaces = jnp.stack([space, space @ _rotation(6), space + 0.3 * jax.random.normal(jax.random.key(5), space.shape)])
  t = np.asarray(compare.pair_table(spaces, 120))
  for i in range(3):
    for j in range(3):
      x, y = spaces[i], spaces[j]
      want = [ls.knn_jaccard(x[:120], y[:120], 10), ls.mean_reciprocal_rank(x[:120], y[:120]),
              ls.mean_cosine(x, y), ls.linear_cka(x, y)]
      np.testing.assert_allclose(t[i, j], np.array(want, np.float32), rtol=1e-4, atol=1e-5)


def test_compare_spaces_cli_writes_tables_and_figures(tmp_path):
  import csv
  import subprocess
  import sys
  from conftest import tiny_config
  from lsx import train as lt
  c = tiny_config(**{"objective.name": "ae", "sweep_strategy": "map", "train.steps": 2})
  with c.unlocked():
    c.hp, c.sweep.seed = {"lr": 1e-3}, (0, 1)
  lt.train(c, str(tmp_path), print_fn=lambda s: None, write_figures=False)
  out = subprocess.run([sys.executable, "-m", "experiments.compare_spaces", "--workdir",
                        str(tmp_path), "--samples=64", "--anchors=8", "--retrieval=32",
                        "--repetitions=2", "--stitch", "--stitch_steps=2"],
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  rows = list(csv.DictReader(open(tmp_path / "similarity.csv")))
  assert len(rows) == 4 + 2 * 4 and {"jaccard@10", "mrr", "cosine", "linear_cka"} <= set(rows[0])
  kinds = {r["kind"] for r in csv.DictReader(open(tmp_path / "stitching.csv"))}
  assert kinds == {"absolute", "translation", "relative"}
  for png in ("similarity.png", "stitching.png"):
    assert (tmp_path / png).stat().st_size > 1000
  assert "cross-member" in out.stderr and "stitching error" in out.stderr


def test_relative_measures_from_factors_equal_the_dense_relative_representation():
  # relative codes have rank <= d: the factored statistics give the dense table's numbers
  from lsx import compare_spaces as compare
  codes = jax.random.normal(jax.random.key(4), (3, 300, 5))
  codes = codes.at[1].set(codes[0] @ _rotation(5, 2) * 2.0 + 0.1 * codes[1])
  idx = ls.choose_anchors(40, "random", n=300, rng=jax.random.key(5))
  dense = compare.pair_table(jax.vmap(lambda z: ls.relative_projection(z, z[idx]))(codes), 120)
  factored = compare.relative_pair_table(codes, idx, 120)
  np.testing.assert_allclose(factored[..., 0], dense[..., 0], atol=1e-6)  # Jaccard (same k-NN)
  np.testing.assert_allclose(factored[..., 1], dense[..., 1], atol=2e-3)  # MRR (rank ties)
  np.testing.assert_allclose(factored[..., 2:], dense[..., 2:], rtol=1e-4, atol=1e-5)
