"""Objectives of the autoencoder family.

- `ae`: reconstruction of the deterministic code.
- `beta_vae` (Higgins et al. 2017): rec + beta * KL(q(z|x) || N(0, I)).
- `beta_tcvae` (Chen et al. 2018): rec + alpha * index-code MI + beta * total correlation
  + gamma * dimension-wise KL, with minibatch-weighted sampling (MWS) estimates of
  log q(z) and log prod_j q(z_j) using the dataset size N.
- `iwae` (Burda et al. 2016): -E[logsumexp_i(log p(x, z_i) - log q(z_i|x)) - log k];
  with k = 1 it is the single-sample ELBO.

- `factor_vae` (Kim & Mnih 2018): rec + KL + gamma * total correlation, the TC read
  off a discriminator trained as a second player (`lsx.objective.Player`).
- `qlae` (Hsu et al. 2023): quantized latents; loss = mean per-pixel BCE of the decoded
  straight-through code + w_q mean(sg(z) - q)^2 (moves the codebook) + w_c mean(z -
  sg(q))^2 (commitment), as the paper's public code (its BCE is a mean over pixels).
  Weight decay (AdamW, 0.1) is the optimizer's traced `weight_decay`.

Reconstruction: Bernoulli likelihood (sigmoid cross-entropy summed over pixels) or
Gaussian with unit variance (`likelihood="gaussian"`, sum of squared errors / 2).
Losses are means over the batch of per-image sums.

Each is registered in `REGISTRY` with its bottleneck and traced hyperparameter defaults;
`make_objective(name, model, **options)` returns an `lsx.objective.Objective` (see
docs/extending.md to add one).
"""
from __future__ import annotations

import math
from typing import Callable

import flax.linen as nn

import jax
import jax.numpy as jnp
import optax

from lsx.latents import gaussian_kl, gaussian_log_density
from lsx.objective import Objective, Player
from lsx.registry import Registry

REGISTRY = Registry("objective")


def neg_log_likelihood(logits, x, likelihood: str = "bernoulli"):
  """-log p(x|z) per image, summed over pixels. logits/x [..., H, W, C]."""
  if likelihood == "bernoulli":
    nll = optax.sigmoid_binary_cross_entropy(logits, x)
  elif likelihood == "gaussian":
    nll = 0.5 * (jax.nn.sigmoid(logits) - x) ** 2 + 0.5 * math.log(2 * math.pi)
  else:
    raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")
  return nll.reshape(nll.shape[:-3] + (-1,)).sum(-1)


@REGISTRY.register("ae", bottleneck="deterministic", hp={})
def _ae(model, *, likelihood="bernoulli"):
  def loss(params, x, rng, hp):
    del rng, hp
    z = model.represent(params, x)
    rec = neg_log_likelihood(model.decode(params, z), x, likelihood).mean()
    return rec, {"rec": rec}
  return loss


@REGISTRY.register("beta_vae", bottleneck="gaussian", hp={"beta": 1.0})
def _beta_vae(model, *, likelihood="bernoulli"):
  def loss(params, x, rng, hp):
    stats = model.encode(params, x)
    z = model.bottleneck.sample(stats, rng)
    rec = neg_log_likelihood(model.decode(params, z), x, likelihood).mean()
    kl = gaussian_kl(stats["mean"], stats["logvar"]).mean()
    return rec + hp["beta"] * kl, {"rec": rec, "kl": kl, "elbo": -(rec + kl)}
  return loss


def tcvae_terms(z, mean, logvar, dataset_size):
  """Per-sample (index-code MI, total correlation, dimension-wise KL) with MWS.

  log q(z_i) ~= logsumexp_j log q(z_i | x_j) - log(N M), and likewise per dimension.
  """
  m = z.shape[0]
  log_qz_x = gaussian_log_density(z, mean, logvar).sum(-1)  # [M]
  log_pz = gaussian_log_density(z, 0.0, 0.0).sum(-1)
  mat = gaussian_log_density(z[:, None, :], mean[None], logvar[None])  # [M, M, d]
  log_norm = jnp.log(dataset_size * m)
  log_qz = jax.nn.logsumexp(mat.sum(-1), axis=1) - log_norm
  log_prod_qzj = (jax.nn.logsumexp(mat, axis=1) - log_norm).sum(-1)
  return log_qz_x - log_qz, log_qz - log_prod_qzj, log_prod_qzj - log_pz


