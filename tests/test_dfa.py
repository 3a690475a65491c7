"""Direction-factor attribution on synthetic traversals with known answers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lsx import metrics as lm

SIZES = (10, 10, 10, 40)
CIRC = (False, False, False, True)
STEPS = np.linspace(-3, 3, 7)


def _read(mixing, n=5, seed=0):
  """Factors [K, N, S, J] of anchors moved along directions that change factors by `mixing`."""
  rng = np.random.default_rng(seed)
  base = rng.uniform(2, 7, size=(n, len(SIZES)))
  f = base[None, :, None, :] + STEPS[None, None, :, None] * np.asarray(mixing)[:, None, None, :]
  return np.mod(f, 40) * np.array(CIRC) + f * ~np.array(CIRC)


def test_pure_directions_score_one_and_mixtures_low():
  pure = lm.dfa(_read(np.eye(4)), STEPS, SIZES, CIRC)
  assert pure["disentanglement"] == pytest.approx(1.0, abs=1e-4)
  assert pure["completeness"] == pytest.approx(1.0, abs=1e-4)
  assert pure["direction_mig"] == pytest.approx(1.0, abs=1e-4)
  assert pure["coverage"] == 4
  mixed = lm.dfa(_read(np.ones((4, 4)) * np.array([1, 1, 1, 4])), STEPS, SIZES, CIRC)
  assert mixed["disentanglement"] < 0.05 and mixed["coverage"] == 0


def test_permuting_directions_leaves_d_and_c_unchanged():
  mix = np.random.default_rng(1).uniform(0, 1, (5, 4)) ** 3
  a = lm.dfa(_read(mix), STEPS, SIZES, CIRC)
  b = lm.dfa(_read(mix[[3, 0, 4, 1, 2]]), STEPS, SIZES, CIRC)
  for key in ("disentanglement", "completeness", "direction_mig", "coverage"):
    assert a[key] == pytest.approx(b[key], abs=1e-5)


def test_a_direction_that_changes_nothing_is_not_pure_and_rotation_wraps():
  mix = np.eye(4)
  mix[0] = [1e-4, 0, 0, 0]  # changes factor 0 by a hair
  r = lm.dfa(_read(mix), STEPS, SIZES, CIRC)
  assert not r["active"][0] and np.allclose(r["P"][0], 0.25)
  assert r["coverage"] == 3
  # a rotation through 0 (anchors near orientation 0) stays a clean orientation direction
  rot = _read(np.eye(4)[[3]] * 8.0)
  rot[..., 3] = np.mod(rot[..., 3] - 20, 40)
  out = lm.dfa(rot, STEPS, SIZES, CIRC)
  assert out["P"][0, 3] > 0.99


def test_grid_oracle_reads_rendered_factors_exactly():
  class Tiny:
    factor_sizes = (4, 5)
    num_examples = 20

    def index_to_factors(self, i):
      return jnp.stack([i // 5, i % 5], -1).astype(jnp.int32)

    def render(self, f):
      xs = jnp.arange(8.0)
      img = jnp.exp(-(xs[None, :, None] - 2 * f[:, 0, None, None]) ** 2
                    - (xs[None, None, :] - 1.5 * f[:, 1, None, None]) ** 2)
      return img[..., None]

  ds = Tiny()
  oracle = lm.grid_oracle(ds, chunk=6)  # chunks that do not divide the grid
  f = jnp.array([[0, 0], [3, 4], [2, 1], [1, 3]])
  got, dist = oracle(ds.render(f))
  np.testing.assert_array_equal(np.asarray(got), np.asarray(f))
  assert float(dist.max()) < 1e-3
  _, far = oracle(ds.render(f) + 0.5)
  assert float(far.min()) > 0.1


def test_variation_predictability_separates_distinct_directions_from_noise():
  rng = jax.random.key(0)
  masks = jnp.zeros((3, 16, 16)).at[0, :8, :8].set(1).at[1, 8:, :8].set(1).at[2, :, 8:].set(1)
  # a fixed generator where latent k paints region k: direction k changes region k only
  decode = lambda z: jnp.einsum("nk,khw->nhw", jax.nn.sigmoid(z), masks)[..., None]
  anchors = jax.random.normal(jax.random.key(2), (60, 3))
  diffs, labels = lm.variation_pairs(decode, anchors, jnp.eye(3), rng)
  assert diffs.shape == (180, 16, 16, 1)
  good = lm.variation_predictability(diffs, labels, jax.random.key(5), train_fraction=0.3, steps=200)
  assert good["vp"] > 0.9
  shuffled = jax.random.permutation(jax.random.key(3), labels)
  bad = lm.variation_predictability(diffs, shuffled, jax.random.key(5), train_fraction=0.3, steps=200)
  assert bad["vp"] < 0.6


def test_symmetric_shapes_read_orientation_modulo_their_symmetry():
  from lsx import data
  ds = data.Sprites()
  f = np.zeros((3, 5), np.int32)
  f[:, 0] = [0, 1, 2]
  np.testing.assert_allclose(ds.factor_periods(f)[:, 2], [39 / 4, 39 / 2, 39])
  assert not ds.factor_periods(f)[:, [0, 1, 3, 4]].any()
  # the renderer has that symmetry: a square a quarter turn (9.75 steps) on looks like
  # the square 10 steps on, far more than like the square 5 steps on
  img = lambda s, o: ds.render(jnp.array([[s, 5, o, 16, 16]]))[0]
  near = float(jnp.abs(img(0, 0) - img(0, 10)).mean())
  assert near < 0.3 * float(jnp.abs(img(0, 0) - img(0, 5)).mean())
  # a direction that moves squares along x while the reading of their (ambiguous)
  # orientation hops between equivalent quarter turns: pure x once symmetry is known
  rng = np.random.default_rng(0)
  k, n, s = 1, 6, 7
  read = np.zeros((k, n, s, 5))
  read[..., 1] = 3
  read[..., 3] = 10 + np.arange(s) * 2
  read[..., 4] = 12
  read[..., 2] = 4 + 10 * rng.integers(0, 4, (k, n, s))  # 4, 14, 24, 34: one orientation
  steps = np.arange(-3, 4)
  naive = lm.dfa(read, steps, ds.factor_sizes, [n_ == "orientation" for n_ in ds.factor_names],
                 keep=lm.ordinal_mask(ds))
  aware = lm.dataset_dfa(ds, read, steps)
  assert naive["P"][0, 2] < 0.8 < aware["P"][0, 2]  # columns: scale, orientation, x, y
  with pytest.raises(ValueError, match="either circular or periods"):
    lm.dfa(read, steps, ds.factor_sizes, [True] * 5, periods=ds.factor_periods(read))


def test_chance_correction_removes_reading_noise_and_keeps_real_changes():
  rng = np.random.default_rng(3)
  # each direction moves one of factors 0-2; the oracle reads factor 3 (orientation) as
  # noise at every step, as it does for a blurry round blob
  read = _read(np.eye(4)[:3] * 1.0, n=200)
  read[..., 3] = rng.uniform(0, 40, read.shape[:3])
  raw = lm.dfa(read, STEPS, SIZES, CIRC)
  cc = lm.dfa(read, STEPS, SIZES, CIRC, null_permutations=300)
  assert raw["P"][:, 3].min() > 0.2  # the noise takes a large share of R uncorrected
  assert cc["P"][:, 3].max() < 0.06 and cc["coverage"] == 3  # what is left: sampling error
  assert cc["disentanglement"] > 0.8 and cc["disentanglement"] > raw["disentanglement"] + 0.2
  # exactly monotone readings: the correction leaves pure directions pure
  pure = lm.dfa(_read(np.eye(4)), STEPS, SIZES, CIRC, null_permutations=300)
  assert pure["disentanglement"] == pytest.approx(1.0, abs=1e-4) and pure["coverage"] == 4
  # readings unrelated to the step score about 0; reproducible; bad counts are refused
  noise = rng.uniform(0, 9, (3, 40, 7, 4))
  r = lm.dfa(noise, STEPS, SIZES, CIRC, null_permutations=300)
  assert float(np.abs(r["R"]).max()) < 0.02
  again = lm.dfa(noise, STEPS, SIZES, CIRC, null_permutations=300)
  np.testing.assert_array_equal(r["R"], again["R"])
  with pytest.raises(ValueError, match="null_permutations"):
    lm.dfa(noise, STEPS, SIZES, CIRC, null_permutations=-1)


def test_rotation_anisotropy_separates_shapes_from_round_blobs():
  from lsx import data
  from lsx.data.procedural import _grid
  from lsx.metrics.oracle import degrade
  ds = data.Sprites()
  # every shape at every scale, at 6 orientations, sharp and blurred like a decoder's output
  sh, sc, o = np.meshgrid(np.arange(3), np.arange(6), np.arange(0, 40, 7), indexing="ij")
  f = np.stack([sh.ravel(), sc.ravel(), o.ravel(), np.full(sh.size, 9), np.full(sh.size, 20)], 1)
  renders = ds.render(jnp.asarray(f))
  aniso = jax.jit(lm.rotation_anisotropy)
  for blur in (0.0, 1.5):
    x = degrade(jax.random.key(1), renders, blur) if blur else renders
    assert float(aniso(x).min()) > ds.min_anisotropy
  # discs of every sprite size, sharp or blurred, have no orientation
  gx, gy = _grid(64)
  discs = jnp.stack([(((gx - 0.31) ** 2 + (gy - 0.47) ** 2) <= r * r).astype(jnp.float32)
                     for r in (0.08, 0.12, 0.16, 0.2)])[..., None]
  for x in (discs, degrade(jax.random.key(2), discs, 1.5)):
    assert float(aniso(x).max()) < ds.min_anisotropy
  # a turn about the centre of mass: the same value wherever the shape is; empty images 0
  a = aniso(ds.render(jnp.array([[0, 5, 3, 4, 4], [0, 5, 3, 27, 21]])))
  assert float(a[0]) == pytest.approx(float(a[1]), abs=0.03)
  assert float(aniso(jnp.zeros((1, 64, 64, 1)))[0]) == 0.0
  with pytest.raises(ValueError, match=r"\[n, H, W, C\]"):
    lm.rotation_anisotropy(jnp.zeros((64, 64)))


def test_an_orientation_the_image_does_not_define_is_not_a_change():
  from lsx import data
  from lsx.metrics.directions import UNREADABLE, unwrap_circular
  ds = data.Sprites()
  # unwrap: an unreadable step or anchor contributes no difference; readable ones do
  f = jnp.array([[[3.0], [30.0], [10.0]]])  # [1, S=3, J=1], anchor = the middle step 30
  p = jnp.array([[[39.0], [39.0], [UNREADABLE]]])
  np.testing.assert_allclose(unwrap_circular(f, p)[0, :, 0], [12.0, 0.0, 0.0])
  np.testing.assert_allclose(unwrap_circular(f, jnp.array([[[39.0], [UNREADABLE], [39.0]]]))[0, :, 0], 0.0)
  # blobs moved along x whose orientation an oracle reads at random: x is pure once the
  # readings of images without an orientation are not counted ...
  rng = np.random.default_rng(0)
  k, n, s = 2, 40, 7
  steps = np.arange(-3, 4)
  read = np.zeros((k, n, s, 5))
  read[..., 0], read[..., 1], read[..., 4] = 1, 3, 12
  read[0, ..., 3] = 10 + np.arange(s) * 2
  read[0, ..., 2] = rng.integers(0, 40, (n, s))  # noise
  # ... and a direction that turns an ellipse (readable) keeps its orientation change
  read[1, ..., 3] = 16
  read[1, ..., 2] = 5 + 2 * np.arange(s)
  aniso = np.concatenate([np.full((1, n, s), 0.05), np.full((1, n, s), 0.7)])
  plain = lm.dataset_dfa(ds, read, steps)
  aware = lm.dataset_dfa(ds, read, steps, anisotropy=aniso)
  # columns: scale, orientation, x, y
  assert plain["P"][0, 2] < 0.8 and plain["coverage"] < 2
  assert aware["P"][0, 2] == pytest.approx(1.0) and aware["R"][0, 1] == 0.0
  np.testing.assert_allclose(aware["R"][1], plain["R"][1])
  assert aware["coverage"] == 2
  with pytest.raises(ValueError, match="one value per read image"):
    lm.dataset_dfa(ds, read, steps, anisotropy=aniso[:, :, :3])
