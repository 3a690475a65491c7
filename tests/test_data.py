import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lsx import data


@pytest.mark.parametrize("cls", [data.Sprites, data.Scenes])
def test_render_contract_and_determinism(cls):
  ds = cls()
  f = ds.sample_factors(jax.random.key(0), 8)
  assert f.dtype == jnp.int32 and f.shape == (8, len(ds.factor_sizes))
  assert np.all(np.asarray(f) < np.asarray(ds.factor_sizes))
  a = jax.jit(ds.render)(f)
  b = ds.render(f)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(jax.jit(ds.render)(f)))
  assert a.shape == (8,) + ds.image_shape and a.dtype == jnp.float32
  assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)  # fusion may differ by an ulp
  imgs, fac = jax.jit(ds.sample, static_argnums=1)(jax.random.key(1), 4)
  imgs2, fac2 = jax.jit(ds.sample, static_argnums=1)(jax.random.key(1), 4)
  np.testing.assert_array_equal(np.asarray(imgs), np.asarray(imgs2))
  np.testing.assert_array_equal(np.asarray(fac), np.asarray(fac2))


@pytest.mark.parametrize("cls", [data.Sprites, data.Scenes])
def test_every_factor_changes_the_image(cls):
  ds = cls()
  rng = np.random.default_rng(0)
  for j, size in enumerate(ds.factor_sizes):
    base = np.array([rng.integers(0, s) for s in ds.factor_sizes])
    base[j] = 0
    variants = np.repeat(base[None], size, 0)
    variants[:, j] = np.arange(size)
    imgs = np.asarray(ds.render(variants))
    # every value of the factor gives an image different from its neighbour value;
    # orientation may repeat by symmetry only at wrap-around (0 and 2pi in dSprites).
    diffs = np.abs(np.diff(imgs, axis=0)).reshape(size - 1, -1).max(1)
    assert np.all(diffs > 0), (ds.factor_names[j], diffs)


def test_sprites_grid_matches_dsprites():
  ds = data.Sprites()
  assert ds.factor_sizes == (3, 6, 40, 32, 32) and ds.num_examples == 737_280
  assert ds.image_shape == (64, 64, 1)
  img = np.asarray(ds.render(np.array([[0, 5, 0, 16, 16]])))
  assert set(np.unique(img)) <= {0.0, 1.0} and img.sum() > 50


def test_scenes_grid_matches_shapes3d():
  ds = data.Scenes()
  assert ds.factor_sizes == (10, 10, 10, 8, 4, 15) and ds.num_examples == 480_000
  assert ds.image_shape == (64, 64, 3)


def test_index_to_factors_roundtrip():
  ds = data.Sprites()
  idx = np.array([0, 1, 32, 12345, ds.num_examples - 1])
  f = np.asarray(ds.index_to_factors(idx))
  strides = np.cumprod((ds.factor_sizes[1:] + (1,))[::-1])[::-1]
  np.testing.assert_array_equal((f * strides).sum(1), idx)


def test_sequence_factors_change_one_factor():
  ds = data.Sprites()
  seq = np.asarray(data.make_sequence_factors(ds, np.array([0, 2, 3, 30, 4]), 3, 5))
  assert seq.shape == (5, 5)
  np.testing.assert_array_equal(seq[:, 3], [30, 31, 0, 1, 2])
  np.testing.assert_array_equal(np.delete(seq, 3, 1), np.tile([0, 2, 3, 4], (5, 1)))


def test_render_rejects_bad_factor_shape():
  with pytest.raises(ValueError, match=r"factors of shape \[n, 5\]"):
    data.Sprites().render(np.zeros((3, 4), np.int32))


def test_tfds_not_prepared_gives_instructions(tmp_path):
  with pytest.raises(data.DatasetNotPreparedError, match="tfds build mnist"):
    data.load_tfds("mnist", data_dir=str(tmp_path))


def test_tfds_mock_data_source():
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
    ds = data.get_dataset("mnist", max_examples=10)
  assert ds.image_shape == (28, 28, 1) and ds.num_examples == 10
  imgs, f = jax.jit(ds.sample, static_argnums=1)(jax.random.key(0), 5)
  assert imgs.shape == (5, 28, 28, 1) and f.shape == (5, 1)
  assert float(imgs.min()) >= 0 and float(imgs.max()) <= 1


@pytest.mark.parametrize("stub", [False, True])
def test_tfds_not_prepared_in_the_default_data_dir_gives_instructions(tmp_path, monkeypatch, stub):
  # TFDS's default data_dir, empty or holding an empty variant folder (a build that never ran)
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
  if stub:
    (tmp_path / "dsprites" / "2.0.0").mkdir(parents=True)
  with pytest.raises(data.DatasetNotPreparedError, match="tfds build dsprites"):
    data.get_dataset("dsprites")


def test_unknown_tfds_name_is_named_with_close_matches():
  with pytest.raises(ValueError, match=r"TFDS knows no dataset 'dsprits'.*dsprites"):
    data.get_dataset("dsprits")


def test_procedural_size_is_validated():
  with pytest.raises(ValueError, match="size must be an integer >= 8"):
    data.get_dataset("sprites", size=0)