@REGISTRY.register("beta_tcvae", bottleneck="gaussian",
                   hp={"alpha": 1.0, "beta": 6.0, "gamma": 1.0})
def _beta_tcvae(model, *, likelihood="bernoulli", dataset_size=1):
  def loss(params, x, rng, hp):
    stats = model.encode(params, x)
    z = model.bottleneck.sample(stats, rng)
    rec = neg_log_likelihood(model.decode(params, z), x, likelihood).mean()
    mi, tc, dwkl = (t.mean() for t in tcvae_terms(z, stats["mean"], stats["logvar"],
                                                             float(dataset_size)))
    total = rec + hp["alpha"] * mi + hp["beta"] * tc + hp["gamma"] * dwkl
    kl = gaussian_kl(stats["mean"], stats["logvar"]).mean()
    return total, {"rec": rec, "kl": kl, "mi": mi, "tc": tc, "dwkl": dwkl}
  return loss


def iwae_bound(model, params, x, rng, k: int, likelihood="bernoulli"):
  """Per-image importance-weighted bound L_k and its log-weights [k, n]."""
  stats = model.encode(params, x)
  mean, logvar = stats["mean"], stats["logvar"]
  eps = jax.random.normal(rng, (k,) + mean.shape, mean.dtype)
  z = mean + jnp.exp(0.5 * logvar) * eps  # [k, n, d]
  logits = model.decode(params, z.reshape((-1, z.shape[-1])))
  logits = logits.reshape((k,) + x.shape)
  log_px_z = -neg_log_likelihood(logits, x[None], likelihood)
  log_w = (log_px_z + gaussian_log_density(z, 0.0, 0.0).sum(-1)
           - gaussian_log_density(z, mean, logvar).sum(-1))
  return jax.nn.logsumexp(log_w, axis=0) - math.log(k), log_w


def importance_weighted_ll(model, params, images, rng, k: int = 50, *, chunk: int = 50,
                          likelihood="bernoulli"):
  """The importance-weighted log-likelihood estimate log p(x) >= L_k of each image [n]
  (numpy, nats; Burda et al. 2016 evaluate with k = 5000, the potential-flow paper's
  held-out likelihood with k >= 50): `iwae_bound` jitted once, over chunks of `chunk`
  images with the key folded by chunk index."""
  import numpy as np
  if int(k) < 1:
    raise ValueError(f"k must be >= 1, got {k}.")
  fn = jax.jit(lambda p, x, r: iwae_bound(model, p, x, r, int(k), likelihood)[0])
  out = [np.asarray(fn(params, images[i:i + chunk], jax.random.fold_in(rng, i)))
         for i in range(0, images.shape[0], int(chunk))]
  return np.concatenate(out)


@REGISTRY.register("iwae", bottleneck="gaussian", hp={})
def _iwae(model, *, likelihood="bernoulli", iwae_k=5):
  k = int(iwae_k)
  if k < 1:
    raise ValueError(f"iwae_k must be >= 1, got {iwae_k}.")

  def loss(params, x, rng, hp):
    del hp
    bound, _ = iwae_bound(model, params, x, rng, k, likelihood)
    lk = bound.mean()
    return -lk, {"iwae_bound": lk}
  return loss


@REGISTRY.register("qlae", bottleneck="quantized",
                   hp={"quantization_weight": 0.01, "commitment_weight": 0.01})
def _qlae(model, *, likelihood="bernoulli"):
  def loss(params, x, rng, hp):
    del rng
    stats = model.encode(params, x)
    z, q = stats["z"], stats["q"]
    npix = math.prod(x.shape[1:])
    rec = neg_log_likelihood(model.decode(params, stats["z_hat"]), x, likelihood).mean() / npix
    quant = jnp.mean((jax.lax.stop_gradient(z) - q) ** 2)
    commit = jnp.mean((z - jax.lax.stop_gradient(q)) ** 2)
    total = rec + hp["quantization_weight"] * quant + hp["commitment_weight"] * commit
    return total, {"rec": rec, "quantization": quant, "commitment": commit}
  return loss




