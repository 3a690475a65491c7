"""Denoisers as a training family (`config.family = 'diffusion'`), trained by `lsx.train`.

A U-Net (`lsx.diffusion.unet`) learns ε-prediction on a dataset (config.data) under a
linear noise schedule of `config.diffusion.timesteps` steps whose endpoints
(hp.beta_start, hp.beta_end) are traced hyperparameters, so seeds x schedules run as one
sweep. Parameters are {"net": the trained U-Net, "ema": its exponential moving average}
(`hp.ema_decay`), the average folded in after every step by the objective's
`post_update` from the pre-step value the loss hands it, so the optimizer never moves
it. Sampling and inversion use the EMA weights (`Denoiser`, `denoiser(setup, params)`).

A finished run writes samples.png (DDIM samples from fixed noise, labelled) and
denoising.png (the x̂_0 each DDIM step predicts, for the first samples).
"""
from __future__ import annotations

import os
from typing import NamedTuple

import jax
import numpy as np

from lsx import viz
from lsx.data import get_dataset
from lsx.diffusion import directions as hdirs, process
from lsx.diffusion.unet import UNet, h_shape, init_unet
from lsx.objective import Objective
from lsx.train import validate
from lsx.train.sweep import take_member
from lsx.train.setup import Setup, make_run_optimizer, resolve_hp

HP_DEFAULTS = {**process.SCHEDULE_HP, "ema_decay": 0.999}
HP_BOUNDS = {"beta_start": (0.0, False), "beta_end": (0.0, False), "ema_decay": (0.0, True)}


class Denoiser(NamedTuple):
  """A trained denoiser as pure functions of fixed parameters: `eps_fn(x_t, t, delta_h)`
  -> (ε̂, h) for the samplers of lsx.diffusion.process, its schedule and shapes."""
  eps_fn: object
  schedule: process.Schedule
  image_shape: tuple
  h_shape: tuple


CONV_IMPLS = ("native", "gemm", "s2d", "patch", "xla")


def conv_forms(config) -> tuple[str, str]:
  """(stride-2 form, 3x3 form) of diffusion.conv_impl: 'native' (default: `lax.conv` with
  canonical derivatives in every layer, GEMMs under a vmap over members' own weights --
  lsx.nn.conv), 'gemm', 's2d', 'patch' = that stride-2 form with GEMM 3x3 layers; 'xla' =
  `lax.conv` with JAX's own derivatives everywhere (20x slower inside the runner's scanned
  training chunk on XLA:CPU -- lsx.nn.conv)."""
  impl = str(config.diffusion.get("conv_impl", "native"))
  return impl, (impl if impl in ("xla", "native") else "gemm")


def make_net(config, image_shape) -> UNet:
  d = config.diffusion
  impl, conv3 = conv_forms(config)
  return UNet(out_channels=int(image_shape[-1]), widths=tuple(int(w) for w in d.widths),
              emb_dim=int(d.emb_dim), impl=impl, conv3=conv3)


def denoiser(setup: Setup, params, hp=None, ema: bool = True) -> Denoiser:
  """The run's denoiser on `params` (one member's), with the EMA weights by default."""
  net, hp = setup.model, setup.hp if hp is None else hp
  weights = params["ema" if ema else "net"]
  eps_fn = lambda x, t, dh=None: net.apply({"params": weights}, x, t, dh)
  sched = process.linear_schedule(hp, int(setup.config.diffusion.timesteps))
  shape = tuple(setup.dataset.image_shape)
  return Denoiser(eps_fn, sched, shape, h_shape(shape, net.widths))


def make_objective(net: UNet, image_shape, num_steps: int) -> Objective:
  def init(rng):
    p = init_unet(net, rng, image_shape)
    return {"net": p, "ema": p}

  def loss(params, images, rng, hp):
    sched = process.linear_schedule(hp, num_steps)
    eps_fn = lambda x, t, dh: net.apply({"params": params["net"]}, x, t, dh)
    value = process.eps_loss(eps_fn, sched, process.to_model(images), rng)
    return value, {"eps_mse": value, "_post": {"ema": params["ema"]}}

  def post_update(params, post, hp):
    d = hp["ema_decay"]
    ema = jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, post["ema"], params["net"])
    return {**params, "ema": ema}

  return Objective("diffusion", init, loss, HP_DEFAULTS, post_update=post_update,
                   info={"hp_bounds": HP_BOUNDS})


def check_diffusion(config) -> None:
  validate.positive(config, "diffusion.timesteps", "diffusion.emb_dim",
                    "diffusion.sample_steps", "diffusion.num_samples", "data.size")
  if conv_forms(config)[0] not in CONV_IMPLS:
    raise ValueError(f"config.diffusion.conv_impl must be one of {list(CONV_IMPLS)}, got "
                     f"{config.diffusion.conv_impl!r}.")
  widths = tuple(config.diffusion.widths)
  if len(widths) < 2 or any(isinstance(w, bool) or not isinstance(w, int) or w < 1
                            for w in widths):
    raise ValueError(f"config.diffusion.widths must list >= 2 integer widths (the stem, then "
                     f"one per level), got {widths}.")
  if int(config.diffusion.sample_steps) > int(config.diffusion.timesteps):
    raise ValueError(f"config.diffusion.sample_steps={config.diffusion.sample_steps} exceeds "
                     f"the schedule's {config.diffusion.timesteps} timesteps.")
  hp = dict(config.hp)
  if "beta_start" in hp and "beta_end" in hp and not hp["beta_start"] < hp["beta_end"] < 1:
    raise ValueError(f"config.hp needs 0 < beta_start < beta_end < 1, got "
                     f"{hp['beta_start']} and {hp['beta_end']}.")
  if not 0 <= float(hp.get("ema_decay", 0.999)) < 1:
    raise ValueError(f"config.hp.ema_decay must be in [0, 1), got {hp['ema_decay']}.")


