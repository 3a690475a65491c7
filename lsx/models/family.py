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


# what a resumed run may change: how long it runs, how it logs, where the workdir is


def write_run_figures(setup: Setup, params, workdir: str) -> None:
  """reconstructions.png and traversals.png for a trained autoencoder."""
  v = setup.config.get("viz", {})
  model = setup.model
  images, _ = setup.dataset.sample(jax.random.key(1234), 256)
  z = np.asarray(jax.jit(model.represent)(params, images))
  n = int(v.get("num_anchors", 3))
  recon = jax.jit(model.reconstruct)(params, images[:8])
  viz.save_reconstructions(images[:8], recon, os.path.join(workdir, "reconstructions.png"))
  decode = jax.jit(lambda z: model.generate(params, z))
  viz.save_traversals(decode, z[:n], os.path.join(workdir, "traversals.png"), latents=z,
                      num_steps=int(v.get("num_steps", 9)), num_sigma=float(v.get("num_sigma", 3.0)))
