"""Potential-flow traversals (Song, Keller, Sebe, Welling, ICML 2023): the pure pieces.

K potentials u_k(z, t): an MLP per potential (hidden width `hidden` = d by default, tanh;
the output bounded to (-1, 1) by a last tanh, as the paper's, or left linear) fed with z
and a sinusoidal embedding of t passed through GELU; each has a learnable wave speed c_k
(init 1); the networks, in lsx's form and the public code's, and the frame classifier are
in `lsx.flows.nets`. A traversal follows the potential's gradient:
z_{t+1} = z_t + sign * grad_z u_k(z_t, t).

All derivatives are exact autodiff, per sample (the public code shares one t across the
batch and uses a Hessian row-sum in place of the Laplacian):
- `laplacian(..., mode="exact")`: trace of `jax.hessian` (d Hessian-vector products);
- `mode="hutchinson"`: E_v[v^T H v] with Rademacher v, `num_probes` probes, unbiased;
- d2u/dt2 by nested forward-mode `jvp`.
Losses (Song et al. 2023, sec. 3): L_IC = mean |grad u_k(z0, 0)|^2, L_PDE = mean over the rolled-out path
of (d2u/dt2 - c_k^2 lap u)^2, L_JVP = mean |J_G(z) grad u_k|^2 (rewarded; the squared
image change averaged over pixels by default, as the public code, or summed).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


from lsx.flows.nets import (CLASSIFIERS, FLOW_OUTPUTS, JVP_REDUCTIONS,  # noqa: F401
                            POTENTIAL_INITS, POTENTIAL_NETS, SPEEDS, Flow, FrameClassifier,
                            Potentials, frame_classifier, make_flow, time_embedding,
                            torch_linear_init)


def velocity(potential: Callable, params, z, t, k):
  """grad_z u_k(z, t) for one sample."""
  return jax.grad(potential, argnums=1)(params, z, t, k)


def step(potential: Callable, params, z, t, k, sign=1.0):
  """One traversal step z_{t+1} = z_t + sign * grad_z u_k(z_t, t)."""
  return z + sign * velocity(potential, params, z, t, k)


def traverse(potential: Callable, params, z, k, steps: int, sign=1.0):
  """Path [steps + 1, d] from z along potential k (sign +1 or -1); pure, vmappable."""
  def body(z, t):
    nz = step(potential, params, z, t.astype(jnp.float32), k, sign)
    return nz, nz
  _, path = jax.lax.scan(body, z, jnp.arange(steps))
  return jnp.concatenate([z[None], path], 0)


def laplacian(fn: Callable, z, *, mode: str = "exact", rng=None, num_probes: int = 8):
  """Laplacian of a scalar fn at z [d]: exact (trace of the Hessian) or Hutchinson."""
  if mode == "exact":
    return jnp.trace(jax.hessian(fn)(z))
  if mode == "hutchinson":
    if rng is None:
      raise ValueError("Hutchinson's estimator needs an rng.")
    v = jax.random.rademacher(rng, (num_probes,) + z.shape, jnp.float32)
    hvp = lambda u: jax.jvp(jax.grad(fn), (z,), (u,))[1]
    return jnp.mean(jax.vmap(lambda u: jnp.vdot(u, hvp(u)))(v))
  raise ValueError(f"laplacian mode must be 'exact' or 'hutchinson', got {mode!r}.")


def d2_dt2(fn_t: Callable, t):
  """Second derivative of a scalar function of scalar t (nested forward mode)."""
  first = lambda s: jax.jvp(fn_t, (s,), (jnp.ones_like(s),))[1]
  return jax.jvp(first, (t,), (jnp.ones_like(t),))[1]


def wave_terms(flow: Flow, params, z, t, k, *, mode="exact", rng=None, num_probes=8):
  """(d2u/dt2, c_k^2 lap_z u) at one (z, t): the two sides of the wave equation."""
  u_z = lambda zz: flow.potential(params, zz, t, k)
  u_t = lambda tt: flow.potential(params, z, tt, k)
  lap = laplacian(u_z, z, mode=mode, rng=rng, num_probes=num_probes)
  return d2_dt2(u_t, jnp.asarray(t, jnp.float32)), flow.speed(params, k) ** 2 * lap


def wave_residual(flow: Flow, params, z, t, k, *, mode="exact", rng=None, num_probes=8):
  """d2u/dt2 - c_k^2 lap_z u at one (z, t): the wave-equation residual."""
  u_tt, c2_lap = wave_terms(flow, params, z, t, k, mode=mode, rng=rng, num_probes=num_probes)
  return u_tt - c2_lap


def initial_condition_loss(flow: Flow, params, z0, ks):
  """L_IC = mean over the batch of |grad u_k(z0, 0)|^2 (potentials start at rest)."""
  return jnp.mean(jax.vmap(lambda z, k: jnp.sum(velocity(flow.potential, params, z, 0.0, k) ** 2))(z0, ks))


def path_pde_terms(flow: Flow, params, paths, ks, rng, *, mode="exact", num_probes=8):
  """(L_PDE, relative residual) on rolled-out paths [B, T+1, d], each point at its own time.

  L_PDE = mean squared wave residual (the path is data: stop-gradient, as in the paper;
  residuals where the flow went). The relative residual, a diagnostic outside the
  gradient, is sum (u_tt - c^2 lap u)^2 / sum (u_tt^2 + (c^2 lap u)^2): 0 when the two
  sides balance, about 1 when they are unrelated (a fresh network), whatever the
  potential's scale — L_PDE itself grows with the potential the other losses shape."""
  b, n = paths.shape[:2]
  times = jnp.arange(n, dtype=jnp.float32)
  probes = jax.random.split(rng, b * n).reshape(b, n)
  u_tt, c2_lap = jax.vmap(lambda path, k, keys: jax.vmap(
      lambda z, t, key: wave_terms(flow, params, jax.lax.stop_gradient(z), t, k,
                                   mode=mode, rng=key, num_probes=num_probes))(
      path, times, keys))(paths, ks, probes)
  res2 = (u_tt - c2_lap) ** 2
  rel = jnp.sum(res2) / (jnp.sum(u_tt ** 2 + c2_lap ** 2) + 1e-30)
  return jnp.mean(res2), jax.lax.stop_gradient(rel)


