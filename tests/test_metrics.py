"""Metrics against reference values, closed forms, invariances and edge cases."""
import json
import math
import os
import sys
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lsx.data
from lsx import metrics as lm
from lsx.metrics import _info

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "reference"))
from make_reference import cases, dci_case  # noqa: E402

with open(os.path.join(os.path.dirname(__file__), "reference", "metrics_reference.json")) as _f:
  REF = json.load(_f)


@pytest.fixture(scope="module")
def data():
  return cases()


@pytest.mark.parametrize("name", ["disentangled", "entangled", "noise", "fewer_latents", "discrete"])
def test_infomec_and_mig_match_reference(data, name):
  f, cs = data
  ref = REF[name]
  got = lm.infomec(cs[name], f, discrete_latents=name == "discrete")
  assert abs(got["infom"] - ref["infom"]) <= 1e-2
  assert abs(got["infoe"] - ref["infoe"]) <= 2e-2
  if math.isnan(ref["infoc"]):  # the reference divides 0 by 0 for uncovered sources
    assert np.isfinite(got["infoc"])
  else:
    assert abs(got["infoc"] - ref["infoc"]) <= 1e-2
  np.testing.assert_allclose(got["nmi"], np.array(ref["nmi"]), atol=1e-2)
  assert abs(lm.mig(cs[name], f) - ref["mig"]) <= 2e-3


def test_dci_matches_reference():
  got = lm.dci(*dci_case(), estimator="sklearn")  # the default (JAX trees): test_gbt.py
  for k in ("disentanglement", "completeness", "informativeness_test"):
    assert abs(got[k] - REF["dci"][k]) <= 1e-2, k


def test_ksg_matches_sklearn_on_one_pair():
  from sklearn.feature_selection import mutual_info_classif
  rng = np.random.default_rng(3)
  y = rng.integers(0, 7, 1500)
  c = y + 0.5 * rng.normal(size=1500)
  c = (c - c.mean()) / c.std()
  ours = float(_info.ksg_mi_cd(jnp.asarray(c, jnp.float32), jnp.asarray(y, jnp.int32), 8, 10))
  ref = mutual_info_classif(c[:, None], y, n_neighbors=10, random_state=0)[0]
  assert abs(ours - ref) < 2e-3


def test_closed_forms(data):
  f, _ = data
  rng = np.random.default_rng(1)
  # a latent equal to a factor: NMI 1 for that pair (exactly, as a discrete latent)
  r = lm.infomec(f[:, :2].astype(np.float32), f, discrete_latents=True)
  assert r["nmi"][0, 0] == pytest.approx(1.0, abs=1e-5)
  assert r["nmi"][1, 1] == pytest.approx(1.0, abs=1e-5)
  rc = lm.infomec(f.astype(np.float32) + 1e-3 * rng.normal(size=f.shape), f)
  assert np.all(np.diag(rc["nmi"]) > 0.95)
  # independent noise: NMI about 0
  rn = lm.infomec(rng.normal(size=(f.shape[0], 3)), f)
  assert rn["nmi"].max() < 0.02
  assert lm.mig(rng.normal(size=(f.shape[0], 3)), f) < 0.02


def test_invariances(data):
  f, cs = data
  z = cs["entangled"]
  base = lm.infomec(z, f)
  base_mig, base_dci = lm.mig(z, f), lm.dci(z[:1000], f[:1000], z[1000:], f[1000:],
                                            estimator="logistic")
  perm = np.array([3, 0, 5, 1, 4, 2])
  fperm = np.array([2, 0, 3, 1])
  for zz, ff in [(z[:, perm], f), (z, f[:, fperm]), (z * np.linspace(0.5, 3, 6) + 7.0, f)]:
    r = lm.infomec(zz, ff)
    assert abs(r["infom"] - base["infom"]) < 2e-3
    assert abs(r["infoc"] - base["infoc"]) < 2e-3
    assert abs(lm.mig(zz, ff) - base_mig) < 1e-5
    d = lm.dci(zz[:1000], ff[:1000], zz[1000:], ff[1000:], estimator="logistic")
    assert abs(d["disentanglement"] - base_dci["disentanglement"]) < 2e-3
    assert abs(d["completeness"] - base_dci["completeness"]) < 2e-3


def test_degenerate_latents_give_numbers_not_nan(data):
  f, cs = data
  n = f.shape[0]
  z = cs["disentangled"][:, :2]
  for zz in [np.zeros((n, 3)), np.concatenate([z, z], 1), z[:, :1], np.ones((n, 1))]:
    r = lm.infomec(zz, f)
    assert all(np.isfinite(r[k]) for k in ("infom", "infoc", "infoe"))
    assert np.isfinite(lm.mig(zz, f))
    d = lm.dci(zz[:500], f[:500], zz[500:1000], f[500:1000], estimator="logistic")
    assert np.isfinite(d["disentanglement"]) and np.isfinite(d["completeness"])
    assert np.isfinite(lm.sap(zz, f, continuous_factors=True)["sap"])
  assert lm.infomec(np.zeros((n, 3)), f)["infom"] == 0.0


