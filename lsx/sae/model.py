"""Sparse autoencoders: a linear dictionary with a sparse bottleneck, as an `Objective`.

    pre = (x - b_dec) W_enc + b_enc        [n, m]   (m latents, `max_width` of them)
    f   = bottleneck(pre)                  [n, m]   sparse, non-negative
    x^  = f W_dec + b_dec                  [n, d]

Bottlenecks (`BOTTLENECKS`):
  relu       ReLU, loss + l1_coeff * sum_i f_i ||W_dec,i|| (Bricken et al. 2023; the
             decoder-norm weighting of Anthropic's April 2024 update)
  topk       the k largest pre-activations, ReLU'd (Gao et al. 2024), with the AuxK loss:
             the residual x - x^ predicted from the top `aux_k` pre-activations of the dead
             latents (not fired for `dead_tokens` samples), weight aux_coeff = 1/32
  batchtopk  the k x n largest activations of the whole batch (Bussmann et al. 2024); at
             inference a latent fires above a threshold estimated in training (a running
             mean of the smallest activation kept per batch); AuxK as topk
  jumprelu   f = pre * H(pre - theta), theta = exp(log_threshold) per latent, loss +
             l0_coeff * sum_i H(pre_i - theta_i) (Rajamanoharan et al. 2024): straight-
             through gradients with the rectangle-kernel density estimate of bandwidth
             `bandwidth` for d/dtheta; l0_coeff ramps up linearly over `l0_warmup`
             steps (0: none); optional pre-act loss preact_coeff * sum_i
             ReLU(theta_i - pre_i) ||W_dec,i|| (Anthropic's January 2025 update), which
             pulls latents that never fire back towards their threshold. Named options
             of Anthropic's January 2025 setup beside the paper's: jump_grad='pre' (the
             kernel terms also reach the pre-activations, so the encoder learns where a
             latent should fire), sparsity='tanh' (l0_coeff * sum_i tanh(tanh_scale *
             f_i ||W_dec,i||) instead of the step) and init_rate > 0 (b_enc set so
             each latent fires on that fraction of a data sample at init)
  mp         matching pursuit with the decoder as the dictionary (tied): k greedy steps,
             each taking the atom with the largest inner product with the residual
             (coefficients >= 0) ("From Flat to Hierarchical", 2025)

What a sweep varies is traced: `k` and `width` are hyperparameters (with static upper
bounds `k_max`, `max_width`: a narrower member masks the latents past its width, and
latent i's initial atom depends only on (seed, i), so member i equals its run alone),
as are `l1_coeff`, `l0_coeff`, `aux_coeff` and `lr`.

Decoder rows are kept at unit norm after every step (`post_update`), the encoder starts
as the decoder's transpose and b_dec at the geometric median of a data sample
(Weiszfeld iterations). Buffers (`params["stats"]`: samples since each latent fired, the
BatchTopK threshold) are updated in `post_update`, never by the optimizer.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lsx.objective import Objective
from lsx.sae.bottlenecks import (batchtopk_codes, jumprelu, mp_codes, sparse_decode,
                                 sparse_topk, step_fn, topk_codes)

BOTTLENECKS = ("relu", "topk", "batchtopk", "jumprelu", "mp")
JUMP_GRADS = ("threshold", "pre")
SPARSITIES = ("l0", "tanh")
HP_DEFAULTS = {"relu": {"l1_coeff": 5.0},
               "topk": {"aux_coeff": 1.0 / 32.0},
               "batchtopk": {"aux_coeff": 1.0 / 32.0},
               "jumprelu": {"l0_coeff": 1.0, "l0_warmup": 0.0, "preact_coeff": 0.0,
                            "tanh_scale": 4.0, "aux_coeff": 0.0},
               "mp": {}}


class SAE(NamedTuple):
  """Static settings of a sparse autoencoder (shapes and bounds; see module doc)."""
  dim: int
  max_width: int
  bottleneck: str
  k_max: int = 32
  aux_k: int = 256
  dead_tokens: int = 100_000
  bandwidth: float = 0.001
  threshold_rate: float = 0.01
  threshold_init: float = 0.001  # JumpReLU's initial theta (Rajamanoharan et al.: 0.001)
  jump_grad: str = "threshold"  # JumpReLU: 'threshold' (the paper) | 'pre' (Anthropic 2025)
  sparsity: str = "l0"  # JumpReLU's penalty: 'l0' (the paper's step) | 'tanh' (Anthropic 2025)
  init_rate: float = 0.0  # JumpReLU: > 0 sets b_enc so each latent fires at this rate at init


def check(sae: SAE) -> SAE:
  if sae.bottleneck not in BOTTLENECKS:
    raise ValueError(f"Unknown SAE bottleneck {sae.bottleneck!r}; choose one of {BOTTLENECKS}.")
  for name in ("dim", "max_width", "k_max", "aux_k", "dead_tokens"):
    if int(getattr(sae, name)) < 1:
      raise ValueError(f"SAE {name} must be >= 1, got {getattr(sae, name)}.")
  if sae.k_max > sae.max_width:
    raise ValueError(f"k_max={sae.k_max} exceeds the {sae.max_width} latents.")
  if not sae.bandwidth > 0:
    raise ValueError(f"SAE bandwidth must be > 0, got {sae.bandwidth}.")
  if sae.jump_grad not in JUMP_GRADS:
    raise ValueError(f"SAE jump_grad must be one of {JUMP_GRADS}, got {sae.jump_grad!r}.")
  if sae.sparsity not in SPARSITIES:
    raise ValueError(f"SAE sparsity must be one of {SPARSITIES}, got {sae.sparsity!r}.")
  if not 0.0 <= sae.init_rate < 1.0:
    raise ValueError(f"SAE init_rate must be in [0, 1) (0: b_enc starts at 0), got "
                     f"{sae.init_rate}.")
  return sae


def geometric_median(x, iters: int = 50, eps: float = 1e-8):
  """The point minimizing the summed distance to the rows of x [n, d] (Weiszfeld)."""
  def body(_, y):
    w = 1.0 / jnp.maximum(jnp.linalg.norm(x - y, axis=-1), eps)
    return (w[:, None] * x).sum(0) / w.sum()
  return jax.lax.fori_loop(0, iters, body, x.mean(0))


def init_params(sae: SAE, rng, x_sample) -> dict:
  """Unit-norm decoder rows (row i from fold_in(rng, i): a narrower SAE's rows are a
  prefix of a wider one's), W_enc = W_dec^T, b_dec = geometric median of x_sample."""
  m, d = sae.max_width, sae.dim
  rows = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(rng, i), (d,)))(jnp.arange(m))
  w_dec = rows / jnp.linalg.norm(rows, axis=-1, keepdims=True)
  p = {"W_enc": w_dec.T, "b_enc": jnp.zeros((m,)), "W_dec": w_dec,
       "b_dec": geometric_median(jnp.asarray(x_sample, jnp.float32)),
       "stats": {"since_fired": jnp.zeros((m,)), "threshold": jnp.zeros(())}}
  if sae.bottleneck == "jumprelu":
    p["log_threshold"] = jnp.full((m,), jnp.log(sae.threshold_init))
    if sae.init_rate > 0:  # each latent fires on init_rate of the sample at init
      pre = (jnp.asarray(x_sample, jnp.float32) - p["b_dec"]) @ p["W_enc"]
      p["b_enc"] = sae.threshold_init - jnp.quantile(pre, 1.0 - sae.init_rate, axis=0)
    p["stats"]["step"] = jnp.zeros(())  # for the l0_coeff warm-up
  return p