def build_diffusion(config, runs=None) -> Setup:
  """The `Setup` of a denoiser run (module doc)."""
  check_diffusion(config)
  d = config.data
  kw = {k: v for k, v in d.items() if k != "name" and v not in ("", None)}
  dataset = get_dataset(d.name, **kw)
  shape = tuple(dataset.image_shape)
  net = make_net(config, shape)
  h_shape(shape, net.widths)  # a size the levels cannot halve is refused here
  objective = make_objective(net, shape, int(config.diffusion.timesteps))
  return Setup(config, dataset, net, objective, make_run_optimizer(config, objective),
               resolve_hp(config, objective), finish=write_figures, log_keys=("eps_mse",),
               finish_sweep=lambda s, p, w, m: write_figures(s, take_member(p, 0), w))


def sample_images(setup: Setup, params, n: int, steps: int, seed: int = 0, trajectory=False):
  """`n` DDIM samples (images in [0, 1]) of `steps` steps from the noise of key `seed`."""
  den = denoiser(setup, params)
  x_T = jax.random.normal(jax.random.key(seed), (n,) + den.image_shape)
  fn = jax.jit(lambda x: process.ddim_sample(den.eps_fn, den.schedule, x, steps,
                                             trajectory=trajectory))
  out = fn(x_T)
  if trajectory:
    return np.asarray(process.to_image(out[0])), np.asarray(process.to_image(out[1]))
  return np.asarray(process.to_image(out))


def write_figures(setup: Setup, params, workdir: str) -> None:
  """samples.png (a labelled grid of DDIM samples) and denoising.png (rows: samples;
  columns: the x̂_0 predicted at DDIM steps from t = T-1 down to 0)."""
  d = setup.config.diffusion
  n, steps = int(d.num_samples), int(d.sample_steps)
  imgs, x0s = sample_images(setup, params, n, steps, trajectory=True)
  cols = min(8, n)
  rows = -(-n // cols)
  pad = np.ones((rows * cols - n,) + imgs.shape[1:], imgs.dtype)
  grid = np.concatenate([imgs, pad]).reshape((rows, cols) + imgs.shape[1:])
  fig = viz.grid_figure(grid, row_labels=[f"samples {r * cols}-{min((r + 1) * cols, n) - 1}"
                                          for r in range(rows)],
                        col_labels=[str(c) for c in range(cols)],
                        title=f"DDIM samples ({steps} steps, EMA weights)")
  viz.save_figure(fig, os.path.join(workdir, "samples.png"))
  ts = process.ddim_timesteps(int(d.timesteps), steps)[::-1]
  pick = np.unique(np.linspace(0, len(ts) - 1, min(8, len(ts))).round().astype(int))
  traj = np.asarray(x0s)[pick][:, :min(4, n)].transpose(1, 0, 2, 3, 4)  # [samples, picks, ...]
  fig = viz.grid_figure(traj, row_labels=[f"sample {i}" for i in range(traj.shape[0])],
                        col_labels=[f"t={int(ts[p])}" for p in pick],
                        xlabel="the clean image x̂_0 predicted at each DDIM step",
                        title="denoising trajectory")
  viz.save_figure(fig, os.path.join(workdir, "denoising.png"))




def build_h_directions(config, runs) -> Setup:
  """The `Setup` of K directions in a trained denoiser's h-space learned contrastively
  (`config.family = 'h_directions'`; lsx.diffusion.directions.contrastive_objective):
  config.diffusion.workdir holds the denoiser (one run, not a sweep), config.hdirections
  {method: 'noiseclr' | 'latentclr', num: K, t_min}, hp {temperature, alpha, lr}. The
  batch is data images (config.diffusion's dataset), noised inside the loss."""
  h = config.hdirections
  if h.method not in hdirs.CONTRASTIVE:
    raise ValueError(f"config.hdirections.method must be one of {hdirs.CONTRASTIVE}, got "
                     f"{h.method!r}.")
  validate.positive(config, "hdirections.num")
  if int(h.num) < 2:
    raise ValueError(f"config.hdirections.num must be >= 2 (the contrastive loss compares "
                     f"directions), got {h.num}.")
  dsetup, state = runs.load_run(config.diffusion.workdir)
  if dsetup.config.get("family") != "diffusion":
    raise ValueError(f"{config.diffusion.workdir} holds a {dsetup.config.get('family')!r} "
                     f"run; h directions are learned on a denoiser run.")
  den = denoiser(dsetup, state.params)
  scale = hdirs.h_scale(den, dsetup.dataset, jax.random.key(3), t_min=int(h.t_min))
  init, loss = hdirs.contrastive_objective(den, h.method, int(h.num), scale, int(h.t_min))
  objective = Objective(f"h_{h.method}", init, loss, hdirs.CONTRASTIVE_HP,
                        info={"denoiser": den, "h_scale": scale,
                              "hp_bounds": {"alpha": (0.0, False)}})
  return Setup(config, dsetup.dataset, dsetup.model, objective,
               make_run_optimizer(config, objective), resolve_hp(config, objective),
               log_keys=("contrastive",))
