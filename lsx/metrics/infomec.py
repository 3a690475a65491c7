"""InfoMEC: modularity, explicitness and compactness (Hsu et al., NeurIPS 2023).

Definitions follow the public reference implementation:
- NMI[i, j] = I(source_i; latent_j) / H(source_i). Continuous latents are standardized
  and I is the k-NN continuous-discrete estimator (Ross 2014, k = 10, scikit-learn's
  `mutual_info_classif` conventions); discrete latents use the plug-in estimate.
- Active latents: range > max range / 20 (continuous) or range > 0 (discrete).
- InfoM = (mean over active latents of max_i NMI / sum_i NMI - 1/F) / (1 - 1/F).
- InfoC = (mean over sources of max_j NMI / sum_j NMI - 1/d_a) / (1 - 1/d_a), over the
  d_a active latents.
- InfoE = mean over sources of (H_null - H_pred) / H_null, H_pred the training log-loss
  of an unpenalized multinomial logistic regression with balanced class weights on the
  standardized latents (one-hot codes for discrete latents), H_null the same model on
  all-zero inputs (the balanced intercept-only model predicts uniformly: log K).

Edge cases the reference leaves undefined (it returns NaN) are given values here:
a source with one value carries no information and is left out of InfoC/InfoE; a latent
or source whose NMIs are all zero counts as spread uniformly (contributes 0); with one
active latent InfoC is 1; with no active latent InfoM = InfoC = 0.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lsx.metrics import _info


def _ratio_score(nmi, axis: int, mask_other, mask_this):
  """mean over `this` entries of (max/sum along `axis` - 1/n) / (1 - 1/n), n = #active along axis."""
  x = jnp.where(mask_other, nmi, 0.0)
  n = jnp.sum(mask_other.astype(jnp.float32), axis=axis)
  s = x.sum(axis)
  mx = x.max(axis)
  ratio = jnp.where(s > 0, mx / jnp.where(s > 0, s, 1.0), 1.0 / jnp.maximum(n, 1.0))
  score = jnp.where(n > 1, (ratio - 1.0 / jnp.maximum(n, 1.0)) / (1.0 - 1.0 / jnp.maximum(n, 2.0)),
                    jnp.where(s > 0, 1.0, 0.0))
  w = mask_this.astype(jnp.float32)
  return jnp.sum(w * score) / jnp.maximum(w.sum(), 1.0)


@functools.partial(jax.jit, static_argnames=("kf", "kv", "discrete_latents", "k", "logreg_steps"))
def infomec_from_codes(latents, codes, num_values, *, kf: int, kv: int = 16,
                       discrete_latents: bool = False, k: int = 10, logreg_steps: int = 100):
  """The jitted core: `codes [n, F]` dense factor codes < kf, `num_values [F]` per factor."""
  z = jnp.asarray(latents, jnp.float32)
  n, d = z.shape
  informative = num_values > 1
  h_src = jax.vmap(lambda c: _info.entropy(c, kf), in_axes=1)(codes)  # [F]
  h_null = jnp.log(jnp.maximum(num_values, 1).astype(jnp.float32))  # balanced intercept-only
  ranges = z.max(0) - z.min(0)
  if discrete_latents:
    active = ranges > 0
    zc = jax.vmap(lambda col: _info.column_codes(col, kv), in_axes=1, out_axes=1)(z)
    mi = _info.mi_matrix(codes, zc, kf, kv)  # [F, d]
    feats = jax.nn.one_hot(zc, kv, dtype=jnp.float32).reshape(n, d * kv)
  else:
    active = ranges > ranges.max() / 20
    zs = _info.tie_jitter(_info.standardize(z))
    mi = jax.vmap(lambda src: jax.vmap(lambda col: _info.ksg_mi_cd(col, src, kf, k),
                                       in_axes=1)(zs), in_axes=1)(codes)  # [F, d]
    feats = _info.standardize(z)
  nmi = jnp.where(informative[:, None], mi / jnp.where(h_src > 0, h_src, 1.0)[:, None], 0.0)
  src = jnp.broadcast_to(informative[:, None], nmi.shape)
  act = jnp.broadcast_to(active[None, :], nmi.shape)
  # modularity: over active latents, how concentrated each is on one source
  infom = jnp.where(active.any(), _ratio_score(nmi, 0, src, active), 0.0)
  # compactness: over informative sources, how concentrated each is on one active latent
  infoc = jnp.where(active.any(), _ratio_score(nmi, 1, act & src, informative), 0.0)

  def h_pred(y):
    _, _, probs = _info.fit_logistic(feats, y, kf, balanced=True, steps=logreg_steps)
    return _info.log_loss(probs, y)

  hp = jax.lax.map(h_pred, codes.T)  # one fit after another: a vmapped L-BFGS is ~10x slower
  per = jnp.where(informative, (h_null - hp) / jnp.where(h_null > 0, h_null, 1.0), 0.0)
  infoe = jnp.sum(per) / jnp.maximum(informative.sum(), 1)
  return {"infom": infom, "infoe": infoe, "infoc": infoc, "nmi": nmi, "active_latents": active}


