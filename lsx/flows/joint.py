"""Potential flows as a VAE regularizer, trained jointly on one-factor sequences.

The paper's second use (Song et al. 2023, sec. on learning from sequences): a VAE and K
potentials are trained together on image sequences in which one ground-truth factor moves
at a constant speed; the sequence's transformation names the potential (weak supervision:
which factor moves, never its values). The flow started at the code of the first frame
must land on the codes of later frames, and its endpoint must decode to the frame.

Time convention (as the public code): the path z_0, z_1, ... starts from a sample of
q(z | x_0); the initial condition L_IC keeps the first step at rest, so frame t of the
sequence is the path point z_{t+1}. Per sample, with frames x_0, x_t, x_{t+1} and codes
e_t, e_{t+1} (posterior means: the public code matches samples, whose noise only adds a
constant to the loss):

  L_vae    = ELBO_beta(x_0) + [rec(x_{t+1} | G(z_{t+2})) + beta KL(q(z | x_{t+1}))]
  L_latent = |(e_{t+1} - e_t) - (z_{t+2} - z_{t+1})|^2 + |e_t - z_{t+1}|^2
  L_flow   = L_IC + L_PDE (wave residual on the path)
  total    = L_vae + lambda_latent L_latent + lambda_pde L_flow - lambda_jvp L_JVP

with L_JVP = |J_G(z_{t+1}) grad u_k|^2 (rewarded; the public code weighs it with
lambda_pde, i.e. lambda_jvp = lambda_pde. The reward is unbounded and the sequences already
fix how far each step moves, so configs/flows_joint_sprites.py sets lambda_jvp = 0).
Sequences run either way (`sign`): a factor that decreases is followed down the negative
gradient, the traversal's reverse direction, so both directions are trained.

with every weight (beta, lambda_latent, lambda_pde, lr) traced in `hp`. `hp.flow_terms` = 0
trains the same VAE on the same frames without any flow term (the control of the paper's
likelihood claim): frame t+1 is reconstructed from its own posterior sample instead of
the flow's z_{t+2} and every lambda is multiplied by 0, so the flows get no gradient;
1 (default) is the objective above (values between select nothing meaningful: the codes
are interpolated). Being traced, both can be members of one sweep. Unlike the public
code each sample has its own potential and time, the Laplacian is exact (or Hutchinson),
and the squared distances are summed over latent dimensions (the public code averages
them over dimensions as well, a factor 1/d).

Batches are rendered on device from factor indices (`sequence_batch`), so a run needs no
sequence data on disk.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from lsx.flows import (Flow, initial_condition_loss, jvp_reward, path_pde_terms,
                       traverse)
from lsx.latents import gaussian_kl
from lsx.models.objectives import neg_log_likelihood

JOINT_HP_DEFAULTS = {"beta": 1.0, "lambda_latent": 1.0, "lambda_pde": 1.0, "lambda_jvp": 1.0,
                     "flow_terms": 1.0,
                     "lr": 1e-3}


def check_transforms(dataset, transforms: Sequence[int], speeds: Sequence[int],
                     path_len: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """Validated (transforms, speeds): factor indices that move, index units per frame."""
  transforms = tuple(int(f) for f in transforms)
  speeds = tuple(int(s) for s in speeds)
  sizes = dataset.factor_sizes
  if not transforms:
    raise ValueError("transforms must name at least one factor that moves.")
  if len(speeds) != len(transforms):
    raise ValueError(f"speeds has {len(speeds)} entries for {len(transforms)} transforms; "
                     f"give one speed (index units per frame) per moving factor.")
  if int(path_len) < 3:
    raise ValueError(f"path_len must be >= 3 (frames t and t+1 are path points t+1, t+2), "
                     f"got {path_len}.")
  for f, s in zip(transforms, speeds):
    if not 0 <= f < len(sizes):
      raise ValueError(f"transform factor {f} is out of range for the dataset's "
                       f"{len(sizes)} factors {tuple(dataset.factor_names)}.")
    if s < 1 or (int(path_len) - 1) * s > sizes[f] - 1:
      name = dataset.factor_names[f]
      raise ValueError(f"a sequence of {path_len - 1} moves at speed {s} does not fit the "
                       f"{sizes[f]} values of factor {name!r}: lower the speed or path_len.")
  return transforms, speeds


def sequence_batch(dataset, rng, n: int, transforms: Sequence[int], speeds: Sequence[int],
                   path_len: int) -> dict:
  """A batch of one-factor sequences rendered from factor indices.

  Per sample: the moving factor `k` (an index into `transforms`), a direction `sign`
  (+1 or -1), a time t in [0, path_len - 2], and frames x0, xt, xt1 whose factors equal
  except that factor transforms[k] is moved by sign * t * speed and sign * (t + 1) * speed.
  The start is drawn so the whole sequence stays inside the factor's range (no
  wrap-around jump). Returns {"x0", "xt", "xt1" [n, H, W, C], "k", "t" [n] int32,
  "sign" [n] float32, "factors" [n, 3, F]}."""
  tr = jnp.asarray(transforms, jnp.int32)
  sp = jnp.asarray(speeds, jnp.int32)
  sizes = jnp.asarray(dataset.factor_sizes, jnp.int32)
  k_f, k_k, k_t, k_s, k_d = jax.random.split(rng, 5)
  base = dataset.sample_factors(k_f, n)
  k = jax.random.randint(k_k, (n,), 0, len(transforms))
  t = jax.random.randint(k_t, (n,), 0, path_len - 1)
  col, speed = tr[k], sp[k]
  room = sizes[col] - (path_len - 1) * speed  # starts that keep the sequence in range
  start = jnp.floor(jax.random.uniform(k_s, (n,)) * room).astype(jnp.int32)
  down = jax.random.bernoulli(k_d, 0.5, (n,))
  start = jnp.where(down, sizes[col] - 1 - start, start)
  sign = jnp.where(down, -1, 1).astype(jnp.int32)
  onehot = jax.nn.one_hot(col, base.shape[1], dtype=jnp.int32)

  def at(step):
    return base * (1 - onehot) + onehot * (start + sign * step * speed)[:, None]

  f0, ft, ft1 = at(jnp.zeros_like(t)), at(t), at(t + 1)
  images = dataset.render(jnp.concatenate([f0, ft, ft1], 0))
  x0, xt, xt1 = jnp.split(images, 3)
  return {"x0": x0, "xt": xt, "xt1": xt1, "k": k, "t": t, "sign": sign.astype(jnp.float32),
          "factors": jnp.stack([f0, ft, ft1], 1)}


def make_joint_objective(model, flow: Flow, *, path_len: int, likelihood: str = "bernoulli",
                         laplacian_mode: str = "exact", num_probes: int = 8,
                         normalize_jvp: bool = False, jvp_reduction: str = "mean") -> Callable:
  """`loss(params, batch, rng, hp) -> (scalar, aux)` with params = {"vae", "flow"}, a
  `sequence_batch` and traced hp {beta, lambda_latent, lambda_pde, lambda_jvp} (module
  docstring)."""
  if laplacian_mode not in ("exact", "hutchinson"):
    raise ValueError(f"laplacian_mode must be 'exact' or 'hutchinson', got {laplacian_mode!r}.")
  if jvp_reduction not in ("sum", "mean"):
    raise ValueError(f"jvp_reduction must be 'sum' or 'mean', got {jvp_reduction!r}.")
  if flow.dim != model.latent_dim:
    raise ValueError(f"the flow's dimension {flow.dim} differs from the VAE's latent_dim "
                     f"{model.latent_dim}.")
  path_len = int(path_len)

  def loss(params, batch, rng, hp):
    vp, fp = params["vae"], params["flow"]
    b = batch["x0"].shape[0]
    k_z, k_h = jax.random.split(rng)
    stats = model.encode(vp, jnp.concatenate([batch["x0"], batch["xt"], batch["xt1"]], 0))
    z0 = model.bottleneck.sample({n: v[:b] for n, v in stats.items()}, k_z)
    _, et, et1 = jnp.split(stats["mean"], 3)  # targets: the codes of frames t and t+1
    kl = gaussian_kl(stats["mean"], stats["logvar"])
    kl0, kl1 = kl[:b], kl[2 * b:]
    ks, ts, signs = batch["k"], batch["t"], batch["sign"]
    paths = jax.vmap(lambda z, k, s: traverse(flow.potential, fp, z, k, path_len, s))(z0, ks, signs)
    take = lambda i: jnp.take_along_axis(paths, i[:, None, None], 1)[:, 0]
    z1, z2 = take(ts + 1), take(ts + 2)  # frames t and t+1
    # flow_terms = 0: frame t+1 decoded from its own posterior sample (the control VAE);
    # 1: from the flow's z_{t+2}. One decode either way (the codes are selected)
    on = hp.get("flow_terms", 1.0)
    z_own = model.bottleneck.sample({n: v[2 * b:] for n, v in stats.items()},
                                    jax.random.fold_in(k_z, 1))
    logits = model.decode(vp, jnp.concatenate([z0, on * z2 + (1.0 - on) * z_own], 0))
    rec = neg_log_likelihood(logits, jnp.concatenate([batch["x0"], batch["xt1"]], 0), likelihood)
    rec0, rec1 = rec[:b].mean(), rec[b:].mean()
    l_vae = rec0 + hp["beta"] * kl0.mean() + rec1 + hp["beta"] * kl1.mean()
    l_latent = jnp.mean(jnp.sum(((et1 - et) - (z2 - z1)) ** 2, 1) + jnp.sum((et - z1) ** 2, 1))

    l_ic = initial_condition_loss(flow, fp, z0, ks)
    l_pde, pde_rel = path_pde_terms(flow, fp, paths, ks, k_h, mode=laplacian_mode,
                                    num_probes=num_probes)
    image = lambda zz: model.generate(vp, zz)
    l_jvp = jvp_reward(flow, fp, image, z1, (ts + 1).astype(jnp.float32), ks, normalize_jvp,
                       jvp_reduction)
    total = (l_vae + on * (hp["lambda_latent"] * l_latent + hp["lambda_pde"] * (l_ic + l_pde)
                           - hp["lambda_jvp"] * l_jvp))
    return total, {"rec": rec0, "kl": kl0.mean(), "rec_next": rec1, "latent": l_latent,
                   "ic": l_ic, "pde": l_pde, "pde_rel": pde_rel, "jvp": l_jvp}

  return loss


def equivariance_error(model, vae_params, flow: Flow, flow_params, batch: dict, path_len: int):
  """||G(z_{t+2}) - x_{t+1}|| [n] (L2 over pixels of the decoder's mean image): each
  `sequence_batch` sample's flow started at the posterior mean of x_0, followed along its
  potential and sign to frame t+1's path point, decoded and compared with frame t+1."""
  z0 = model.encode(vae_params, batch["x0"])["mean"]
  paths = jax.vmap(lambda z, k, s: traverse(flow.potential, flow_params, z, k, int(path_len), s))(
      z0, batch["k"], batch["sign"])
  z2 = jnp.take_along_axis(paths, (batch["t"] + 2)[:, None, None], 1)[:, 0]
  diff = model.generate(vae_params, z2) - batch["xt1"]
  return jnp.sqrt(jnp.sum(diff.reshape(diff.shape[0], -1) ** 2, -1))
