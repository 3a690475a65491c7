"""Directions in a denoiser's h-space and in x_t, and the generator that lets lsx's
traversal scorer read them.

- `pca_directions`: global h directions, the principal components of h collected over
  samples and timesteps of the reverse process (Haas et al. 2024, "Discovering
  interpretable directions in the semantic latent space of diffusion models", public code
  renhaa/semantic-diffusion).
- `jacobian_directions`: per image, the top right singular vectors of the Jacobian
  ∂ε/∂h at (x_t, t), by power iteration with deflation (Haas et al.: the directions in h
  that change the noise prediction most).
- `pullback_directions`: per image, the top singular vectors of ∂h/∂x_t (Park et al.
  2023, "Understanding the latent space of diffusion models through the lens of
  Riemannian geometry", public code enkeejunior1/Diffusion-Pullback): right singular
  vectors are directions to move x_t, left ones their images in h.

Every power iteration uses only Jacobian-vector and vector-Jacobian products (never the
Jacobian itself), with `iters` iterations per vector from a fixed key.

`EditGenerator` turns a set of K h-directions U [K, D] into a generator of codes
z = [x_T (flattened), c (K coefficients)]: generate(z) runs DDIM from x_T with the edit
Δh = Σ_k c_k U_k (Asyrp's asymmetric edit for t ≥ t_edit by default). Its anchors are the
codes [x_T, 0]; a traversal along the last K coordinates (`coefficient_traversal`) moves
c_k alone, so `lsx.directions.evaluate_sets`, the VP and manipulation protocols and the
reference rows score h-space directions exactly as they score a VAE decoder's.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from lsx.diffusion import process
from lsx.directions import (latentclr_loss, linear_traversal, make_directions,
                            noiseclr_loss_reference)


def collect_h(den, x_T, steps: int):
  """h at every DDIM step of the unedited reverse process from x_T: [steps, n, *h]."""
  _, hs = process.ddim_sample(den.eps_fn, den.schedule, x_T, steps, record_h=True)
  return hs


def pca_directions(h, k: int):
  """The top-k principal directions [k, D] (unit rows, ordered by variance) of h [..., D]
  pooled over every leading axis, with the variance each explains [k]."""
  x = jnp.reshape(h, (-1, h.shape[-1])).astype(jnp.float32)
  x = x - x.mean(0)
  _, s, vt = jnp.linalg.svd(x, full_matrices=False)
  return vt[:k], (s[:k] ** 2) / max(x.shape[0] - 1, 1)


def _top_singular(matvec: Callable, dim: int, k: int, iters: int, rng):
  """The top-k right singular vectors [k, dim] of a linear map A, by power iteration
  on v -> AᵀA v with deflation against the vectors already found; `matvec(v)` = AᵀA v.
  Returns (vectors, singular values)."""
  vecs, vals = [], []
  for j in range(int(k)):
    v = jax.random.normal(jax.random.fold_in(rng, j), (dim,))
    prev = jnp.stack(vecs) if vecs else jnp.zeros((0, dim))

    def body(_, v):
      w = matvec(v)
      w = w - prev.T @ (prev @ w)
      return w / jnp.maximum(jnp.linalg.norm(w), 1e-30)

    v = jax.lax.fori_loop(0, int(iters), body, v / jnp.linalg.norm(v))
    vecs.append(v)
    vals.append(jnp.sqrt(jnp.maximum(v @ matvec(v), 0.0)))
  return jnp.stack(vecs), jnp.stack(vals)


def jacobian_directions(den, x_t, t: int, k: int, iters: int = 20, rng=None):
  """The top-k directions in h [k, D] of ∂ε/∂h at one image x_t [1, H, W, C] and timestep
  t (unit rows, by singular value), and the singular values [k]."""
  rng = jax.random.key(0) if rng is None else rng
  tv = jnp.full((x_t.shape[0],), int(t), jnp.int32)
  shape = (x_t.shape[0],) + tuple(den.h_shape)
  f = lambda dh: den.eps_fn(x_t, tv, dh.reshape(shape))[0].reshape(-1)
  zero = jnp.zeros(int(np.prod(shape)))
  _, vjp = jax.vjp(f, zero)
  matvec = lambda v: vjp(jax.jvp(f, (zero,), (v,))[1])[0]
  return _top_singular(matvec, zero.shape[0], k, iters, rng)


def pullback_directions(den, x_t, t: int, k: int, iters: int = 20, rng=None):
  """Park et al.'s pullback directions at one image x_t [1, ...] and timestep t: the top-k
  right singular vectors of ∂h/∂x_t [k, X] (directions to move x_t), their singular
  values [k] and the matching left singular vectors in h [k, D] (unit rows)."""
  rng = jax.random.key(0) if rng is None else rng
  tv = jnp.full((x_t.shape[0],), int(t), jnp.int32)
  f = lambda x: den.eps_fn(x.reshape(x_t.shape), tv, None)[1].reshape(-1)
  x0 = x_t.reshape(-1)
  _, vjp = jax.vjp(f, x0)
  jv = lambda v: jax.jvp(f, (x0,), (v,))[1]
  v, s = _top_singular(lambda v: vjp(jv(v))[0], x0.shape[0], k, iters, rng)
  u = jax.vmap(jv)(v)
  return v, s, u / jnp.maximum(jnp.linalg.norm(u, axis=1, keepdims=True), 1e-30)


_SAMPLERS: dict = {}


def _edit_sampler(den, steps: int, t_edit: int, asymmetric: bool):
  """One jitted DDIM sampler (codes [n, x_dim + K], directions [K, D]) -> images per
  denoiser and edit setting: the directions are an argument, so the methods of one
  h-space run share one compiled program (keyed by the denoiser's eps_fn, kept alive)."""
  key = (id(den.eps_fn), steps, t_edit, asymmetric)
  if key not in _SAMPLERS:
    if len(_SAMPLERS) >= 8:  # bounded: a long session does not keep every denoiser alive
      _SAMPLERS.clear()
    x_dim, shape = int(np.prod(den.image_shape)), tuple(den.h_shape)

    def generate(z, u):
      x_T = z[:, :x_dim].reshape((-1,) + tuple(den.image_shape))
      dh = (z[:, x_dim:] @ u).reshape((-1,) + shape)
      return process.to_image(process.ddim_sample(den.eps_fn, den.schedule, x_T, steps,
                                                  delta_h=dh, t_edit=t_edit,
                                                  asymmetric=asymmetric))
    _SAMPLERS[key] = (den.eps_fn, jax.jit(generate))
  return _SAMPLERS[key][1]


@dataclasses.dataclass
class EditGenerator:
  """A denoiser with K h-directions as a generator of codes [x_T, c] (module doc), with
  the attributes lsx's scorer reads from a decoder: `generate`, anchor codes `z`
  ([x_T, 0] for `num_anchors` draws of x_T from key `seed`), `dataset`, `sd` (1: the
  coefficients are in units of the directions' norm, which `scale` sets)."""
  den: Any
  directions: Any  # [K, D]
  dataset: Any
  steps: int = 20
  num_anchors: int = 64
  scale: float = 1.0
  t_edit: int = 0
  asymmetric: bool = True
  seed: int = 1234

  def __post_init__(self):
    u = jnp.asarray(self.directions, jnp.float32) * float(self.scale)
    self.k = u.shape[0]
    self.x_dim = int(np.prod(self.den.image_shape))
    sampler = _edit_sampler(self.den, int(self.steps), int(self.t_edit), bool(self.asymmetric))
    self.generate = lambda z: sampler(z, u)
    x_T = jax.random.normal(jax.random.key(int(self.seed)), (int(self.num_anchors), self.x_dim))
    self.z = jnp.concatenate([x_T, jnp.zeros((x_T.shape[0], self.k))], 1)
    self.sd = 1.0

  def coefficient_axes(self):
    """{"d": [1, K, x_dim + K]}: the stacked parameters of the K coefficient axes (for a
    `linear_traversal` of global directions over codes of this generator)."""
    return {"d": jnp.eye(self.x_dim + self.k)[self.x_dim:][None]}


def coefficient_traversal(gen: EditGenerator, num_steps: int, span: float):
  """The traversal moving each coefficient c_k over ±span in `num_steps` steps, and its
  parameters: a set (traversal, params, gen) for `lsx.directions.evaluate_sets`."""
  trav = linear_traversal(make_directions("global", gen.k, gen.x_dim + gen.k), int(num_steps),
                          float(span) / int(num_steps))
  return trav, gen.coefficient_axes(), gen


def factor_h_directions(h, factors, ordinal):
  """Directions in h regressed from the factors: h [N, D] on the ordinal factors
  [N, J] (centred, least squares), one unit row per factor [J', D] — the supervised
  reference row, as `lsx.directions.factor_directions` is for a VAE's codes."""
  f = np.asarray(factors, np.float64)[:, np.asarray(ordinal, bool)]
  x = np.asarray(h, np.float64).reshape(f.shape[0], -1)
  f, x = f - f.mean(0), x - x.mean(0)
  b, *_ = np.linalg.lstsq(f, x, rcond=None)  # [J', D]
  return jnp.asarray(b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12),
                     jnp.float32)