def make_infomec(factors, discrete_latents: bool = False, *, k: int = 10,
                 max_latent_values: int = 16, logreg_steps: int = 100) -> Callable:
  """A pure, jittable and vmappable `fn(latents [n, d]) -> dict` for fixed `factors`.

  Scores every member of a sweep in one call: `jax.vmap(make_infomec(f))(z [m, n, d])`.
  `max_latent_values` bounds the distinct values of a discrete latent (QLAE: its
  codebook size).
  """
  f = np.asarray(factors)
  if f.ndim != 2 or f.shape[0] < 2:
    raise ValueError(f"factors must have shape [n >= 2, F], got {f.shape}.")
  if not 1 <= int(k) < f.shape[0]:
    raise ValueError(f"k={k} neighbours: need 1 <= k < the {f.shape[0]} samples.")
  if int(max_latent_values) < 2:
    raise ValueError(f"max_latent_values={max_latent_values}: a discrete latent needs at "
                     f"least 2 values.")
  codes, kf, nvals = _info.encode_columns(f)
  codes, nvals = jnp.asarray(codes), jnp.asarray(nvals, jnp.int32)
  kv = _info.bucket(max_latent_values)
  return functools.partial(infomec_from_codes, codes=codes, num_values=nvals, kf=kf, kv=kv,
                           discrete_latents=discrete_latents, k=k, logreg_steps=logreg_steps)


def infomec(latents, factors, discrete_latents: bool = False, *, k: int = 10,
            max_latent_values: int | None = None, logreg_steps: int = 100) -> dict:
  """InfoMEC of `latents [n, d]` against integer `factors [n, F]`.

  Returns dict(infom, infoe, infoc: float, nmi [F, d], active_latents [d] bool).
  """
  z, f = _info.validate(latents, factors, standardize=not discrete_latents)
  if (f.shape[1] and np.all([np.unique(f[:, i]).size < 2 for i in range(f.shape[1])])):
    raise ValueError("every factor is constant: InfoMEC is undefined. Sample factors that vary.")
  if z.shape[0] <= int(k):
    raise ValueError(f"InfoMEC needs at least k + 1 = {int(k) + 1} samples (its k-NN "
                     f"estimate uses k={k} neighbours), got {z.shape[0]}; use thousands "
                     f"(disentanglement_lib: 10000).")
  observed = max(int(np.unique(z[:, j]).size) for j in range(z.shape[1])) if discrete_latents else 0
  if discrete_latents and max_latent_values is None:
    max_latent_values = observed
  if discrete_latents and int(max_latent_values) < observed:
    raise ValueError(f"max_latent_values={max_latent_values} but a latent takes {observed} "
                     f"distinct values; pass at least {observed} (QLAE: its codebook size).")
  fn = make_infomec(f, discrete_latents, k=k, max_latent_values=int(max_latent_values or 16),
                    logreg_steps=logreg_steps)
  out = jax.device_get(fn(jnp.asarray(z, jnp.float32)))
  return {"infom": float(out["infom"]), "infoe": float(out["infoe"]),
          "infoc": float(out["infoc"]), "nmi": np.asarray(out["nmi"]),
          "active_latents": np.asarray(out["active_latents"])}
