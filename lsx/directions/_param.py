"""Direction parameterizations: where a latent code moves for direction k.

Every parameterization is a `Directions` of pure functions of its own params pytree:
`unit(params, z [d], k) -> [d]`, the unit direction of k at z. A method moves a code by
`z + alpha * unit(params, z, k)` (LatentCLR, Yüksel et al. 2021: Delta_k(z) = alpha * n(.)).

  global       n(d_k)                       one vector per direction (LatentCLR "global")
  linear       n(M_k z)                     linear conditional
  nonlinear    n(MLP_k(z))                  nonlinear conditional (one MLP per direction)
  nonlinear_bn n(MLP_k(z)), 3 layers with batch norm: the public LatentCLR network
  householder  column k of U = H(v_1)...H(v_m), H(v) = I - 2 v v^T / |v|^2   (orthogonal)
  expm         column k of U = expm(S - S^T)                                (orthogonal)

The orthogonal kinds keep U^T U = I by construction (not by a penalty), so K <= d.

`nonlinear_bn` is the public LatentCLR direction network (latentclr @f02a70d,
conf/model/nonlinear.yaml depth 3, colat/utils/net_utils.py): per direction
Linear(d, h) -> BatchNorm -> ReLU -> Linear(h, h) -> BatchNorm -> ReLU -> Linear(h, d, no
bias), h = d, torch's default initialization. Batch norm reads the batch: training
(`batch_unit`) normalizes with the batch's statistics and returns them, and the objective's
`post_update` folds them into running statistics (`update_stats`: momentum 0.1, the
unbiased variance, as torch's BatchNorm1d); `unit` (every traversal and score) uses the
running statistics, as the public evaluator does after `model.eval()`. The running
statistics live in params["stats"], are never read by the training loss and are
overwritten after every optimizer step.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

KINDS = ("global", "linear", "nonlinear", "nonlinear_bn", "householder", "expm")
_EPS = 1e-8
BN_MOMENTUM, BN_EPS = 0.1, 1e-5  # torch.nn.BatchNorm1d's defaults


def normalize(v, axis=-1):
  return v / jnp.maximum(jnp.linalg.norm(v, axis=axis, keepdims=True), _EPS)


def householder_matrix(vs):
  """U = H(v_1) H(v_2) ... H(v_m) for vs [m, d]: an orthogonal [d, d] matrix."""
  d = vs.shape[1]

  def apply(u, v):  # u @ H(v) = u - 2 (u v) v^T / |v|^2
    v = normalize(v)
    return u - 2.0 * jnp.outer(u @ v, v), None

  u, _ = jax.lax.scan(apply, jnp.eye(d, dtype=vs.dtype), vs)
  return u


def skew_expm(s):
  """expm(S - S^T): an orthogonal [d, d] matrix (rotation)."""
  return jax.scipy.linalg.expm(s - s.T)


class Directions(NamedTuple):
  init: Callable  # rng -> params
  unit: Callable  # (params, z [d], k) -> unit direction [d]
  num: int
  dim: int
  kind: str
  # kinds whose network reads the batch (batch norm): (params, z [N, d], k) -> (units
  # [N, d], the batch's statistics) in training, and (params, stats [K, ...]) -> params,
  # the running statistics updated after a step; None for per-sample kinds
  batch_unit: Callable | None = None
  update_stats: Callable | None = None

  @property
  def conditional(self) -> bool:
    return self.kind in ("linear", "nonlinear", "nonlinear_bn")

  def batch_shift(self, params, z, k, alpha):
    """(z + alpha * units [N, d], the batch statistics or None): the training-mode shift of
    a batch of codes along direction k (per sample `shift` for per-sample kinds)."""
    if self.batch_unit is None:
      return jax.vmap(lambda zz: self.shift(params, zz, k, alpha))(z), None
    units, stats = self.batch_unit(params, z, k)
    return z + alpha * units, stats

  def matrix(self, params):
    """[K, d] unit directions of a global or orthogonal parameterization."""
    if self.conditional:
      raise ValueError(f"'{self.kind}' directions depend on z; use unit(params, z, k).")
    return jax.vmap(lambda k: self.unit(params, jnp.zeros((self.dim,)), k))(jnp.arange(self.num))

  def shift(self, params, z, k, alpha):
    """z + alpha * unit(params, z, k)."""
    return z + alpha * self.unit(params, z, k)


def make_directions(kind: str, num: int, dim: int, hidden: int | None = None,
                    num_reflections: int | None = None) -> Directions:
  """K=`num` directions in a `dim`-dimensional latent space (see module doc for kinds)."""
  num, dim = int(num), int(dim)
  if kind not in KINDS:
    raise ValueError(f"Unknown direction parameterization {kind!r}; choose one of {KINDS}.")
  if num < 1 or dim < 1:
    raise ValueError(f"need num >= 1 and dim >= 1 directions, got num={num}, dim={dim}.")
  if kind in ("householder", "expm") and num > dim:
    raise ValueError(f"{kind!r} directions are columns of an orthogonal {dim}x{dim} matrix: "
                     f"num={num} > dim={dim}. Use kind='global' for more directions than "
                     f"latent dimensions.")
  if kind == "nonlinear_bn":  # the public width: h = d
    return _batchnorm_directions(num, dim, int(hidden or dim))
  hidden = int(hidden or max(2 * dim, 32))

  if kind == "global":
    init = lambda rng: {"d": jax.random.normal(rng, (num, dim))}
    unit = lambda p, z, k: normalize(p["d"][k])
  elif kind == "linear":
    init = lambda rng: {"M": jax.random.normal(rng, (num, dim, dim)) / jnp.sqrt(dim)}
    unit = lambda p, z, k: normalize(p["M"][k] @ z)
  elif kind == "nonlinear":
    def init(rng):
      k1, k2 = jax.random.split(rng)
      return {"w1": jax.random.normal(k1, (num, dim, hidden)) / jnp.sqrt(dim),
              "b1": jnp.zeros((num, hidden)),
              "w2": jax.random.normal(k2, (num, hidden, dim)) / jnp.sqrt(hidden),
              "b2": jnp.zeros((num, dim))}

    def unit(p, z, k):
      h = jax.nn.gelu(z @ p["w1"][k] + p["b1"][k])
      return normalize(h @ p["w2"][k] + p["b2"][k])
  elif kind == "householder":
    m = int(num_reflections or dim)
    init = lambda rng: {"v": jax.random.normal(rng, (m, dim))}
    unit = lambda p, z, k: householder_matrix(p["v"])[:, k]
  else:  # expm
    init = lambda rng: {"S": 0.1 * jax.random.normal(rng, (dim, dim))}
    unit = lambda p, z, k: skew_expm(p["S"])[:, k]
  return Directions(init, unit, num, dim, kind)


def _torch_uniform(key, shape, fan_in):
  """torch.nn.Linear's default initialization (weights and biases): U(+-1/sqrt(fan_in))."""
  bound = 1.0 / jnp.sqrt(float(fan_in))
  return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