def alive(sae: SAE, hp) -> jax.Array:
  """[m] bool: the latents within this member's width."""
  return jnp.arange(sae.max_width) < hp.get("width", sae.max_width)


def pre_activations(params, x):
  return (x - params["b_dec"]) @ params["W_enc"] + params["b_enc"]


def encode(sae: SAE, params, x, hp, training: bool = False):
  """Codes [n, m] (non-negative, sparse); at inference BatchTopK uses its threshold."""
  mask = alive(sae, hp)
  if sae.bottleneck == "mp":
    return mp_codes(params, x, hp["k"], sae.k_max, mask)
  pre = pre_activations(params, x)
  if sae.bottleneck == "relu":
    return jnp.where(mask, jax.nn.relu(pre), 0.0)
  if sae.bottleneck == "topk":
    return topk_codes(pre, hp["k"], sae.k_max, mask)
  if sae.bottleneck == "batchtopk":
    if training:
      return batchtopk_codes(pre, hp["k"], sae.k_max, mask)[0]
    a = jnp.where(mask, jax.nn.relu(pre), 0.0)
    return jnp.where(a > params["stats"]["threshold"], a, 0.0)
  theta = jnp.exp(params["log_threshold"])
  return jnp.where(mask, jumprelu(pre, theta, sae.bandwidth, sae.jump_grad == "pre"), 0.0)