def path_pde_loss(flow: Flow, params, paths, ks, rng, *, mode="exact", num_probes=8):
  """L_PDE of `path_pde_terms` alone."""
  return path_pde_terms(flow, params, paths, ks, rng, mode=mode, num_probes=num_probes)[0]


def jvp_reward(flow: Flow, params, image_fn: Callable, z, ts, ks, normalize: bool = False,
               reduction: str = "mean"):
  """L_JVP = mean over the batch of |J_G(z) grad u_k(z, t)|^2 with G = `image_fn`
  ([n, d] -> images); `reduction` 'sum' sums the squared image change over pixels, 'mean'
  averages it (the public code's torch.mean: 1/(H W C) of 'sum', so the reward does not
  grow with the image size and does not outweigh L_cls and L_PDE at lambda = 1);
  `normalize`: for the unit direction of the velocity (image change per unit of latent
  motion, not the speed)."""
  if reduction not in JVP_REDUCTIONS:
    raise ValueError(f"jvp reduction must be one of {JVP_REDUCTIONS}, got {reduction!r}.")
  red = jnp.sum if reduction == "sum" else jnp.mean

  def one(zz, t, k):
    v = velocity(flow.potential, params, zz, t, k)
    if normalize:
      v = v / (jnp.linalg.norm(v) + 1e-6)
    return red(jax.jvp(lambda x: image_fn(x[None])[0], (zz,), (v,))[1] ** 2)
  return jnp.mean(jax.vmap(one)(z, ts, ks))


CONVENTIONS = ("lsx", "reference")
# the frame classifier's labels in the reference objective: the batch's one potential (the
# public trainer) or each sample its own (an lsx option; lsx's convention always is)
CLASSIFIER_LABELS = ("batch", "mixed")


def hessian_row_sums(fn: Callable, z):
  """H(z) 1 for a scalar fn at z [d]: the public code's `grad(u_z.sum(), z)` (one
  Hessian-vector product), which it uses in place of the Laplacian trace(H)."""
  return grad_and_row_sums(fn, z)[1]


