"""Objectives of the autoencoder family.

- `ae`: reconstruction of the deterministic code.
- `beta_vae` (Higgins et al. 2017): rec + beta * KL(q(z|x) || N(0, I)).
- `beta_tcvae` (Chen et al. 2018): rec + alpha * index-code MI + beta * total correlation
  + gamma * dimension-wise KL, with minibatch-weighted sampling (MWS) estimates of
  log q(z) and log prod_j q(z_j) using the dataset size N.
- `iwae` (Burda et al. 2016): -E[logsumexp_i(log p(x, z_i) - log q(z_i|x)) - log k];
  with k = 1 it is the single-sample ELBO.

- `qlae` (Hsu et al. 2023): quantized latents; loss = mean per-pixel BCE of the decoded
  straight-through code + w_q mean(sg(z) - q)^2 (moves the codebook) + w_c mean(z -
  sg(q))^2 (commitment), as the paper's public code (its BCE is a mean over pixels).
  Weight decay (AdamW, 0.1) is the optimizer's traced `weight_decay`.

Reconstruction: Bernoulli likelihood (sigmoid cross-entropy summed over pixels) or
Gaussian with unit variance (`likelihood="gaussian"`, sum of squared errors / 2).
Losses are means over the batch of per-image sums.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lsx.latents import gaussian_kl, gaussian_log_density


class Objective(NamedTuple):
  name: str
  loss: Callable  # (params, images, rng, hp) -> (loss, aux)
  hp_defaults: dict  # every traced hyperparameter this objective reads, with defaults
  bottleneck: str  # which bottleneck it needs


def neg_log_likelihood(logits, x, likelihood: str = "bernoulli"):
  """-log p(x|z) per image, summed over pixels. logits/x [..., H, W, C]."""
  if likelihood == "bernoulli":
    nll = optax.sigmoid_binary_cross_entropy(logits, x)
  elif likelihood == "gaussian":
    nll = 0.5 * (jax.nn.sigmoid(logits) - x) ** 2 + 0.5 * math.log(2 * math.pi)
  else:
    raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")
  return nll.reshape(nll.shape[:-3] + (-1,)).sum(-1)


def _ae(model, likelihood):
  def loss(params, x, rng, hp):
    del rng, hp
    z = model.represent(params, x)
    rec = neg_log_likelihood(model.decode(params, z), x, likelihood).mean()
    return rec, {"rec": rec}
  return loss


def _beta_vae(model, likelihood):
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


def _beta_tcvae(model, likelihood, dataset_size):
  def loss(params, x, rng, hp):
    stats = model.encode(params, x)
    z = model.bottleneck.sample(stats, rng)
    rec = neg_log_likelihood(model.decode(params, z), x, likelihood).mean()
    mi, tc, dwkl = (t.mean() for t in tcvae_terms(z, stats["mean"], stats["logvar"], dataset_size))
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


def _iwae(model, likelihood, k):
  def loss(params, x, rng, hp):
    del hp
    bound, _ = iwae_bound(model, params, x, rng, k, likelihood)
    lk = bound.mean()
    return -lk, {"iwae_bound": lk}
  return loss


def _qlae(model, likelihood):
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


OBJECTIVES = {
    "ae": ({}, "deterministic"),
    "beta_vae": ({"beta": 1.0}, "gaussian"),
    "beta_tcvae": ({"alpha": 1.0, "beta": 6.0, "gamma": 1.0}, "gaussian"),
    "iwae": ({}, "gaussian"),
    "qlae": ({"quantization_weight": 0.01, "commitment_weight": 0.01}, "quantized"),
}


def make_objective(name: str, model, likelihood: str = "bernoulli", iwae_k: int = 5,
                   dataset_size: int = 1) -> Objective:
  """Build an objective by key. Static options (k, dataset size) are Python values."""
  if name not in OBJECTIVES:
    raise ValueError(f"Unknown objective {name!r}; choose one of {sorted(OBJECTIVES)}.")
  defaults, needs = OBJECTIVES[name]
  if model.bottleneck.name != needs:
    raise ValueError(f"Objective {name!r} needs a {needs!r} bottleneck, the model has "
                     f"{model.bottleneck.name!r}; set config.model.bottleneck='{needs}'.")
  if name == "ae":
    fn = _ae(model, likelihood)
  elif name == "beta_vae":
    fn = _beta_vae(model, likelihood)
  elif name == "qlae":
    fn = _qlae(model, likelihood)
  elif name == "beta_tcvae":
    fn = _beta_tcvae(model, likelihood, float(dataset_size))
  else:
    if int(iwae_k) < 1:
      raise ValueError(f"iwae_k must be >= 1, got {iwae_k}.")
    fn = _iwae(model, likelihood, int(iwae_k))
  return Objective(name, fn, dict(defaults), needs)