def decode(params, f):
  return f @ params["W_dec"] + params["b_dec"]


def gathers(k: int, m: int) -> bool:
  """Whether k of m latents are few enough that gathering their k decoder/encoder rows
  beats a dense [n, m] product (measured on CPU: a gather of 32 of 8192 rows costs half
  the dense product; benchmarks/sae_throughput.py)."""
  return 64 * k <= m


def _aux_loss(sae: SAE, params, x, pre_ng, e, mask):
  """AuxK (Gao et al. 2024): the residual e (no gradient) predicted by the aux_k largest
  pre-activations of the dead latents (not fired for dead_tokens samples). 0 while no
  latent is dead (it has no gradient then; the branch is skipped in a single run)."""
  dead = mask & (params["stats"]["since_fired"] >= sae.dead_tokens)
  k_aux = min(sae.aux_k, sae.max_width)

  def on(_):
    if gathers(k_aux, sae.max_width):
      vals, idx = sparse_topk(params, x, pre_ng, k_aux, k_aux, dead)
      e_hat = jnp.einsum("nk,nkd->nd", vals, params["W_dec"][idx])
    else:
      e_hat = topk_codes(pre_activations(params, x), k_aux, k_aux, dead) @ params["W_dec"]
    return jnp.mean(jnp.sum((e - e_hat) ** 2, -1))

  return jax.lax.cond(dead.any(), on, lambda _: jnp.zeros((), x.dtype), None), dead.sum()