def test_bad_input_is_named():
  f = np.zeros((10, 2), int)
  with pytest.raises(ValueError, match="same number of samples"):
    lm.mig(np.zeros((9, 3)), f)
  with pytest.raises(ValueError, match="at least 2 samples"):
    lm.infomec(np.zeros((0, 3)), np.zeros((0, 2), int))
  with pytest.raises(ValueError, match="shape \\[n, d\\]"):
    lm.mig(np.zeros(10), f)
  with pytest.raises(ValueError, match="NaN"):
    lm.mig(np.full((10, 3), np.nan), f)
  with pytest.raises(ValueError, match="every factor is constant"):
    lm.infomec(np.random.rand(10, 3), f)
  with pytest.raises(ValueError, match="Unknown DCI estimator"):
    lm.dci(np.random.rand(10, 3), f + np.arange(10)[:, None] % 2,
           np.random.rand(10, 3), f, estimator="forest")


def test_vmapped_over_members_equals_one_by_one(data):
  f, cs = data
  zs = np.stack([cs["disentangled"][:, :5], cs["entangled"][:, :5]]).astype(np.float32)
  fn = lm.make_infomec(f)
  both = jax.jit(jax.vmap(fn))(zs)
  mig_both = jax.vmap(lm.make_mig(f))(zs)["mig"]
  for i in range(2):
    one = lm.infomec(zs[i], f)
    assert abs(float(both["infom"][i]) - one["infom"]) < 1e-5
    assert abs(float(both["infoc"][i]) - one["infoc"]) < 1e-5
    assert abs(float(both["infoe"][i]) - one["infoe"]) < 1e-3
    assert abs(float(mig_both[i]) - lm.mig(zs[i], f)) < 1e-6


def test_sap_continuous_closed_form_and_discrete(data):
  f, cs = data
  z = cs["disentangled"]
  gap, s = lm.sap_continuous(z, f)
  c = np.corrcoef(np.concatenate([z, f], 1).T)[:z.shape[1], z.shape[1]:] ** 2
  np.testing.assert_allclose(np.asarray(s), c, atol=1e-4)
  srt = np.sort(c, 0)
  assert float(gap) == pytest.approx(np.mean(srt[-1] - srt[-2]), abs=1e-4)
  r = lm.sap(z[:1000], f[:1000], z[1000:], f[1000:])
  assert 0.3 < r["sap"] <= 1.0
  dup = lm.sap(np.repeat(z[:, :1], 2, 1)[:1000], f[:1000], np.repeat(z[:, :1], 2, 1)[1000:],
               f[1000:])
  assert dup["sap"] == pytest.approx(0.0)  # two identical latents leave no gap


class _FactorsAsImages:
  """A dataset whose 'images' are its factor vectors: an oracle representation."""
  factor_sizes = (4, 5, 6)
  factor_names = ("a", "b", "c")
  image_shape = (3,)
  num_examples = 4 * 5 * 6

  def sample_factors(self, rng, n):
    keys = jax.random.split(rng, 3)
    return jnp.stack([jax.random.randint(k, (n,), 0, s) for k, s in
                      zip(keys, self.factor_sizes)], 1)

  def render(self, factors):
    return factors.astype(jnp.float32)

  def sample(self, rng, n):
    f = self.sample_factors(rng, n)
    return self.render(f), f


def test_intervention_scores_are_perfect_for_the_oracle_and_not_for_a_mixture():
  ds = _FactorsAsImages()
  rng = jax.random.key(0)
  kw = dict(num_train=300, num_eval=150, batch_size=32)
  fv = lm.factor_vae_score(lambda x: x, ds, rng, num_variance_estimate=1000, **kw)
  assert fv["eval_accuracy"] == 1.0 and fv["num_active_dims"] == 3
  bv = lm.beta_vae_score(lambda x: x, ds, rng, **kw)
  assert bv["eval_accuracy"] == 1.0
  mix = jnp.asarray(np.random.default_rng(0).normal(size=(3, 3)), jnp.float32)
  fv_mix = lm.factor_vae_score(lambda x: x @ mix, ds, rng, num_variance_estimate=1000, **kw)
  assert fv_mix["eval_accuracy"] < 0.9
  with pytest.raises(ValueError, match="needs a dataset that renders images from factor"):
    lm.factor_vae_score(lambda x: x, SimpleNamespace(has_render=False), rng)
  assert lsx.data.renders(ds) and not lsx.data.renders(SimpleNamespace(has_render=True))


