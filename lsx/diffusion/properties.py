"""Asyrp's claims about h-space, measured with a factor oracle (Kwon et al. 2023).

On an `EditGenerator` (codes [x_T, c]; c_k edits along h-direction k) and an oracle that
reads factor indices from images, each function returns numbers a claim can be checked
against (factor values in units of their range, index / (size - 1)):

- `homogeneity`: one Δh has the same effect on every sample: the mean change of each
  factor over the anchors and its coefficient of variation across them (std / |mean|;
  0: the same change everywhere);
- `linearity`: scaling Δh scales the effect: the mean factor change at each edit scale
  and the R² of a line through the origin fitted to it (1: linear);
- `composition`: composing Δh composes the effects: the image-space error of
  G(c u_a + c u_b) against G(c u_a) + G(c u_b) - G(0), relative to the composed edit's
  own change, and the same for the factor changes;
- `robustness`: edits of h leave valid images where perturbing x_T by the same image
  change does not: the validity (`lsx.metrics.sample_quality`) of samples edited by random
  h-directions against samples whose x_T moved so that the images change by as much;
- `inversion_quality`: real images through DDIM inversion and sampling (or the exact
  DPM-Encoder): per-pixel MSE and the share the oracle reads as the same factors.

And Park et al.'s two claims about the pullback geometry (2023, "Understanding the latent
space of diffusion models through the lens of Riemannian geometry"), `pullback_geometry`:
tangent spaces (the top right singular vectors of ∂h/∂x_t) are shared across samples
early in the reverse process and not late, and an edit along the top direction early
changes coarse attributes, late fine ones.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lsx.diffusion import directions as hdirs, process
from lsx.metrics.sample_quality import sample_quality


def _read(oracle: Callable, images, sizes) -> np.ndarray:
  f, _ = oracle(images)
  return np.asarray(f, np.float64) / np.maximum(np.asarray(sizes, np.float64) - 1, 1)


def _edited(gen, k: int, c: float, anchors: int):
  z = gen.z[:int(anchors)]
  return gen.generate(z.at[:, gen.x_dim + int(k)].set(float(c)))


def homogeneity(gen, oracle: Callable, sizes, k: int, c: float, anchors: int = 32) -> dict:
  """{"mean" [J], "cv" [J]} of each factor's change by direction k at scale c."""
  base = _read(oracle, gen.generate(gen.z[:int(anchors)]), sizes)
  change = _read(oracle, _edited(gen, k, c, anchors), sizes) - base
  mean, std = change.mean(0), change.std(0)
  return {"mean": mean, "cv": std / np.maximum(np.abs(mean), 1e-12)}


def linearity(gen, oracle: Callable, sizes, k: int, scales, anchors: int = 32) -> dict:
  """{"scales", "change" [S, J] (mean factor change at each scale), "r2" [J]}: R² of the
  least-squares line through the origin, change_j(c) = a_j c."""
  base = _read(oracle, gen.generate(gen.z[:int(anchors)]), sizes)
  s = np.asarray(scales, np.float64)
  ch = np.stack([(_read(oracle, _edited(gen, k, c, anchors), sizes) - base).mean(0)
                 for c in s])
  a = (s[:, None] * ch).sum(0) / max((s ** 2).sum(), 1e-12)
  resid = ((ch - s[:, None] * a) ** 2).sum(0)
  total = ((ch - ch.mean(0)) ** 2).sum(0)
  return {"scales": s, "change": ch, "r2": 1.0 - resid / np.maximum(total, 1e-12)}


def composition(gen, oracle: Callable, sizes, ka: int, kb: int, c: float,
                anchors: int = 32) -> dict:
  """{"image_error", "factor_error"}: |G(a + b) - (G(a) + G(b) - G(0))| relative to
  |G(a + b) - G(0)| in pixels, and the same for the oracle's factor readings."""
  z = gen.z[:int(anchors)]
  col = lambda k: gen.x_dim + int(k)
  g0 = gen.generate(z)
  ga = gen.generate(z.at[:, col(ka)].set(float(c)))
  gb = gen.generate(z.at[:, col(kb)].set(float(c)))
  gab = gen.generate(z.at[:, col(ka)].set(float(c)).at[:, col(kb)].set(float(c)))
  err = lambda x0, xa, xb, xab: float(np.linalg.norm(np.asarray(xab - (xa + xb - x0)))
                                      / max(np.linalg.norm(np.asarray(xab - x0)), 1e-12))
  r = lambda g: _read(oracle, g, sizes)
  return {"image_error": err(g0, ga, gb, gab), "factor_error": err(r(g0), r(ga), r(gb), r(gab))}


