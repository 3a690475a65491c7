"""Scores that need interventions on the factors: the BetaVAE and FactorVAE scores.

Both follow disentanglement_lib (sizes included): observations are rendered from chosen
factors with the dataset's `render(factors)` and encoded with `represent(images) ->
latents`, in jitted chunks of votes.

- BetaVAE score (Higgins et al. 2017): a vote fixes one random factor k in two batches of
  `batch_size` random factor vectors; its feature is mean |z1 - z2| over the batch, its
  label k. Accuracy of scikit-learn's default `LogisticRegression` (train and eval).
- FactorVAE score (Kim & Mnih 2018): latents with nonzero variance (ddof=1, over
  `num_variance_estimate` samples) are active; a vote fixes factor k in one batch,
  divides the batch's per-latent variance by the global one and picks the argmin over
  active latents; the majority-vote classifier's accuracy on eval votes.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from lsx.data import require_render


def _require_render(dataset):
  require_render(dataset, "the BetaVAE and FactorVAE scores")


def _chunks(total: int, size: int):
  out, done = [], 0
  while done < total:
    out.append(min(size, total - done))
    done += out[-1]
  return out


def _intervened_factors(dataset, rng, batch_size):
  """One vote's factors: (k, factors1, factors2) with column k of factors2 copied from factors1."""
  sizes = dataset.factor_sizes
  k_idx, k1, k2 = jax.random.split(rng, 3)
  k = jax.random.randint(k_idx, (), 0, len(sizes))
  f1 = dataset.sample_factors(k1, batch_size)
  f2 = dataset.sample_factors(k2, batch_size)
  col = jnp.arange(len(sizes)) == k
  return k, f1, jnp.where(col[None], f1, f2)


def _encode(represent, dataset, factors):
  shape = factors.shape
  z = represent(dataset.render(factors.reshape(-1, shape[-1])))
  return z.reshape(shape[:-1] + z.shape[-1:])


def beta_vae_votes(represent: Callable, dataset, rng, num: int, batch_size: int = 64,
                   chunk: int = 64):
  """(features [num, d], labels [num]) for the BetaVAE score."""
  _require_render(dataset)

  @functools.partial(jax.jit, static_argnums=1)
  def make(rng, m):
    k, f1, f2 = jax.vmap(lambda r: _intervened_factors(dataset, r, batch_size))(
        jax.random.split(rng, m))
    z1, z2 = _encode(represent, dataset, f1), _encode(represent, dataset, f2)
    return jnp.mean(jnp.abs(z1 - z2), axis=1), k

  feats, labels = [], []
  for i, m in enumerate(_chunks(num, chunk)):
    f, k = make(jax.random.fold_in(rng, i), m)
    feats.append(np.asarray(f))
    labels.append(np.asarray(k))
  return np.concatenate(feats), np.concatenate(labels)


def beta_vae_score(represent: Callable, dataset, rng, *, num_train: int = 10000,
                   num_eval: int = 5000, batch_size: int = 64, seed: int = 0) -> dict:
  """BetaVAE score: dict(train_accuracy, eval_accuracy)."""
  from sklearn.linear_model import LogisticRegression

  k_train, k_eval = jax.random.split(rng)
  xt, yt = beta_vae_votes(represent, dataset, k_train, num_train, batch_size)
  xe, ye = beta_vae_votes(represent, dataset, k_eval, num_eval, batch_size)
  model = LogisticRegression(random_state=seed).fit(xt, yt)
  return {"train_accuracy": float(np.mean(model.predict(xt) == yt)),
          "eval_accuracy": float(np.mean(model.predict(xe) == ye))}


def _global_variances(represent, dataset, rng, num, chunk=4096):
  zs = []
  enc = jax.jit(lambda r, m: represent(dataset.sample(r, m)[0]), static_argnums=1)
  for i, m in enumerate(_chunks(num, chunk)):
    zs.append(np.asarray(enc(jax.random.fold_in(rng, i), m), np.float64))
  return np.var(np.concatenate(zs), axis=0, ddof=1)


def factor_vae_votes(represent: Callable, dataset, rng, num: int, global_var, active,
                     batch_size: int = 64, chunk: int = 64):
  """Vote matrix [F, d]: votes[k, j] counts votes with fixed factor k whose argmin is j
  (j indexes the active latents, as in disentanglement_lib)."""
  _require_render(dataset)
  gv = jnp.asarray(np.where(active, global_var, 1.0), jnp.float32)
  act = jnp.asarray(active)

  @functools.partial(jax.jit, static_argnums=1)
  def make(rng, m):
    k, f1, _ = jax.vmap(lambda r: _intervened_factors(dataset, r, batch_size))(
        jax.random.split(rng, m))
    # every row of the batch shares factor k with the batch's first row
    f = jnp.where((jnp.arange(f1.shape[-1]) == k[:, None])[:, None, :], f1[:, :1, :], f1)
    z = _encode(represent, dataset, f)
    local = jnp.var(z, axis=1, ddof=1)
    ratio = jnp.where(act[None], local / gv[None], jnp.inf)
    # position among active latents of the argmin
    j = jnp.cumsum(act)[jnp.argmin(ratio, axis=1)] - 1
    return k, j

  votes = np.zeros((len(dataset.factor_sizes), len(active)), np.int64)
  for i, m in enumerate(_chunks(num, chunk)):
    k, j = make(jax.random.fold_in(rng, i), m)
    np.add.at(votes, (np.asarray(k), np.asarray(j)), 1)
  return votes


def factor_vae_score(represent: Callable, dataset, rng, *, num_train: int = 10000,
                     num_eval: int = 5000, batch_size: int = 64,
                     num_variance_estimate: int = 10000) -> dict:
  """FactorVAE score: dict(train_accuracy, eval_accuracy, num_active_dims)."""
  _require_render(dataset)
  k_var, k_train, k_eval = jax.random.split(rng, 3)
  gv = _global_variances(represent, dataset, k_var, num_variance_estimate)
  active = gv > 0.0
  if not active.any():
    return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
  vt = factor_vae_votes(represent, dataset, k_train, num_train, gv, active, batch_size)
  ve = factor_vae_votes(represent, dataset, k_eval, num_eval, gv, active, batch_size)
  classifier = np.argmax(vt, axis=0)
  cols = np.arange(vt.shape[1])
  return {"train_accuracy": float(vt[classifier, cols].sum() / vt.sum()),
          "eval_accuracy": float(ve[classifier, cols].sum() / ve.sum()),
          "num_active_dims": int(active.sum())}