def make_objective(sae: SAE, source_sample, *, median_samples: int = 4096) -> Objective:
  """The SAE as an `lsx.objective.Objective` on batches of activations [n, dim].

  `source_sample(rng, n) -> (x, extra)` gives the activations b_dec's geometric median
  is estimated from at init."""
  sae = check(sae)
  hp_defaults = {"k": float(sae.k_max), "width": float(sae.max_width),
                 **HP_DEFAULTS[sae.bottleneck]}

  def init(rng):
    k_init, k_data = jax.random.split(rng)
    return init_params(sae, k_init, source_sample(k_data, median_samples)[0])

  def loss(params, x, rng, hp):
    del rng
    mask = alive(sae, hp)
    stats = jax.lax.stop_gradient(params["stats"])
    params = {**params, "stats": stats}
    xc = x - params["b_dec"]
    min_kept = jnp.zeros(())
    if sae.bottleneck == "topk" and gathers(sae.k_max, sae.max_width):
      pre = jax.lax.stop_gradient(xc @ params["W_enc"] + params["b_enc"])
      vals, idx = sparse_topk(params, x, pre, hp["k"], sae.k_max, mask)
      x_hat = sparse_decode(params, vals, idx)
      active = vals > 0
      l0 = jnp.mean(jnp.sum(active, -1))
      fired = jnp.zeros((sae.max_width,), bool).at[idx.reshape(-1)].max(active.reshape(-1))
    else:
      pre = xc @ params["W_enc"] + params["b_enc"]
      if sae.bottleneck == "batchtopk":
        f, min_kept = batchtopk_codes(pre, hp["k"], sae.k_max, mask)
      else:
        f = encode(sae, params, x, hp, training=True)
      x_hat = decode(params, f)
      l0, fired = jnp.mean(jnp.sum(f > 0, -1)), jnp.any(f > 0, 0)
    mse = jnp.mean(jnp.sum((x - x_hat) ** 2, -1))
    total, aux = mse, {"mse": mse, "l0": l0}
    if sae.bottleneck == "relu":
      norms = jnp.linalg.norm(params["W_dec"], axis=-1)
      l1 = jnp.mean(jnp.sum(f * norms, -1))
      total = total + hp["l1_coeff"] * l1
      aux["l1"] = l1
    elif sae.bottleneck == "jumprelu":
      theta = jnp.exp(params["log_threshold"])
      norms = jnp.linalg.norm(params["W_dec"], axis=-1)
      if sae.sparsity == "l0":
        penalty = step_fn(pre, theta, sae.bandwidth, sae.jump_grad == "pre")
      else:
        penalty = jnp.tanh(hp["tanh_scale"] * f * norms)
      sparsity = jnp.mean(jnp.sum(jnp.where(mask, penalty, 0.0), -1))
      # lambda ramps linearly from 0 over the first l0_warmup steps (0: no warm-up)
      ramp = jnp.minimum(1.0, (stats["step"] + 1.0) / jnp.maximum(hp["l0_warmup"], 1.0))
      total = total + hp["l0_coeff"] * ramp * sparsity
      aux["sparsity"] = sparsity
      # pre-act loss: pulls the pre-activations of latents below their threshold up to it
      preact = jnp.mean(jnp.sum(jnp.where(mask, jax.nn.relu(theta - pre) * norms, 0.0), -1))
      total = total + hp["preact_coeff"] * preact
      aux.update(l0_coeff=hp["l0_coeff"] * ramp, preact=preact)
    if sae.bottleneck in ("topk", "batchtopk", "jumprelu"):
      # AuxK on the dead latents (for JumpReLU an lsx option, aux_coeff > 0: it revives
      # them on the residual the live ones leave, where the paper's estimator gives none)
      e = jax.lax.stop_gradient(x - x_hat)
      aux_loss, num_dead = _aux_loss(sae, params, x, jax.lax.stop_gradient(pre), e, mask)
      total = total + hp["aux_coeff"] * aux_loss
      aux.update(aux_loss=aux_loss, dead=num_dead / jnp.maximum(mask.sum(), 1))
    aux["_post"] = {"fired": fired, "n": jnp.asarray(x.shape[0], jnp.float32),
                    "min_kept": min_kept}
    return total, aux

  def post_update(params, post, hp):
    del hp
    w = params["W_dec"]
    params = dict(params)
    params["W_dec"] = w / jnp.maximum(jnp.linalg.norm(w, axis=-1, keepdims=True), 1e-8)
    s = params["stats"]
    since = jnp.where(post["fired"], 0.0, s["since_fired"] + post["n"])
    thr = s["threshold"]
    if sae.bottleneck == "batchtopk":  # running mean of the smallest kept activation
      thr = jnp.where(thr > 0, (1 - sae.threshold_rate) * thr + sae.threshold_rate * post["min_kept"],
                      post["min_kept"])
    params["stats"] = {**s, "since_fired": since, "threshold": thr}
    if "step" in s:
      params["stats"]["step"] = s["step"] + 1.0
    return params

  bounds = {name: (0.0, True) for name in ("l1_coeff", "aux_coeff", "l0_coeff", "l0_warmup",
                                            "preact_coeff", "tanh_scale")}
  return Objective(f"sae_{sae.bottleneck}", init, loss, hp_defaults, post_update=post_update,
                   info={"sae": sae, "hp_bounds": bounds})


def scores(sae: SAE, params, hp, x, true_features=None, dense_frequency: float = 0.1) -> dict:
  """Per-member scores on activations x [n, d] (pure; vmappable over members):
  l0 (mean active latents per sample), fvu (fraction of variance unexplained), dead
  (fraction of the member's latents that never fire on x), dense (fraction firing on
  more than `dense_frequency` of the samples); with `true_features` [F, d] (unit rows):
  mmcs (mean over true features of the best cosine with a decoder row) and recovered
  (fraction of true features with a decoder row at cosine >= 0.9)."""
  mask = alive(sae, hp)
  f = encode(sae, params, x, hp, training=False)
  x_hat = decode(params, f)
  fvu = jnp.sum((x - x_hat) ** 2) / jnp.maximum(jnp.sum((x - x.mean(0)) ** 2), 1e-12)
  freq = jnp.mean(f > 0, 0)
  width = jnp.maximum(mask.sum(), 1)
  out = {"l0": jnp.mean(jnp.sum(f > 0, -1)), "fvu": fvu,
         "dead": jnp.sum(mask & (freq == 0)) / width,
         "dense": jnp.sum(mask & (freq > dense_frequency)) / width}
  if true_features is not None:
    w = params["W_dec"] / jnp.maximum(jnp.linalg.norm(params["W_dec"], axis=-1, keepdims=True), 1e-8)
    cos = jnp.where(mask[:, None], w @ jnp.asarray(true_features).T, -1.0)  # [m, F]
    best = cos.max(0)
    out.update(mmcs=best.mean(), recovered=jnp.mean(best >= 0.9))
  return out


Params = Any
