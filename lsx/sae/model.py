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
             pulls latents that never fire back towards their threshold
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

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lsx.objective import Objective

BOTTLENECKS = ("relu", "topk", "batchtopk", "jumprelu", "mp")
HP_DEFAULTS = {"relu": {"l1_coeff": 5.0},
               "topk": {"aux_coeff": 1.0 / 32.0},
               "batchtopk": {"aux_coeff": 1.0 / 32.0},
               "jumprelu": {"l0_coeff": 1.0, "l0_warmup": 0.0, "preact_coeff": 0.0},
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
    p["stats"]["step"] = jnp.zeros(())  # for the l0_coeff warm-up
  return p


def alive(sae: SAE, hp) -> jax.Array:
  """[m] bool: the latents within this member's width."""
  return jnp.arange(sae.max_width) < hp.get("width", sae.max_width)


def pre_activations(params, x):
  return (x - params["b_dec"]) @ params["W_enc"] + params["b_enc"]


def _rect(u):
  return (jnp.abs(u) < 0.5).astype(u.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def jumprelu(z, theta, bandwidth):
  """z * H(z - theta) with the pseudo-derivatives of Rajamanoharan et al. 2024."""
  return z * (z > theta)


def _jumprelu_fwd(z, theta, bandwidth):
  return jumprelu(z, theta, bandwidth), (z, theta)


def _jumprelu_bwd(bandwidth, res, g):
  z, theta = res
  dz = (z > theta) * g
  dtheta = -(theta / bandwidth) * _rect((z - theta) / bandwidth) * g
  return dz, jnp.sum(dtheta.reshape(-1, theta.shape[-1]), 0).reshape(theta.shape)


jumprelu.defvjp(_jumprelu_fwd, _jumprelu_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def step_fn(z, theta, bandwidth):
  """H(z - theta) with d/dtheta = -(1/bandwidth) K((z - theta)/bandwidth), d/dz = 0."""
  return (z > theta).astype(z.dtype)


def _step_fwd(z, theta, bandwidth):
  return step_fn(z, theta, bandwidth), (z, theta)


def _step_bwd(bandwidth, res, g):
  z, theta = res
  dtheta = -(1.0 / bandwidth) * _rect((z - theta) / bandwidth) * g
  return jnp.zeros_like(z), jnp.sum(dtheta.reshape(-1, theta.shape[-1]), 0).reshape(theta.shape)


step_fn.defvjp(_step_fwd, _step_bwd)


def _scatter_rows(shape, idx, vals):
  rows = jnp.arange(shape[0])[:, None]
  return jnp.zeros(shape, vals.dtype).at[rows, idx].set(vals)


def topk_select(pre, k, k_max: int, mask):
  """The k largest entries of each row as (values [n, k_max] ReLU'd, 0 past k; indices
  [n, k_max]) (k traced, <= k_max static)."""
  vals, idx = jax.lax.top_k(jnp.where(mask, pre, -jnp.inf), k_max)
  keep = jnp.arange(k_max) < k
  return jnp.where(keep & jnp.isfinite(vals), jax.nn.relu(vals), 0.0), idx


def topk_codes(pre, k, k_max: int, mask):
  """ReLU of the k largest entries of each row, as a dense [n, m] array."""
  vals, idx = topk_select(pre, k, k_max, mask)
  return _scatter_rows(pre.shape, idx, vals)


@jax.custom_vjp
def _selected_pre(x, b_dec, w_enc, b_enc, pre, idx):
  """pre[n, idx[n, j]] of pre = (x - b_dec) W_enc + b_enc (given, without gradient),
  differentiable in b_dec, W_enc and b_enc through the selected entries only; x is data
  (no gradient)."""
  return jnp.take_along_axis(pre, idx, -1)


def _selected_pre_fwd(x, b_dec, w_enc, b_enc, pre, idx):
  return jnp.take_along_axis(pre, idx, -1), (x, b_dec, w_enc, idx)


def _selected_pre_bwd(res, g):
  x, b_dec, w_enc, idx = res
  d, m = w_enc.shape
  flat = idx.reshape(-1)
  xc = x - b_dec
  # d/dW_enc[:, i] = sum over the (n, j) that selected latent i of g[n, j] xc[n]: a
  # scatter-add of n * k rows (not a dense [d, m] product)
  rows = jnp.zeros((m, d), g.dtype).at[flat].add((g[..., None] * xc[:, None, :]).reshape(-1, d))
  db_enc = jnp.zeros((m,), g.dtype).at[flat].add(g.reshape(-1))
  # xc = x - b_dec: d/db_dec = -sum_n sum_j g[n, j] W_enc[:, idx[n, j]] = -W_enc db_enc
  return (jnp.zeros_like(x), -(w_enc @ db_enc), rows.T, db_enc,
          jnp.zeros((idx.shape[0], m), g.dtype), np.zeros(idx.shape, jax.dtypes.float0))


_selected_pre.defvjp(_selected_pre_fwd, _selected_pre_bwd)


def sparse_topk(params, x, pre_ng, k, k_max: int, mask):
  """TopK codes as (values [n, k_max], indices) with gradients that touch only the
  selected latents.

  The selection runs on the pre-activations `pre_ng` (computed without gradient); the
  selected entries' gradients reach W_enc, b_enc and b_dec by scatter-adds over the
  n x k_max selections instead of a dense [d, m] product (the same numbers as
  differentiating the dense form, where the unselected entries get zero gradient too).
  x: the activations (data: no gradient)."""
  _, idx = topk_select(pre_ng, k, k_max, mask)
  sel = _selected_pre(x, params["b_dec"], params["W_enc"], params["b_enc"], pre_ng, idx)
  valid = (jnp.arange(k_max) < k) & mask[idx]
  return jnp.where(valid, jax.nn.relu(sel), 0.0), idx


def sparse_decode(params, vals, idx):
  """x^ = sum_j vals[n, j] W_dec[idx[n, j]] + b_dec (a gather; its gradient a scatter-add)."""
  return jnp.einsum("nk,nkd->nd", vals, params["W_dec"][idx]) + params["b_dec"]


def batchtopk_codes(pre, k, k_max: int, mask):
  """Training: ReLU activations among the k x n largest of the batch. Returns (codes,
  the smallest positive activation kept)."""
  a = jnp.where(mask, jax.nn.relu(pre), 0.0)
  n = a.shape[0]
  top = jax.lax.top_k(a.reshape(-1), k_max * n)[0]
  kth = top[jnp.clip(jnp.asarray(k * n, jnp.int32) - 1, 0, k_max * n - 1)]
  kept = (a >= kth) & (a > 0)
  return jnp.where(kept, a, 0.0), jnp.where(kth > 0, kth, 0.0)


def mp_codes(params, x, k, k_max: int, mask):
  """Matching pursuit with the (unit-row) decoder as the dictionary: k_max greedy steps,
  steps past k give 0. Returns codes [n, m]."""
  w = params["W_dec"]

  def body(carry, t):
    r, f = carry
    c = jnp.where(mask, r @ w.T, -jnp.inf)  # [n, m]
    j = jnp.argmax(c, -1)
    coef = jnp.take_along_axis(c, j[:, None], -1)[:, 0]
    coef = jnp.where((t < k) & (coef > 0), coef, 0.0)
    r = r - coef[:, None] * w[j]
    f = f + jax.nn.one_hot(j, w.shape[0], dtype=r.dtype) * coef[:, None]
    return (r, f), None

  init = (x - params["b_dec"], jnp.zeros((x.shape[0], w.shape[0]), x.dtype))
  (_, f), _ = jax.lax.scan(body, init, jnp.arange(k_max))
  return f


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
  return jnp.where(mask, jumprelu(pre, theta, sae.bandwidth), 0.0)


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
    elif sae.bottleneck in ("topk", "batchtopk"):
      e = jax.lax.stop_gradient(x - x_hat)
      aux_loss, num_dead = _aux_loss(sae, params, x, jax.lax.stop_gradient(pre), e, mask)
      total = total + hp["aux_coeff"] * aux_loss
      aux.update(aux_loss=aux_loss, dead=num_dead / jnp.maximum(mask.sum(), 1))
    elif sae.bottleneck == "jumprelu":
      theta = jnp.exp(params["log_threshold"])
      l0 = jnp.mean(jnp.sum(jnp.where(mask, step_fn(pre, theta, sae.bandwidth), 0.0), -1))
      # lambda ramps linearly from 0 over the first l0_warmup steps (0: no warm-up)
      ramp = jnp.minimum(1.0, (stats["step"] + 1.0) / jnp.maximum(hp["l0_warmup"], 1.0))
      total = total + hp["l0_coeff"] * ramp * l0
      # pre-act loss: pulls the pre-activations of latents below their threshold up to it
      norms = jnp.linalg.norm(params["W_dec"], axis=-1)
      preact = jnp.mean(jnp.sum(jnp.where(mask, jax.nn.relu(theta - pre) * norms, 0.0), -1))
      total = total + hp["preact_coeff"] * preact
      aux.update(l0_coeff=hp["l0_coeff"] * ramp, preact=preact)
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
                                            "preact_coeff")}
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
