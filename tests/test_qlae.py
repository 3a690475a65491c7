"""QLAE: the quantizer, the straight-through gradient, the loss terms, a training run."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lsx import latents, models
from conftest import tiny_config


def test_quantizer_maps_to_codebook_values():
  bn = latents.make_quantized(10)
  p = bn.init(3)
  np.testing.assert_allclose(p["codebook"][1], np.linspace(-0.5, 0.5, 10), atol=1e-7)
  z = jax.random.normal(jax.random.key(0), (50, 3))
  s = bn.stats(z, p)
  for j in range(3):
    cb = np.asarray(p["codebook"][j])
    assert np.all(np.isin(np.asarray(s["q"][:, j]), cb))
    nearest = cb[np.argmin(np.abs(np.asarray(z[:, j])[:, None] - cb[None]), 1)]
    np.testing.assert_array_equal(np.asarray(s["q"][:, j]), nearest)
  np.testing.assert_allclose(s["z_hat"], s["q"], atol=1e-6)  # forward value is q


def test_straight_through_passes_gradients_unchanged():
  bn = latents.make_quantized(5)
  p = bn.init(4)
  z = jax.random.normal(jax.random.key(1), (6, 4))
  c = jax.random.normal(jax.random.key(2), (6, 4))
  g = jax.grad(lambda z: jnp.sum(bn.stats(z, p)["z_hat"] * c))(z)
  np.testing.assert_allclose(g, c, atol=1e-6)
  # and no gradient reaches the codebook through the straight-through code
  gcb = jax.grad(lambda p: jnp.sum(bn.stats(z, p)["z_hat"] * c))(p)
  assert float(jnp.abs(gcb["codebook"]).max()) == 0.0


@pytest.fixture(scope="module")
def qlae():
  model = models.make_autoencoder((16, 16, 1), 4, "mlp", "quantized", hidden=(32,))
  obj = models.make_objective("qlae", model)
  params = model.init(jax.random.key(0))
  x = (jax.random.uniform(jax.random.key(1), (8, 16, 16, 1)) > 0.5).astype(jnp.float32)
  return model, obj, params, x


def test_qlae_loss_terms_equal_a_direct_computation(qlae):
  model, obj, params, x = qlae
  hp = {"quantization_weight": jnp.float32(0.3), "commitment_weight": jnp.float32(0.7)}
  loss, aux = obj.loss(params, x, jax.random.key(0), hp)
  from lsx.nn.autoencoders import MLPEncoder, MLPDecoder  # direct, without the bottleneck code
  z = MLPEncoder(4, hidden=(32,)).apply({"params": params["encoder"]}, x)
  cb = np.asarray(params["latent"]["codebook"])
  q = np.stack([cb[j][np.argmin(np.abs(np.asarray(z)[:, j:j + 1] - cb[j][None]), 1)]
                for j in range(4)], 1)
  logits = MLPDecoder((16, 16, 1), hidden=(32,)).apply({"params": params["decoder"]}, q)
  logits, x = np.asarray(logits), np.asarray(x)
  bce = np.mean(np.maximum(logits, 0) - logits * x + np.log1p(np.exp(-np.abs(logits))))
  mse = np.mean((np.asarray(z) - q) ** 2)
  assert float(aux["rec"]) == pytest.approx(bce, rel=1e-5)
  assert float(aux["quantization"]) == pytest.approx(mse, rel=1e-5)
  assert float(aux["commitment"]) == pytest.approx(mse, rel=1e-5)
  assert float(loss) == pytest.approx(bce + 0.3 * mse + 0.7 * mse, rel=1e-5)


def test_codebook_moves_only_by_the_quantization_term(qlae):
  model, obj, params, x = qlae
  g = lambda wq, wc: jax.grad(lambda p: obj.loss(p, x, jax.random.key(0), {
      "quantization_weight": jnp.float32(wq), "commitment_weight": jnp.float32(wc)})[0])(params)
  assert float(jnp.abs(g(0.0, 1.0)["latent"]["codebook"]).max()) == 0.0
  assert float(jnp.abs(g(1.0, 0.0)["latent"]["codebook"]).max()) > 0.0
  # the commitment term reaches the encoder, the quantization term does not
  enc = lambda t: max(float(jnp.abs(l).max()) for l in jax.tree.leaves(t["encoder"]))
  assert enc(jax.tree.map(lambda a, b: a - b, g(0.0, 1.0), g(0.0, 0.0))) > 0.0
  assert enc(jax.tree.map(lambda a, b: a - b, g(1.0, 0.0), g(0.0, 0.0))) == 0.0


def test_qlae_trains_with_adamw_and_scores_as_discrete(tmp_path):
  from lsx import train as lt
  c = tiny_config(**{"objective.name": "qlae", "optim.name": "adamw", "optim.grad_clip": 1.0})
  with c.unlocked():
    c.hp = dict(lr=1e-3, weight_decay=0.1, quantization_weight=0.01, commitment_weight=0.01)
  state, setup = lt.train(c, str(tmp_path), write_figures=False, print_fn=lambda s: None)
  rows = [l for l in open(tmp_path / "metrics.jsonl")]
  assert len(rows) == 4 and "quantization" in rows[-1]
  assert setup.model.bottleneck.discrete
  imgs, f = setup.dataset.sample(jax.random.key(0), 64)
  z = setup.model.represent(state.params, imgs)
  cb = np.asarray(state.params["latent"]["codebook"])
  assert all(np.all(np.isin(np.asarray(z[:, j]), cb[j])) for j in range(z.shape[1]))