class Discriminator(nn.Module):
  """FactorVAE's discriminator: an MLP of `depth` LeakyReLU(0.2) layers of `width` units
  with two logits (0: a sample of q(z), 1: a sample of prod_j q(z_j))."""
  width: int = 1000
  depth: int = 6

  @nn.compact
  def __call__(self, z):
    for _ in range(self.depth):
      z = nn.leaky_relu(nn.Dense(self.width)(z), 0.2)
    return nn.Dense(2)(z)


def permute_dims(z, rng):
  """Each latent dimension shuffled across the batch independently: samples of
  prod_j q(z_j) from samples of q(z) (Kim & Mnih 2018, Alg. 1)."""
  keys = jax.random.split(rng, z.shape[1])
  return jax.vmap(lambda col, k: jax.random.permutation(k, col), in_axes=(1, 0), out_axes=1)(z, keys)


@REGISTRY.register("factor_vae", bottleneck="gaussian", hp={"gamma": 10.0})
def _factor_vae(model, *, likelihood="bernoulli", disc_width=1000, disc_depth=6):
  """FactorVAE (Kim & Mnih 2018): rec + KL + gamma * TC, TC estimated by a discriminator
  as E_q(z)[logit_0(z) - logit_1(z)]; the discriminator (a `Player` with its own Adam,
  lr 1e-4, betas (0.5, 0.9) as the paper) tells samples of q(z) from dimension-permuted
  ones. The batch is split in halves: the first half's codes are the q(z) samples, the
  second half's, permuted, the prod_j q(z_j) samples (the paper draws a second batch)."""
  disc = Discriminator(int(disc_width), int(disc_depth))

  def codes(params, x, rng):
    stats = model.encode(params, x)
    return stats, model.bottleneck.sample(stats, rng)

  def loss(params, x, rng, hp):
    stats, z = codes(params, x, rng)
    rec = neg_log_likelihood(model.decode(params, z), x, likelihood).mean()
    kl = gaussian_kl(stats["mean"], stats["logvar"]).mean()
    logits = disc.apply({"params": jax.lax.stop_gradient(params["discriminator"])}, z)
    tc = jnp.mean(logits[:, 0] - logits[:, 1])
    return rec + kl + hp["gamma"] * tc, {"rec": rec, "kl": kl, "tc": tc}

  def disc_loss(params, x, rng, hp):
    del hp
    _, z = codes(jax.lax.stop_gradient(params), x, rng)
    half = z.shape[0] // 2
    real, perm = z[:half], permute_dims(z[half:2 * half], jax.random.fold_in(rng, 1))
    logits = disc.apply({"params": params["discriminator"]}, jnp.concatenate([real, perm]))
    labels = jnp.concatenate([jnp.zeros(half, jnp.int32), jnp.ones(half, jnp.int32)])
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return ce, {"disc_ce": ce, "disc_acc": jnp.mean(jnp.argmax(logits, 1) == labels)}

  def init(rng):
    k1, k2 = jax.random.split(rng)
    params = model.init(k1)
    params["discriminator"] = disc.init(k2, jnp.zeros((1, model.latent_dim)))["params"]
    return params

  return loss, init, (Player("discriminator", disc_loss, lr=1e-4, b1=0.5, b2=0.9),)


OBJECTIVES = REGISTRY  # name -> entry (info: hp defaults, bottleneck)


def make_objective(name: str, model, *, dataset_size: int = 1, **options) -> Objective:
  """The registered objective `name` for `model`, as an `lsx.objective.Objective`.

  `options` are the factory's keyword options (e.g. `likelihood`, `iwae_k`); the dataset
  size reaches the factories that take it (beta-TCVAE's minibatch-weighted sampling)."""
  entry = REGISTRY.get(name)
  needs = entry.info["bottleneck"]
  if model.bottleneck.name != needs:
    raise ValueError(f"Objective {name!r} needs a {needs!r} bottleneck, the model has "
                     f"{model.bottleneck.name!r}; set config.model.bottleneck='{needs}'.")
  if "dataset_size" in entry.options():
    options["dataset_size"] = dataset_size
  out = REGISTRY.build(name, model, options=options)
  loss, init, players = out if isinstance(out, tuple) else (out, model.init, ())
  return Objective(name, init, loss, dict(entry.info["hp"]), players,
                   info={"bottleneck": needs, "model": model})
