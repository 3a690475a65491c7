"""The autoencoder family: a model of `lsx.models` trained with one of its objectives on
a dataset, and the figures of a trained run (reconstructions.png, traversals.png).

`build_autoencoder(config, runs)` is the 'autoencoder' entry of lsx.runs' family table.
"""
from __future__ import annotations

import os

import jax
import numpy as np

from lsx import data as lsx_data
from lsx import models, viz
from lsx.train import validate
from lsx.train.setup import Setup, make_run_optimizer, resolve_hp


def build_autoencoder(config, runs=None) -> Setup:
  """An autoencoder (config.model) trained with a registered objective (config.objective)
  on a dataset (config.data)."""
  validate.check_autoencoder(config)
  d = config.data
  kw = {k: v for k, v in d.items() if k != "name" and v not in ("", None)}
  dataset = lsx_data.get_dataset(d.name, **kw)
  m = config.model
  want = tuple(m.get("image_shape", ()) or ())
  if want and want != tuple(dataset.image_shape):
    raise ValueError(f"Shape mismatch: config.model.image_shape={want} but dataset "
                     f"{d.name!r} yields images of shape {tuple(dataset.image_shape)}. "
                     f"Fix config.model.image_shape or leave it empty to take the data's.")
  o = dict(config.objective)
  name = o.pop("name")
  entry = models.OBJECTIVES.get(name)
  bottleneck = m.get("bottleneck", "") or entry.info["bottleneck"]
  model = models.make_autoencoder(dataset.image_shape, m.latent_dim, m.arch, bottleneck,
                                  m.get("conv_impl", "gemm"), tuple(m.get("hidden", ())) or None,
                                  int(m.get("num_values", 10)),
                                  tuple(m.get("style_widths", ())) or None)
  objective = models.make_objective(name, model, dataset_size=dataset.num_examples, **o)
  return Setup(config, dataset, model, objective, make_run_optimizer(config, objective),
               resolve_hp(config, objective), finish=write_run_figures)


def latent_importance(model, params, images) -> tuple[np.ndarray, str, np.ndarray]:
  """Per latent: its importance (the mean KL to the prior, nats, for a Gaussian
  bottleneck; else the variance of its codes over `images`), the name, and whether it
  collapsed: inactive by Burda et al. (2016)'s activity, the variance of its encoder mean
  over the data below 0.01 (other bottlenecks: below 1% of the largest variance)."""
  stats = jax.device_get(jax.jit(model.encode)(params, images))
  if "logvar" in stats:
    mu, lv = np.asarray(stats["mean"], np.float64), np.asarray(stats["logvar"], np.float64)
    kl = (0.5 * (mu ** 2 + np.exp(lv) - 1.0 - lv)).mean(0)
    return kl, "KL", mu.var(0) < 0.01
  var = np.asarray(model.bottleneck.mean(stats), np.float64).var(0)
  return var, "var", var < 0.01 * max(float(var.max()), 1e-12)


def write_run_figures(setup: Setup, params, workdir: str) -> None:
  """reconstructions.png (data and reconstructions, each with its error) and
  traversals.png / .gif (latents sorted by KL or variance, collapsed ones marked) for a
  trained autoencoder."""
  v = setup.config.get("viz", {})
  model = setup.model
  images, _ = setup.dataset.sample(jax.random.key(1234), 256)
  z = np.asarray(jax.jit(model.represent)(params, images))
  n = int(v.get("num_anchors", 3))
  recon = np.asarray(jax.jit(model.reconstruct)(params, images[:8]))
  x = np.asarray(images[:8], np.float64)
  err = ((x - recon) ** 2).reshape(len(x), -1).sum(1)
  viz.save_reconstructions(images[:8], recon, os.path.join(workdir, "reconstructions.png"),
                           errors=err, error_name="squared error (sum over pixels)")
  importance, name, collapsed = latent_importance(model, params, images)
  decode = jax.jit(lambda z: model.generate(params, z))
  viz.save_traversals(decode, z[:n], os.path.join(workdir, "traversals.png"), latents=z,
                      num_steps=int(v.get("num_steps", 9)),
                      num_sigma=float(v.get("num_sigma", 3.0)), importance=importance,
                      importance_name=name, collapsed=collapsed)