def robustness(gen, oracle: Callable, dataset, c: float, *, anchors: int = 32, seed: int = 0,
               threshold: float | None = None) -> dict:
  """{"h_validity", "x_validity", "image_change", "x_step"}: the validity of samples
  edited by a random unit combination of the generator's directions at scale c (a
  generator of random h-directions gives Asyrp's random Δh), and of samples whose x_T
  moved along a random direction by the step (bisected) that changes the images as much."""
  z = gen.z[:int(anchors)]
  g0 = gen.generate(z)
  d = gen.k
  u = jax.random.normal(jax.random.key(seed), (d,))
  zh = z.at[:, gen.x_dim:].set(float(c) * u / jnp.linalg.norm(u))
  gh = gen.generate(zh)
  change = float(jnp.mean(jnp.sqrt(jnp.sum((gh - g0) ** 2, axis=(1, 2, 3)))))
  v = jax.random.normal(jax.random.key(seed + 1), (gen.x_dim,))
  v = v / jnp.linalg.norm(v)

  def moved(eps):
    return gen.generate(z.at[:, :gen.x_dim].add(eps * v))

  def image_change(eps):
    return float(jnp.mean(jnp.sqrt(jnp.sum((moved(eps) - g0) ** 2, axis=(1, 2, 3)))))
  lo, hi = 0.0, 1.0
  while image_change(hi) < change and hi < 1e3:  # bracket, then bisect the x_T step
    lo, hi = hi, hi * 2
  for _ in range(12):
    mid = (lo + hi) / 2
    lo, hi = (mid, hi) if image_change(mid) < change else (lo, mid)
  q = lambda x: sample_quality(x, oracle, dataset, threshold=threshold)["validity"]
  return {"h_validity": q(gh), "x_validity": q(moved(hi)), "image_change": change,
          "x_step": hi}


def inversion_quality(den, images, oracle: Callable, steps: int = 50, exact: bool = False,
                      rng=None) -> dict:
  """How well real images come back through the denoiser: {"mse" (per pixel, in [0, 1]
  image units), "same_factors" (the share of reconstructions the oracle reads as the same
  factors as their originals)} after DDIM inversion and DDIM sampling over `steps`, or,
  with `exact`, the DPM-Encoder and ancestral DDPM (lsx.diffusion.process)."""
  x0 = process.to_model(jnp.asarray(images))
  if exact:
    x_T, noises = process.dpm_encode(den.eps_fn, den.schedule, x0,
                                     jax.random.key(0) if rng is None else rng)
    back = process.ddpm_sample(den.eps_fn, den.schedule, x_T, noises)
  else:
    back = process.ddim_sample(den.eps_fn, den.schedule,
                               process.ddim_invert(den.eps_fn, den.schedule, x0, steps), steps)
  rec = process.to_image(back)
  f0, _ = oracle(jnp.asarray(images))
  f1, _ = oracle(rec)
  same = np.all(np.asarray(f0) == np.asarray(f1), axis=1)
  return {"mse": float(jnp.mean((rec - jnp.asarray(images)) ** 2)),
          "same_factors": float(same.mean())}


def measure(gen, random_gen, oracle: Callable, dataset, den, *, scale: float,
            anchors: int = 16, inversions: int = 32, inversion_steps: int = 20,
            seed: int = 0, log: Callable = print) -> dict:
  """Asyrp's four properties for the directions of `gen` (an EditGenerator), each
  direction judged on the factor it moves most, and the inversion round trips on
  `inversions` data images. `random_gen`: random h-directions (robustness's random Δh).
  Returns {"directions": per direction {"factor", "change", "cv", "r2"}, "composition",
  "robustness", "inversion": {"ddim", "exact"}} (module doc for each number)."""
  sizes = np.asarray(dataset.factor_sizes)
  names = list(dataset.factor_names)
  per = []
  scales = (-scale, -scale / 2, scale / 2, scale)
  for k in range(gen.k):
    hom = homogeneity(gen, oracle, sizes, k, scale, anchors)
    j = int(np.argmax(np.abs(hom["mean"])))
    lin = linearity(gen, oracle, sizes, k, scales, anchors)
    per.append({"direction": k, "factor": names[j], "change": float(hom["mean"][j]),
                "cv": float(hom["cv"][j]), "r2": float(lin["r2"][j])})
    log(f"properties: direction {k} moves {names[j]} by {hom['mean'][j]:+.3f} "
        f"(cv {hom['cv'][j]:.2f}, linearity R2 {lin['r2'][j]:.2f})")
  comp = composition(gen, oracle, sizes, 0, min(1, gen.k - 1), scale, anchors)
  rob = robustness(random_gen, oracle, dataset, scale, anchors=anchors, seed=seed)
  images, _ = dataset.sample(jax.random.key(seed + 7), int(inversions))
  inv = {"ddim": inversion_quality(den, images, oracle, inversion_steps),
         "exact": inversion_quality(den, images, oracle, exact=True,
                                    rng=jax.random.key(seed + 8))}
  log(f"properties: composition error {comp['image_error']:.3f} (images), robustness "
      f"validity h {rob['h_validity']:.2f} vs x_T {rob['x_validity']:.2f}, inversion MSE "
      f"DDIM {inv['ddim']['mse']:.2e} / exact {inv['exact']['mse']:.2e}")
  return {"scale": float(scale), "anchors": int(anchors), "directions": per,
          "composition": comp, "robustness": rob, "inversion": inv}


