"""The diffusion process as pure functions: a noise schedule made from traced
hyperparameters, the ε-prediction loss, DDIM and DDPM sampling, DDIM inversion, the
exact DDPM inversion, and h-space edits.

Timesteps are 0-indexed, t = 0 .. T-1, with ᾱ_t = Π_{s<=t} (1 - β_s) and
x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε (Ho et al. 2020). lsx's images are in [0, 1]; the
process runs on x = 2 image - 1 (`to_model`, `to_image`).

`eps_fn(x_t [n, ...], t [n] int32, delta_h or None) -> (ε̂, h)` is the denoiser (the
U-Net's apply on fixed parameters). Samplers scan over their timesteps (one compiled
body), so any number of DDIM steps compiles once per length.

- `ddim_sample`: DDIM (Song et al. 2021) with η (0: deterministic); with `delta_h` the
  h-space edit of Asyrp (Kwon et al. 2023): for t >= t_edit the edited ε̃ = ε(x_t, t, Δh)
  predicts x̂_0 while the direction term keeps the unedited ε (`asymmetric`), or both use
  ε̃ (`asymmetric=False`, Haas et al. 2024); below `t_boost` the steps are stochastic
  (η = 1: Asyrp's quality boost).
- `ddim_invert`: the deterministic DDIM inversion x_0 -> x_T (each step's ε evaluated at
  the next timestep from the current x, the usual approximation).
- `ddpm_sample` / `dpm_encode`: ancestral DDPM sampling with σ_t² = β_t, driven by given
  noises, and its exact inversion (the DPM-Encoder of CycleDiffusion, Wu & De la Torre
  2023): x_T and the noises z_t for which `ddpm_sample` reproduces x_0 exactly.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

SCHEDULE_HP = {"beta_start": 1e-4, "beta_end": 0.02}


class Schedule(NamedTuple):
  betas: jax.Array  # [T]
  alphas_cumprod: jax.Array  # [T]

  @property
  def num_steps(self) -> int:
    return self.betas.shape[0]


def linear_schedule(hp: dict, num_steps: int) -> Schedule:
  """β_t linear from hp['beta_start'] to hp['beta_end'] over `num_steps` (traced hp: a
  sweep varies the schedule)."""
  i = jnp.arange(int(num_steps), dtype=jnp.float32) / max(int(num_steps) - 1, 1)
  betas = hp["beta_start"] + (hp["beta_end"] - hp["beta_start"]) * i
  return Schedule(betas, jnp.cumprod(1.0 - betas))


def to_model(images):
  return 2.0 * images - 1.0


def to_image(x):
  return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)


def _bcast(v, x):
  return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


def q_sample(sched: Schedule, x0, t, noise):
  """x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε, t [n]."""
  ab = _bcast(sched.alphas_cumprod[t], x0)
  return jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * noise


def eps_loss(eps_fn: Callable, sched: Schedule, x0, rng):
  """The ε-prediction loss (Ho et al. 2020's L_simple): mean over the batch of
  ||ε̂(x_t, t) - ε||² / (pixels), t uniform in 0 .. T-1."""
  k_t, k_e = jax.random.split(rng)
  t = jax.random.randint(k_t, (x0.shape[0],), 0, sched.num_steps)
  noise = jax.random.normal(k_e, x0.shape)
  eps, _ = eps_fn(q_sample(sched, x0, t, noise), t, None)
  return jnp.mean((eps - noise) ** 2)


def ddim_timesteps(num_train: int, steps: int) -> np.ndarray:
  """`steps` timesteps from 0 to T-1, evenly spaced (ascending, static)."""
  if not 1 <= int(steps) <= int(num_train):
    raise ValueError(f"DDIM steps must be in [1, {num_train}] (the schedule's length), "
                     f"got {steps}.")
  return np.unique(np.linspace(0, int(num_train) - 1, int(steps)).round().astype(np.int32))


def _ab(sched: Schedule, t):
  """ᾱ_t, with ᾱ_{-1} = 1 (the clean image)."""
  return jnp.where(t >= 0, sched.alphas_cumprod[jnp.maximum(t, 0)], 1.0)


def ddim_sample(eps_fn: Callable, sched: Schedule, x_T, steps: int, *, eta: float = 0.0,
                delta_h=None, t_edit: int = 0, asymmetric: bool = True, t_boost: int = -1,
                rng=None, trajectory: bool = False, record_h: bool = False,
                start: int = 0, stop: int | None = None):
  """DDIM from x_T over `steps` timesteps (module doc). Returns x_0, or (x_0, the x̂_0
  predicted at each step [steps, ...]) with `trajectory`, or (x_0, the unedited h of each
  step [steps, n, ...]) with `record_h`. start / stop: run only the steps [start, stop)
  of the `steps` (step i goes from timestep `ddim_timesteps(...)[::-1][i]` to the next):
  x_T is then x at the start step's timestep, and the result x at the stop step's
  (x_0 when stop is None)."""
  ts = ddim_timesteps(sched.num_steps, steps)[::-1]
  prev = np.concatenate([ts[1:], [-1]]).astype(np.int32)
  if not 0 <= int(start) < (len(ts) if stop is None else int(stop)) <= len(ts):
    raise ValueError(f"DDIM start={start}, stop={stop}: need 0 <= start < stop <= "
                     f"{len(ts)} (the number of steps).")
  ts, prev = ts[int(start):stop], prev[int(start):stop]
  n = x_T.shape[0]
  rng = jax.random.key(0) if rng is None else rng
  stochastic = eta > 0 or t_boost >= 0

  def body(x, inp):
    t, tp, i = inp
    tv = jnp.full((n,), t, jnp.int32)
    eps, h = eps_fn(x, tv, None)
    eps_x0 = eps_dir = eps
    if delta_h is not None:
      dh = jnp.where(t >= t_edit, 1.0, 0.0) * delta_h
      eps_edit, _ = eps_fn(x, tv, dh)
      eps_x0 = eps_edit
      eps_dir = eps if asymmetric else eps_edit
    ab, ab_prev = _ab(sched, t), _ab(sched, tp)
    x0 = (x - jnp.sqrt(1.0 - ab) * eps_x0) / jnp.sqrt(ab)
    e = jnp.where(t < t_boost, 1.0, eta) if stochastic else 0.0
    sigma = e * jnp.sqrt((1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev))
    x_prev = jnp.sqrt(ab_prev) * x0 + jnp.sqrt(jnp.maximum(1.0 - ab_prev - sigma ** 2, 0.0)) * eps_dir
    if stochastic:
      x_prev = x_prev + sigma * jax.random.normal(jax.random.fold_in(rng, i), x.shape)
    return x_prev, (x0 if trajectory else None, h if record_h else None)

  x, (x0s, hs) = jax.lax.scan(body, x_T, (jnp.asarray(ts), jnp.asarray(prev),
                                           jnp.arange(len(ts))))
  if trajectory:
    return x, x0s
  return (x, hs) if record_h else x


def ddim_invert(eps_fn: Callable, sched: Schedule, x0, steps: int):
  """x_0 -> x_T by the deterministic DDIM inversion over `steps` timesteps."""
  ts = ddim_timesteps(sched.num_steps, steps)
  cur = np.concatenate([[-1], ts[:-1]]).astype(np.int32)
  n = x0.shape[0]

  def body(x, inp):
    tc, tn = inp
    eps, _ = eps_fn(x, jnp.full((n,), tn, jnp.int32), None)
    ab, ab_next = _ab(sched, tc), _ab(sched, tn)
    pred = (x - jnp.sqrt(1.0 - ab) * eps) / jnp.sqrt(ab)
    return jnp.sqrt(ab_next) * pred + jnp.sqrt(1.0 - ab_next) * eps, None

  x, _ = jax.lax.scan(body, x0, (jnp.asarray(cur), jnp.asarray(ts)))
  return x


def _ddpm_mean(eps_fn, sched, x, t):
  n = x.shape[0]
  eps, _ = eps_fn(x, jnp.full((n,), t, jnp.int32), None)
  beta, ab = sched.betas[t], sched.alphas_cumprod[t]
  return (x - beta / jnp.sqrt(1.0 - ab) * eps) / jnp.sqrt(1.0 - beta)


def ddpm_sample(eps_fn: Callable, sched: Schedule, x_T, noises):
  """Ancestral DDPM from x_T with the given noises [T, ...] (noises[t] drives the step
  x_t -> x_{t-1}; σ_t = sqrt(β_t)). Returns x_0 (x_{-1} in 0-indexed time)."""
  ts = jnp.arange(sched.num_steps - 1, -1, -1)

  def body(x, t):
    return _ddpm_mean(eps_fn, sched, x, t) + jnp.sqrt(sched.betas[t]) * noises[t], None

  x, _ = jax.lax.scan(body, x_T, ts)
  return x


def dpm_encode(eps_fn: Callable, sched: Schedule, x0, rng):
  """The exact inversion of `ddpm_sample` (module doc): (x_T, noises [T, ...]) with
  ddpm_sample(eps_fn, sched, x_T, noises) = x0 up to float rounding. x_T ~ q(x_T | x_0),
  then x_{t-1} ~ q(x_{t-1} | x_t, x_0) for t = T-1 .. 0 (x_{-1} = x_0), and each step's
  noise is what takes the model's mean to that sample."""
  T = sched.num_steps
  k_T, k_steps = jax.random.split(rng)
  ab = sched.alphas_cumprod
  x_T = q_sample(sched, x0, jnp.full((x0.shape[0],), T - 1), jax.random.normal(k_T, x0.shape))

  def body(x, t):
    beta, ab_t, ab_prev = sched.betas[t], ab[t], _ab(sched, t - 1)
    mean = (jnp.sqrt(ab_prev) * beta / (1.0 - ab_t) * x0
            + jnp.sqrt(1.0 - beta) * (1.0 - ab_prev) / (1.0 - ab_t) * x)
    var = (1.0 - ab_prev) / (1.0 - ab_t) * beta
    x_prev = mean + jnp.sqrt(var) * jax.random.normal(jax.random.fold_in(k_steps, t), x.shape)
    z = (x_prev - _ddpm_mean(eps_fn, sched, x, t)) / jnp.sqrt(beta)
    return x_prev, z

  _, zs = jax.lax.scan(body, x_T, jnp.arange(T - 1, -1, -1))
  return x_T, zs[::-1]