def grad_and_row_sums(fn: Callable, z):
  """(grad fn(z), H(z) 1) of a scalar fn at z [d] in one forward-over-reverse pass (the
  gradient is the primal output of the Hessian-vector product)."""
  return jax.jvp(jax.grad(fn), (z,), (jnp.ones_like(z),))


def reference_wave_loss(flow: Flow, params, image_fn: Callable, z0, k, t_star, steps: int,
                        jvp_reduction: str = "mean"):
  """The wave loss of the public code (PDETraversal @82083f5, lib/WavePDE.py `forward`)
  for one potential `k` and one time `t_star` (0 <= t* <= steps - 2, as the public
  trainer draws it) shared by the batch z0 [B, d].

  Rolls z_{i+1} = z_i + grad u_k(z_i, i) for i < `steps` (= num_support_timesteps // 2),
  keeping the gradient through the path, and returns (loss, z_{t*+1}, z_{t*+2}, parts):
    L_IC  = mean over batch and latent dims of grad u_k(z0, 0)^2;
    L_PDE = (1/steps) sum_i mean over batch and dims of (U_tt(i) - c_k^2 (H_b 1))^2, where
            U_tt(i) = sum over the batch of d2u/dt2 (t is one tensor shared by the batch,
            so autograd sums the per-sample derivatives) and H_b 1 the row sums of each
            sample's Hessian;
    L_JVP = mean over batch and pixels of (J_G(z_{t*+1}) grad u_k(z_{t*+1}, t*+1))^2
            (`jvp_reduction` 'sum': summed over pixels, an lsx option);
    loss  = L_IC + L_PDE - L_JVP.
  The velocity is computed once per path point (with the Hessian row sums, in one pass):
  L_IC reads the velocity at point 0 and L_JVP the one at point t*+1 (the public code
  recomputes both). `parts` adds "speed", the mean |grad u| over the path (a diagnostic
  outside the gradient)."""
  pot = lambda z, t: flow.potential(params, z, t, k)
  c2 = flow.speed(params, k) ** 2
  z, points, vels = z0, [z0], []
  l_pde, num, den = 0.0, 0.0, 0.0
  for i in range(int(steps)):
    t = jnp.float32(i)
    v, rows = jax.vmap(lambda zz: grad_and_row_sums(lambda q: pot(q, t), zz))(z)
    u_tt = jnp.sum(jax.vmap(lambda zz: d2_dt2(lambda tt: pot(zz, tt), t))(z))
    res2 = (u_tt - c2 * rows) ** 2
    l_pde = l_pde + jnp.mean(res2)
    num = num + jnp.sum(res2)
    den = den + jnp.sum(u_tt ** 2 + (c2 * rows) ** 2)
    z = z + v
    vels.append(v)
    points.append(z)
  l_ic = jnp.mean(vels[0] ** 2)
  l_pde = l_pde / int(steps)
  # the public code computes L_JVP and the pair at i == t* inside the loop: the same
  # numbers from the kept path (z_{t*+1} = z_{t*} + v_{t*}, its velocity v_{t*+1})
  points, vels = jnp.stack(points), jnp.stack(vels)
  lat1, v1, lat2 = points[t_star + 1], vels[t_star + 1], points[t_star + 2]
  jv = jax.jvp(image_fn, (lat1,), (v1,))[1] ** 2
  l_jvp = jnp.mean(jv) if jvp_reduction == "mean" else jnp.sum(jv) / jv.shape[0]
  speed = jnp.mean(jnp.linalg.norm(vels, axis=-1))
  sg = jax.lax.stop_gradient
  return l_ic + l_pde - l_jvp, lat1, lat2, {"ic": l_ic, "pde": l_pde, "pde_rel": sg(num / (den + 1e-30)),
                                            "jvp": l_jvp, "speed": sg(speed)}


def image_change(xa, xb):
  """Mean over the batch of ||x_b - x_a|| (the L2 norm over an image's pixels): how far one
  flow step moves the decoded image (the protocols' image change, for one step)."""
  return jnp.mean(jnp.sqrt(jnp.sum((xb - xa).reshape(xa.shape[0], -1) ** 2, -1)))