def projection_std(h, directions):
  """The std of h [N, D] along each unit direction [K, D]: the unit an edit is measured
  in (c = 1 moves h by one std of the samples along that direction)."""
  x = jnp.reshape(h, (-1, directions.shape[1]))
  return jnp.maximum(jnp.std(x @ directions.T, axis=0), 1e-6)


CONTRASTIVE = ("noiseclr", "latentclr")
CONTRASTIVE_HP = {"temperature": 0.5, "alpha": 0.5}


def contrastive_objective(den, method: str, k: int, h_scale: float, t_min: int = 0):
  """(init(rng) -> {"d": [K, D]}, loss(params, x0 [N, ...], rng, hp) -> (loss, aux)):
  K directions in h learned contrastively on the denoiser's noise predictions, as NoiseCLR
  (Dalva & Yanardag 2024) learns its directions: for data images x_0 noised to x_t at
  random t >= t_min, the feature of direction k on x_t is the unit-normalized difference
  ε(x_t, t, α h_scale u_k) - ε(x_t, t) (u_k = d_k / |d_k|); 'noiseclr' is the public
  estimator (one random anchor direction a step, the log of a ratio of means), 'latentclr'
  LatentCLR's loss on the same features. hp: temperature, alpha (the edit's length in
  units of `h_scale`, the RMS deviation of h)."""
  if method not in CONTRASTIVE:
    raise ValueError(f"contrastive h methods are {CONTRASTIVE}, got {method!r}.")
  d = int(np.prod(den.h_shape))
  sched, steps = den.schedule, den.schedule.num_steps

  def init(rng):
    return {"d": jax.random.normal(rng, (int(k), d))}

  def loss(params, x0, rng, hp):
    k_t, k_e, k_a = jax.random.split(rng, 3)
    n = x0.shape[0]
    t = jax.random.randint(k_t, (n,), int(t_min), steps)
    x_t = process.q_sample(sched, process.to_model(x0), t, jax.random.normal(k_e, x0.shape))
    eps0, _ = den.eps_fn(x_t, t, None)
    u = params["d"] / jnp.linalg.norm(params["d"], axis=1, keepdims=True)
    dh = (hp["alpha"] * h_scale * u).reshape((-1, 1) + tuple(den.h_shape))

    def feature(dh_k):
      eps, _ = den.eps_fn(x_t, t, jnp.broadcast_to(dh_k, (n,) + tuple(den.h_shape)))
      f = (eps - eps0).reshape(n, -1)
      return f / jnp.maximum(jnp.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    feats = jax.lax.map(feature, dh)  # [K, N, P]
    if method == "noiseclr":
      value = noiseclr_loss_reference(feats, hp["temperature"],
                                      anchor=jax.random.randint(k_a, (), 0, u.shape[0]))
    else:
      value = latentclr_loss(feats, hp["temperature"])
    return value, {"contrastive": value}
  return init, loss


def h_scale(den, dataset, rng, n: int = 64, t_min: int = 0) -> float:
  """The RMS deviation of h over `n` data images noised at random t >= t_min."""
  x0, _ = dataset.sample(rng, int(n))
  k_t, k_e = jax.random.split(jax.random.fold_in(rng, 1))
  t = jax.random.randint(k_t, (int(n),), int(t_min), den.schedule.num_steps)
  x_t = process.q_sample(den.schedule, process.to_model(x0), t, jax.random.normal(k_e, x0.shape))
  h = den.eps_fn(x_t, t, None)[1].reshape(int(n), -1)
  return float(jnp.sqrt(jnp.mean(jnp.sum((h - h.mean(0)) ** 2, axis=1))))