@pytest.mark.parametrize("factors, match", [
    (np.array([[0.5], [1.0], [2.0], [0.0]]), "integer class indices"),
    (np.array([[np.nan], [1.0], [2.0], [0.0]]), "integer class indices"),
])
def test_metric_inputs_that_are_not_labels_are_refused(factors, match):
  z = np.random.default_rng(0).normal(size=(4, 2))
  for fn in (lambda: lm.mig(z, factors), lambda: lm.infomec(z, factors)):
    with pytest.raises(ValueError, match=match):
      fn()
  # integer-valued floats are labels
  assert np.isfinite(lm.mig(z, np.array([[0.0], [1.0], [1.0], [0.0]])))


def test_latents_of_any_float64_scale_score_as_standardized():
  # InfoMEC, MIG and DCI are invariant to a per-latent affine map; the latents are
  # standardized in float64 first, so scales float32 cannot hold score as the unit-scale
  # latents. SAP (scale-dependent, as in disentanglement_lib) refuses them instead.
  rng = np.random.default_rng(0)
  f = rng.integers(0, 3, size=(300, 2))
  z = rng.normal(size=(300, 3))
  z[:, 0] += f[:, 0]
  for scale in (1e300, 1e-300):
    a, b = lm.infomec(z, f), lm.infomec(z * scale, f)
    assert all(abs(a[k] - b[k]) < 1e-4 for k in ("infom", "infoe", "infoc"))
    assert abs(lm.mig(z, f) - lm.mig(z * scale, f)) < 1e-6
  with pytest.raises(ValueError, match="beyond what float32"):
    lm.sap(z * 1e300, f, z * 1e300, f)


def test_metric_options_out_of_range_are_refused():
  rng = np.random.default_rng(0)
  z, f = rng.normal(size=(40, 3)), rng.integers(0, 3, size=(40, 2))
  with pytest.raises(ValueError, match="k=0 neighbours"):
    lm.infomec(z, f, k=0)
  zq = rng.integers(0, 5, size=(40, 3)).astype(np.float32)
  with pytest.raises(ValueError, match="a latent takes 5 distinct values"):
    lm.infomec(zq, f, discrete_latents=True, max_latent_values=3)
  # continuous SAP takes real-valued factors; the class-label metrics do not
  assert np.isfinite(lm.sap(z, rng.normal(size=(40, 2)), continuous_factors=True)["sap"])
  # a uniform importance row: completeness is 0, never a hair below
  d, c = lm.scores_from_importance(np.ones((3, 2)))
  assert 0.0 <= float(d) <= 1.0 and 0.0 <= float(c) <= 1.0


# --- sample quality without a download (lsx.metrics.sample_quality)

class _Bars:
  """A tiny rendered dataset: a bar at row a (4 values) of brightness b (5 values)."""
  factor_names, factor_sizes, num_examples = ("row", "brightness"), (4, 5), 20
  image_shape = (4, 4, 1)

  def index_to_factors(self, idx):
    idx = jnp.asarray(idx)
    return jnp.stack([idx // 5, idx % 5], 1)

  def render(self, f):
    f = jnp.asarray(f)
    rows = (jnp.arange(4)[None, :] == f[:, :1]).astype(jnp.float32)  # [n, 4]
    img = rows[:, :, None] * (0.2 + 0.2 * f[:, 1:2, None])
    return jnp.broadcast_to(img[..., None], (f.shape[0], 4, 4, 1))

  def sample(self, rng, n):
    k1, k2 = jax.random.split(rng)
    f = jnp.stack([jax.random.randint(k1, (n,), 0, 4), jax.random.randint(k2, (n,), 0, 5)], 1)
    return self.render(f), f


def test_sample_quality_tells_data_from_noise_and_a_collapsed_generator():
  from lsx.metrics import grid_oracle
  from lsx.metrics.sample_quality import sample_quality, total_variation
  ds = _Bars()
  oracle = grid_oracle(ds)
  real, _ = ds.sample(jax.random.key(5), 2000)
  q = sample_quality(real, oracle, ds, reference=2000)
  assert q["validity"] == 1.0 and q["tv_mean"] < 0.05
  noise = jax.random.uniform(jax.random.key(6), (500, 4, 4, 1))
  assert sample_quality(noise, oracle, ds)["validity"] == 0.0
  one_row = ds.render(jnp.stack([jnp.zeros(400, jnp.int32),
                                 jnp.arange(400, dtype=jnp.int32) % 5], 1))
  q = sample_quality(one_row, oracle, ds, reference=4000)
  assert q["validity"] == 1.0 and q["tv"]["row"] == pytest.approx(0.75, abs=0.03)
  assert q["tv"]["brightness"] < 0.05
  # total variation on closed cases
  assert total_variation([0, 0, 1, 1], [0, 1, 0, 1], 2) == 0.0
  assert total_variation([0, 0], [1, 1], 3) == 1.0
  assert total_variation([0, 1, 2, 2], [2, 2, 2, 2], 3) == pytest.approx(0.5)