def classifier_pairs(flow: Flow, params, z0, keys, path_len: int, *, per_sample: bool = True,
                     reflect: bool = True):
  """(z_a, z_b, labels [B]) for the frame classifier from codes z0 [B, d]: a potential k
  (each sample its own with `per_sample`, else one for the batch, from keys[0]), a time
  t* ~ U{0 .. path_len - 2} per sample (keys[1]), the path z_{i+1} = z_i + grad u_k(z_i, i)
  over `path_len` steps (the gradient kept), the pair (z_{t*+1}, z_{t*+2}) and, with
  `reflect`, the reflected pair (2 z0 - z_{t*+2}, 2 z0 - z_{t*+1}) on a coin per sample (or
  per batch) from keys[2]."""
  k_k, k_t, k_r = keys
  n = z0.shape[0]
  shape = (n,) if per_sample else ()
  ks = jnp.broadcast_to(jax.random.randint(k_k, shape, 0, flow.num), (n,))
  flip = jnp.broadcast_to(jax.random.bernoulli(k_r, 0.5, shape), (n,))[:, None]
  ts = jax.random.randint(k_t, (n,), 0, int(path_len) - 1)
  path = jax.vmap(lambda z, k: traverse(flow.potential, params, z, k, int(path_len)))(z0, ks)
  za, zb = path[jnp.arange(n), ts + 1], path[jnp.arange(n), ts + 2]
  if reflect:
    za, zb = jnp.where(flip, 2 * z0 - zb, za), jnp.where(flip, 2 * z0 - za, zb)
  return za, zb, ks