def _batchnorm_directions(num: int, dim: int, hidden: int) -> Directions:
  """The public LatentCLR nonlinear network with batch norm (module doc)."""
  def init(rng):
    ks = jax.random.split(rng, 5)
    ones, zeros = jnp.ones((num, hidden)), jnp.zeros((num, hidden))
    return {"w1": _torch_uniform(ks[0], (num, dim, hidden), dim),
            "b1": _torch_uniform(ks[1], (num, hidden), dim),
            "w2": _torch_uniform(ks[2], (num, hidden, hidden), hidden),
            "b2": _torch_uniform(ks[3], (num, hidden), hidden),
            "w3": _torch_uniform(ks[4], (num, hidden, dim), hidden),
            "g1": ones, "c1": zeros, "g2": ones, "c2": zeros,
            "stats": {"mean1": zeros, "var1": ones, "mean2": zeros, "var2": ones}}

  def net(p, z, k, norm):
    h = jax.nn.relu(norm(z @ p["w1"][k] + p["b1"][k], 1))
    h = jax.nn.relu(norm(h @ p["w2"][k] + p["b2"][k], 2))
    return h @ p["w3"][k]

  def affine(p, k, i, h, mean, var):
    return (h - mean) / jnp.sqrt(var + BN_EPS) * p[f"g{i}"][k] + p[f"c{i}"][k]

  def unit(p, z, k):  # evaluation: the running statistics
    s = p["stats"]
    return normalize(net(p, z, k, lambda h, i: affine(p, k, i, h, s[f"mean{i}"][k],
                                                      s[f"var{i}"][k])))

  def batch_unit(p, z, k):  # training: the batch's statistics, returned for the running ones
    if z.ndim != 2 or z.shape[0] < 2:
      raise ValueError(f"'nonlinear_bn' directions train on batches of >= 2 codes [N, d], "
                       f"got shape {z.shape}.")
    stats = {}

    def norm(h, i):
      mean, var = jnp.mean(h, 0), jnp.var(h, 0)
      n = h.shape[0]
      stats[f"mean{i}"], stats[f"var{i}"] = mean, var * n / (n - 1)
      return affine(p, k, i, h, mean, var)
    return normalize(net(p, z, k, norm)), stats

  def update_stats(p, batch_stats, running=None):
    """Running statistics <- (1 - momentum) * running + momentum * batch, for every
    direction (`batch_stats`: [K, h] leaves, the K directions' batch statistics;
    `running`: the statistics before the step, default p["stats"])."""
    new = jax.tree.map(lambda r, b: (1 - BN_MOMENTUM) * r + BN_MOMENTUM * b,
                       p["stats"] if running is None else running, batch_stats)
    return {**p, "stats": new}

  return Directions(init, unit, num, dim, "nonlinear_bn", batch_unit, update_stats)


def fixed_directions(matrix) -> tuple[Directions, dict]:
  """A closed-form result [K, d] as a global `Directions` and its params."""
  matrix = jnp.asarray(matrix, jnp.float32)
  if matrix.ndim != 2:
    raise ValueError(f"directions must be a [K, d] matrix, got shape {matrix.shape}.")
  return make_directions("global", *matrix.shape), {"d": matrix}


def walk_path(directions: Directions, params, z, k, num_steps: int, step_size):
  """The points [num_steps, d] after z of the walk z <- z + step_size * unit(z) along
  direction k (a negative step_size walks the other way)."""
  def body(zz, _):
    zz = zz + step_size * directions.unit(params, zz, k)
    return zz, zz
  return jax.lax.scan(body, z, None, length=num_steps)[1]


def traverse(directions: Directions, params, z, k, num_steps: int, step_size):
  """The path [2*num_steps+1, d] through z along direction k, both ways: the negative
  branch (reversed), z, the positive branch. Conditional directions are followed as a
  field (re-evaluated at every step: z <- z +/- step_size * unit(z)); for global and
  orthogonal directions this is the straight line z + s * step_size * u_k."""
  back = walk_path(directions, params, z, k, num_steps, -step_size)
  forth = walk_path(directions, params, z, k, num_steps, step_size)
  return jnp.concatenate([back[::-1], z[None], forth], 0)
