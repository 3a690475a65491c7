"""The sparse bottlenecks' kernels (lsx.sae.model composes them into an SAE): JumpReLU and
its step function with the straight-through pseudo-derivatives of Rajamanoharan et al.
2024 (a rectangle-kernel density estimate of bandwidth `bandwidth` for d/dtheta), TopK
(Gao et al. 2024) dense and as a sparse (values, indices) pair whose gradients touch only
the selected latents, BatchTopK (Bussmann et al. 2024) and matching pursuit. Every `k` is
traced (a sweep varies it) below a static `k_max`; `mask` [m] marks the latents within a
member's width. (The autoencoders' Gaussian / quantized bottlenecks are lsx.latents.)
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def _rect(u):
  return (jnp.abs(u) < 0.5).astype(u.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def jumprelu(z, theta, bandwidth, to_pre: bool = False):
  """z * H(z - theta) with the pseudo-derivatives of Rajamanoharan et al. 2024:
  d/dz = H(z - theta), d/dtheta = -(theta/bandwidth) K((z - theta)/bandwidth). With
  `to_pre` (Anthropic, January 2025) the jump's kernel term also reaches z:
  d/dz = H(z - theta) + (theta/bandwidth) K((z - theta)/bandwidth)."""
  return z * (z > theta)


def _jumprelu_fwd(z, theta, bandwidth, to_pre):
  return jumprelu(z, theta, bandwidth, to_pre), (z, theta)


def _sum_to(g, theta):
  return jnp.sum(g.reshape(-1, theta.shape[-1]), 0).reshape(theta.shape)


def _jumprelu_bwd(bandwidth, to_pre, res, g):
  z, theta = res
  jump = (theta / bandwidth) * _rect((z - theta) / bandwidth) * g
  dz = (z > theta) * g + (jump if to_pre else 0.0)
  return dz, _sum_to(-jump, theta)


jumprelu.defvjp(_jumprelu_fwd, _jumprelu_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def step_fn(z, theta, bandwidth, to_pre: bool = False):
  """H(z - theta) with d/dtheta = -(1/bandwidth) K((z - theta)/bandwidth) and d/dz = 0
  (Rajamanoharan et al. 2024), or d/dz = +(1/bandwidth) K(...) with `to_pre`."""
  return (z > theta).astype(z.dtype)


def _step_fwd(z, theta, bandwidth, to_pre):
  return step_fn(z, theta, bandwidth, to_pre), (z, theta)


def _step_bwd(bandwidth, to_pre, res, g):
  z, theta = res
  kern = (1.0 / bandwidth) * _rect((z - theta) / bandwidth) * g
  return (kern if to_pre else jnp.zeros_like(z)), _sum_to(-kern, theta)


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