def make_flow_objective(flow: Flow, decode: Callable, image_shape, *, path_len: int = 10,
                        laplacian_mode: str = "exact", num_probes: int = 8,
                        normalize_jvp: bool = False, jvp_reduction: str = "mean",
                        convention: str = "lsx", classifier: str = "mlp",
                        classifier_width: int = 0, classifier_labels: str = ""):
  """(init_classifier, loss) for training K potentials on a frozen generator `decode`.

  `loss(params, z0 [B, d], rng, hp) -> (scalar, aux)` with params = {"flow", "classifier"}
  and traced hp {"lambda_cls", "lambda_pde"}. Per sample: a potential k and a time t* are
  drawn; the path of `path_len` steps from z0 is rolled out; L_IC at (z0, 0), L_PDE on
  every point of the path at its own time, L_JVP = |J_G(z_t*) grad u_k|^2 (rewarded), and
  the classifier's cross-entropy on (G(z_{t*+1}), G(z_{t*+2})).
  `normalize_jvp=True` rewards |J_G u|^2 for the unit direction u of the velocity instead
  (an lsx option: the plain reward grows without bound with the speed of the flow);
  `jvp_reduction` ('sum' | 'mean' over pixels): `jvp_reward`.

  `convention='reference'`: the public code's computation instead (lib/trainer_vae.py and
  lib/WavePDE.py of PDETraversal @82083f5): one k and one t* ~ U{0 .. path_len - 2} for
  the whole batch, `path_len` = num_support_timesteps // 2 steps, the loss of
  `reference_wave_loss` (Hessian row sums for the Laplacian, the batch-summed u_tt, the
  gradient kept along the path, L_JVP at z_{t*+1} with the velocity at t*+1), and in half
  of the batches (a coin per batch) the classifier sees the reflected pair
  (G(2 z0 - z_{t*+2}), G(2 z0 - z_{t*+1})). `laplacian_mode` and `normalize_jvp` are
  lsx's options and do not apply to it; `jvp_reduction` 'mean' is the public one.

  hp "lambda_jvp" (traced, default 1 = the public weight) scales L_JVP inside the wave
  term: lambda_cls L_cls + lambda_pde (L_IC + L_PDE - lambda_jvp L_JVP).

  `classifier`: the frame classifier R, 'mlp' (lsx; K logits) or 'conv' (the public
  reconstructor: d logits, reparameterized; `FrameClassifier`), of width
  `classifier_width` (0: 128 for 'mlp', the latent width d for 'conv', as the public code).
  `classifier_labels` (reference form): 'batch' (default; the public trainer: the pair
  comes from the batch's one potential k, so every label of a batch is k) or 'mixed' (an
  lsx option: each sample its own potential k_i, time t*_i and reflection coin, its pair
  read off a path z_{i+1} = z_i + grad u_{k_i}(z_i, i) rolled out for the classifier with
  the gradient kept, while the wave terms keep the batch's one k and t*); lsx's
  convention always labels per sample ('' or 'mixed').
  The pair is decoded in one call. aux: the loss terms, "cls_acc" (the classifier's batch
  accuracy), "image_change" (`image_change` of the pair the classifier reads: one flow
  step) and, for the reference form, "speed" (mean |grad u| along the path).
  """
  import optax

  if laplacian_mode not in ("exact", "hutchinson"):
    raise ValueError(f"laplacian_mode must be 'exact' or 'hutchinson', got {laplacian_mode!r}.")
  if convention not in CONVENTIONS:
    raise ValueError(f"flows convention must be one of {CONVENTIONS}, got {convention!r}.")
  if convention == "reference" and int(path_len) < 2:
    raise ValueError(f"path_len must be >= 2 for the reference form (t* < path_len - 1), got {path_len}.")
  if convention == "lsx" and int(path_len) < 3:
    raise ValueError(f"path_len must be >= 3 (the classifier reads frames t*+1, t*+2), got {path_len}.")
  if jvp_reduction not in JVP_REDUCTIONS:
    raise ValueError(f"jvp_reduction must be one of {JVP_REDUCTIONS}, got {jvp_reduction!r}.")
  clf = frame_classifier(flow, classifier, classifier_width)
  labels = classifier_labels or ("batch" if convention == "reference" else "mixed")
  if labels not in CLASSIFIER_LABELS:
    raise ValueError(f"flows classifier_labels must be one of {CLASSIFIER_LABELS} (or '' for "
                     f"the convention's own), got {classifier_labels!r}.")
  if convention == "lsx" and labels != "mixed":
    raise ValueError("flows classifier_labels='batch' is the reference objective's; lsx's "
                     "convention labels every sample with its own potential (leave it '').")

  def init_classifier(rng):
    x = jnp.zeros((1,) + tuple(image_shape), jnp.float32)
    return clf.init(rng, x, x, rng)["params"]

  def classify(params, za, zb, labels, rng):
    """Decode the pair in one call; (cross-entropy, accuracy, image change)."""
    x = decode(jnp.concatenate([za, zb], 0))
    xa, xb = x[:za.shape[0]], x[za.shape[0]:]
    logits = clf.apply({"params": params["classifier"]}, xa, xb, rng)
    l_cls = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    acc = jnp.mean(jnp.argmax(logits, 1) == labels)
    return l_cls, acc, jax.lax.stop_gradient(image_change(xa, xb))

  def reference_loss(params, z0, rng, hp):
    fp = params["flow"]
    b = z0.shape[0]
    k_k, k_t, k_r = jax.random.split(rng, 3)
    k_c = jax.random.fold_in(rng, 1)  # the conv classifier's noise (the mlp takes none)
    k = jax.random.randint(k_k, (), 0, flow.num)
    t_star = jax.random.randint(k_t, (), 0, int(path_len) - 1)
    _, lat1, lat2, parts = reference_wave_loss(flow, fp, decode, z0, k, t_star, int(path_len),
                                               jvp_reduction)
    if labels == "mixed":  # each sample its own k, t* and coin (an lsx option)
      za, zb, ks = classifier_pairs(flow, fp, z0, jax.random.split(jax.random.fold_in(rng, 2), 3),
                                    int(path_len))
    else:
      ks, flip = jnp.full((b,), k), jax.random.bernoulli(k_r, 0.5)
      za = jnp.where(flip, 2 * z0 - lat2, lat1)
      zb = jnp.where(flip, 2 * z0 - lat1, lat2)
    l_cls, acc, change = classify(params, za, zb, ks, k_c)
    wave = parts["ic"] + parts["pde"] - hp.get("lambda_jvp", 1.0) * parts["jvp"]
    total = hp["lambda_cls"] * l_cls + hp["lambda_pde"] * wave
    return total, {**parts, "cls": l_cls, "cls_acc": acc, "image_change": change}

  def loss(params, z0, rng, hp):
    if convention == "reference":
      return reference_loss(params, z0, rng, hp)
    fp = params["flow"]
    b = z0.shape[0]
    k_k, k_t, k_h = jax.random.split(rng, 3)
    k_c = jax.random.fold_in(rng, 1)
    ks = jax.random.randint(k_k, (b,), 0, flow.num)
    ts = jax.random.randint(k_t, (b,), 0, path_len - 2)
    paths = jax.vmap(lambda z, k: traverse(flow.potential, fp, z, k, path_len))(z0, ks)
    l_ic = initial_condition_loss(flow, fp, z0, ks)
    l_pde, pde_rel = path_pde_terms(flow, fp, paths, ks, k_h, mode=laplacian_mode,
                                    num_probes=num_probes)
    zt = jnp.take_along_axis(paths, ts[:, None, None], 1)[:, 0]
    l_jvp = jvp_reward(flow, fp, decode, zt, ts.astype(jnp.float32), ks, normalize_jvp,
                       jvp_reduction)
    z1 = jnp.take_along_axis(paths, (ts + 1)[:, None, None], 1)[:, 0]
    z2 = jnp.take_along_axis(paths, (ts + 2)[:, None, None], 1)[:, 0]
    l_cls, acc, change = classify(params, z1, z2, ks, k_c)
    total = hp["lambda_cls"] * l_cls + hp["lambda_pde"] * (
        l_ic + l_pde - hp.get("lambda_jvp", 1.0) * l_jvp)
    return total, {"ic": l_ic, "pde": l_pde, "pde_rel": pde_rel, "jvp": l_jvp, "cls": l_cls,
                   "cls_acc": acc, "image_change": change}

  return init_classifier, loss


