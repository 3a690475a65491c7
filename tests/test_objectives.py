import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lsx import latents, models
from lsx.models.objectives import iwae_bound, neg_log_likelihood, tcvae_terms

SHAPE = (16, 16, 1)


@pytest.fixture(scope="module")
def vae():
  model = models.make_autoencoder(SHAPE, 3, arch="mlp", hidden=(32,))
  params = model.init(jax.random.key(0))
  x = (jax.random.uniform(jax.random.key(1), (5,) + SHAPE) > 0.5).astype(jnp.float32)
  return model, params, x


def test_iwae_k1_equals_single_sample_elbo(vae):
  model, params, x = vae
  obj = models.make_objective("iwae", model, iwae_k=1)
  rng = jax.random.key(3)
  loss, aux = obj.loss(params, x, rng, {})
  # direct ELBO with the same sample: log p(x|z) + log p(z) - log q(z|x)
  s = model.encode(params, x)
  z = s["mean"] + jnp.exp(0.5 * s["logvar"]) * jax.random.normal(rng, (1,) + s["mean"].shape)[0]
  elbo = (-neg_log_likelihood(model.decode(params, z), x)
          + latents.gaussian_log_density(z, 0.0, 0.0).sum(-1)
          - latents.gaussian_log_density(z, s["mean"], s["logvar"]).sum(-1)).mean()
  np.testing.assert_allclose(-loss, elbo, rtol=1e-5)


def test_iwae_k1_is_unbiased_for_the_analytic_elbo_and_grows_with_k(vae):
  model, params, x = vae
  # average over many draws: L_1 -> analytic ELBO = -(rec + KL); L_k >= L_1 on average
  keys = jax.random.split(jax.random.key(0), 400)
  l1 = jax.vmap(lambda k: iwae_bound(model, params, x, k, 1)[0].mean())(keys).mean()
  l8 = jax.vmap(lambda k: iwae_bound(model, params, x, k, 8)[0].mean())(keys[:50]).mean()
  vae_obj = models.make_objective("beta_vae", model)
  recs = jax.vmap(lambda k: vae_obj.loss(params, x, k, {"beta": 1.0})[1]["rec"])(keys).mean()
  kl = latents.gaussian_kl(*[model.encode(params, x)[k] for k in ("mean", "logvar")]).mean()
  np.testing.assert_allclose(l1, -(recs + kl), rtol=2e-3)
  assert l8 > l1


def test_beta0_vae_equals_ae_loss_on_the_mean(vae):
  model, params, x = vae
  # make the posterior a point mass: logvar bias -> -60 so the sample is the mean
  params = jax.tree.map(lambda a: a, params)
  last = sorted(k for k in params["encoder"] if k.startswith("Dense"))[-1]
  b = params["encoder"][last]["bias"]
  params["encoder"][last]["bias"] = b.at[3:].set(-60.0)
  params["encoder"][last]["kernel"] = params["encoder"][last]["kernel"].at[:, 3:].set(0.0)
  l_vae, _ = models.make_objective("beta_vae", model).loss(params, x, jax.random.key(0), {"beta": 0.0})
  rec = neg_log_likelihood(model.decode(params, model.represent(params, x)), x).mean()
  np.testing.assert_allclose(l_vae, rec, rtol=1e-6)
  # and the 'ae' objective on the same networks with a deterministic bottleneck (which
  # reads the first half of the encoder output as the code) gives that loss too
  ae_model = model._replace(bottleneck=latents.deterministic,
                            encode=lambda p, xx: {"mean": model.encode(p, xx)["mean"]})
  l_ae, _ = models.make_objective("ae", ae_model).loss(params, x, jax.random.key(0), {})
  np.testing.assert_allclose(l_ae, rec, rtol=1e-6)


def test_tcvae_decomposition_sums_to_log_ratio():
  rng = np.random.default_rng(0)
  z, mean = rng.normal(size=(2, 6, 3)).astype(np.float32)
  logvar = rng.normal(size=(6, 3)).astype(np.float32) * 0.3
  mi, tc, dw = tcvae_terms(z, mean, logvar, 1000.0)
  direct = (latents.gaussian_log_density(z, mean, logvar).sum(-1)
            - latents.gaussian_log_density(z, 0.0, 0.0).sum(-1))
  np.testing.assert_allclose(mi + tc + dw, direct, rtol=1e-5, atol=1e-5)
  # MWS estimate of log q(z_i) against a direct loop
  ln = np.log(1000.0 * 6)
  for i in range(6):
    logs = [latents.gaussian_log_density(z[i], mean[j], logvar[j]).sum() for j in range(6)]
    log_qz = np.log(np.sum(np.exp(np.array(logs, np.float64)))) - ln
    log_qz_x = latents.gaussian_log_density(z[i], mean[i], logvar[i]).sum()
    np.testing.assert_allclose(mi[i], log_qz_x - log_qz, rtol=1e-4, atol=1e-4)


def test_tcvae_with_unit_weights_matches_elbo_in_expectation(vae):
  model, params, x = vae
  obj = models.make_objective("beta_tcvae", model, dataset_size=10)
  hp = {"alpha": 1.0, "beta": 1.0, "gamma": 1.0}
  loss, aux = obj.loss(params, x, jax.random.key(0), hp)
  np.testing.assert_allclose(loss, aux["rec"] + aux["mi"] + aux["tc"] + aux["dwkl"], rtol=1e-6)
  # MI + TC + dim-wise KL = log q(z|x) - log p(z) per sample, whose mean over z ~ q(z|x)
  # is KL(q || p): averaged over draws, the loss is the negative ELBO rec + KL (the
  # beta-VAE loss at beta = 1, which uses the same sample for rec and the analytic KL)
  elbo = models.make_objective("beta_vae", model)
  keys = jax.random.split(jax.random.key(1), 2000)
  tc_l = jax.vmap(lambda k: obj.loss(params, x, k, hp)[0])(keys)
  el_l = jax.vmap(lambda k: elbo.loss(params, x, k, {"beta": 1.0})[0])(keys)
  diff = np.asarray(tc_l - el_l)
  assert abs(diff.mean()) < 4 * diff.std() / np.sqrt(len(diff)) + 1e-4
  assert diff.std() > 0  # a per-sample estimate, not the analytic KL


def test_hyperparameters_are_traced(vae):
  model, params, x = vae
  obj = models.make_objective("beta_vae", model)
  f = jax.jit(lambda beta: obj.loss(params, x, jax.random.key(0), {"beta": beta})[0])
  betas = jnp.array([0.0, 1.0, 4.0])
  swept = jax.vmap(f)(betas)
  for b, l in zip(betas, swept):
    np.testing.assert_allclose(l, f(b), rtol=1e-5)
  assert swept[2] > swept[1] > swept[0]


def test_objective_bottleneck_mismatch_is_explained(vae):
  model, _, _ = vae
  with pytest.raises(ValueError, match="needs a 'deterministic' bottleneck"):
    models.make_objective("ae", model)
  with pytest.raises(ValueError, match="Unknown objective"):
    models.make_objective("vqvae", model)