def pullback_geometry(den, oracle: Callable, sizes, factor_names, *, anchors: int = 8,
                      steps: int = 20, k: int = 4, iters: int = 10, early: float = 0.8,
                      late: float = 0.2, edit: float = 0.2, seed: int = 0,
                      log: Callable = print) -> dict:
  """Park et al.'s claims on `anchors` DDIM samples of `steps` steps, at the DDIM steps
  whose timesteps are nearest early * T and late * T. At each: the top-k pullback
  directions V_a [k, X] of every sample (`lsx.diffusion.directions.pullback_directions`,
  `iters` power iterations); "overlap", the mean over sample pairs of
  ‖V_a V_bᵀ‖²_F / k (1: the same subspace, k / X for random ones: "overlap_random"); and
  the edit x_t ± edit·sqrt(X)·v_1 (the top direction, both signs: its sign is arbitrary)
  continued by DDIM to x_0: "factor_change" (mean |change| of each factor read by the
  oracle, units of its range) and "image_change" (RMS per pixel, [0, 1] images).
  Returns {"early": {...}, "late": {...}} with "t" and "singular_values" [k] (mean)."""
  sizes = np.asarray(sizes)
  num = int(den.schedule.num_steps)
  ts = process.ddim_timesteps(num, int(steps))[::-1]
  shape = tuple(den.image_shape)
  x_dim = int(np.prod(shape))
  x_T = jax.random.normal(jax.random.key(int(seed)), (int(anchors),) + shape)
  sample = jax.jit(lambda x, start: process.ddim_sample(den.eps_fn, den.schedule, x, int(steps),
                                                        start=start), static_argnums=1)
  base = process.to_image(sample(x_T, 0))
  f_base = _read(oracle, base, sizes)
  out = {}
  x_t, at = x_T, 0  # the reverse process so far: x at step `at`, continued, not rerun
  for name, frac in (("early", early), ("late", late)):
    i = int(np.argmin(np.abs(ts - float(frac) * (num - 1))))
    t = int(ts[i])
    if i < at:
      x_t, at = x_T, 0
    if i > at:
      x_t = process.ddim_sample(den.eps_fn, den.schedule, x_t, int(steps), start=at, stop=i)
      at = i
    one = lambda x, key: hdirs.pullback_directions(den, x[None], t, int(k), int(iters), key)[:2]
    keys = jax.random.split(jax.random.key(int(seed) + 1), int(anchors))
    v, s = jax.jit(jax.vmap(one))(x_t, keys)  # [A, k, X], [A, k]
    g = jnp.einsum("akx,bjx->abkj", v, v)
    ov = np.asarray(jnp.sum(g ** 2, (2, 3))) / int(k)
    pairs = ov[np.triu_indices(int(anchors), 1)]
    step = float(edit) * np.sqrt(x_dim)
    changes, image_change = [], []
    for sign in (1.0, -1.0):
      moved = x_t + sign * step * v[:, 0].reshape(x_t.shape)
      img = process.to_image(sample(moved, i))
      changes.append(np.abs(_read(oracle, img, sizes) - f_base))
      image_change.append(float(jnp.sqrt(jnp.mean((img - base) ** 2))))
    change = np.concatenate(changes).mean(0)
    out[name] = {"t": t, "overlap": float(pairs.mean()), "overlap_std": float(pairs.std()),
                 "overlap_random": float(int(k) / x_dim),
                 "singular_values": np.asarray(s).mean(0).tolist(),
                 "factor_change": {str(n): float(c) for n, c in zip(factor_names, change)},
                 "image_change": float(np.mean(image_change))}
    top = max(out[name]["factor_change"], key=out[name]["factor_change"].get)
    log(f"pullback at t = {t} ({name}): tangent overlap {pairs.mean():.3f} ± {pairs.std():.3f} "
        f"(random {int(k) / x_dim:.4f}); the top direction moves {top} most "
        f"({out[name]['factor_change'][top]:.3f} of its range), images by "
        f"{out[name]['image_change']:.3f} RMS")
  return {"anchors": int(anchors), "k": int(k), "iters": int(iters), "edit": float(edit),
          **out}