def flow_paths(flow: Flow, params, z, k, steps: int):
  """[2*steps+1, d]: the negative-direction path reversed, the anchor, the positive path."""
  up = traverse(flow.potential, params, z, k, steps)
  down = traverse(flow.potential, params, z, k, steps, sign=-1.0)
  return jnp.concatenate([down[::-1], up[1:]], 0)


def flow_traversal(flow: Flow, num_steps: int):
  """The flows as an `lsx.directions.Traversal`: each potential followed `num_steps` flow
  steps both ways; VP moves a code 1..num_steps steps either way (random per pair)."""
  import numpy as np


  def paths(params, anchors):
    along = jax.vmap(lambda z, k: flow_paths(flow, params, z, k, num_steps), in_axes=(0, None))
    return jax.vmap(along, in_axes=(None, 0))(anchors, jnp.arange(flow.num))

  def pairs(params, generate, anchors, rng):
    k, n = flow.num, anchors.shape[0]
    k_s, k_sign = jax.random.split(rng)
    steps = jax.random.randint(k_s, (k, n), 1, num_steps + 1)
    sign = jnp.where(jax.random.bernoulli(k_sign, 0.5, (k, n)), 1.0, -1.0)
    moved = lambda z, kk, s, sg: traverse(flow.potential, params, z, kk, num_steps, sign=sg)[s]
    z1 = jax.vmap(lambda kk, s, sg: jax.vmap(moved, in_axes=(0, None, 0, 0))(anchors, kk, s, sg))(
        jnp.arange(k), steps, sign)
    x0 = generate(anchors)
    x1 = generate(z1.reshape(k * n, -1)).reshape((k, n) + x0.shape[1:])
    return (x1 - x0[None]).reshape((k * n,) + x0.shape[1:]), jnp.repeat(jnp.arange(k), n)

  def ends(params, z, k, sign=1.0, scale=1.0):
    # a flow's path is what its potential makes it: `scale` does not apply (1 expected)
    del scale
    return jax.vmap(lambda zz, kk: traverse(flow.potential, params, zz, kk, num_steps,
                                            sign=sign)[-1])(z, k)

  return Traversal(paths, pairs, np.arange(-num_steps, num_steps + 1), ends, scalable=False)


from lsx.flows.joint import (JOINT_HP_DEFAULTS, check_transforms,  # noqa: E402
                             equivariance_error, make_joint_objective, sequence_batch)
from lsx.flows import family  # noqa: E402,F401  (the 'flows' training family)
from lsx.directions import Traversal
