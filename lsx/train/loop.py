"""The host loop: build from config, restore or init, run scanned chunks, log, save."""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lsx import data as lsx_data
from lsx import models, viz
from lsx.train import checkpoint as ckpt
from lsx.train.state import OPTIMIZER_HPS, TrainState, make_optimizer, make_train_chunk, make_train_step

log = logging.getLogger("lsx")


@dataclasses.dataclass
class Setup:
  """Everything a run is built from; all pure functions plus the traced `hp` pytree."""
  config: Any
  dataset: Any
  model: models.Autoencoder
  objective: models.Objective
  optimizer: Any
  hp: dict

  def init_state(self, rng=None) -> TrainState:
    rng = jax.random.key(int(self.config.seed)) if rng is None else rng
    k_init, k_train = jax.random.split(rng)
    return TrainState.create(self.model.init(k_init), self.optimizer, k_train)

  def abstract_state(self):
    return jax.eval_shape(self.init_state)


def resolve_hp(config, objective) -> dict:
  """The traced hyperparameters: objective defaults, then lr/weight decay, then config.hp."""
  allowed = dict(objective.hp_defaults)
  allowed.update({k: None for k in OPTIMIZER_HPS[config.optim.name]})
  given = dict(config.hp)
  unknown = sorted(set(given) - set(allowed))
  if unknown:
    raise ValueError(f"config.hp has {unknown}, which objective {objective.name!r} with "
                     f"optimizer {config.optim.name!r} does not use; it uses {sorted(allowed)}.")
  hp = {k: v for k, v in allowed.items() if v is not None}
  hp.update(given)
  missing = sorted(k for k in allowed if k not in hp)
  if missing:
    raise ValueError(f"config.hp must set {missing}.")
  return {k: jnp.asarray(v, jnp.float32) for k, v in sorted(hp.items())}


def build(config) -> Setup:
  """Validate the config and build the run's pieces. Raises before anything compiles."""
  d = config.data
  kw = {k: d[k] for k in ("size", "split", "data_dir", "max_examples", "image_key") if k in d}
  kw = {k: v for k, v in kw.items() if v not in ("", 0, None)}
  dataset = lsx_data.get_dataset(d.name, **kw)
  m = config.model
  want = tuple(m.get("image_shape", ()) or ())
  if want and want != tuple(dataset.image_shape):
    raise ValueError(f"Shape mismatch: config.model.image_shape={want} but dataset "
                     f"{d.name!r} yields images of shape {tuple(dataset.image_shape)}. "
                     f"Fix config.model.image_shape or leave it empty to take the data's.")
  o = config.objective
  if o.name not in models.OBJECTIVES:
    raise ValueError(f"Unknown objective {o.name!r}; choose one of {sorted(models.OBJECTIVES)}.")
  bottleneck = m.get("bottleneck", "") or models.OBJECTIVES[o.name][1]
  model = models.make_autoencoder(dataset.image_shape, m.latent_dim, m.arch, bottleneck,
                                  m.get("conv_impl", "gemm"), tuple(m.get("hidden", ())) or None,
                                  int(m.get("num_values", 10)),
                                  tuple(m.get("style_widths", ())) or None)
  objective = models.make_objective(o.name, model, o.get("likelihood", "bernoulli"),
                                    o.get("iwae_k", 5), dataset.num_examples)
  t = config.train
  for key in ("steps", "batch_size", "chunk", "ckpt_every"):
    if int(t[key]) < 1:
      raise ValueError(f"config.train.{key} must be >= 1, got {t[key]}.")
  if int(t.ckpt_every) % int(t.chunk):
    raise ValueError(f"config.train.ckpt_every ({t.ckpt_every}) must be a multiple of "
                     f"config.train.chunk ({t.chunk}): checkpoints are taken between chunks.")
  optimizer = make_optimizer(config.optim.name, config.optim.get("grad_clip", 0.0))
  return Setup(config, dataset, model, objective, optimizer, resolve_hp(config, objective))


class NonFiniteError(FloatingPointError):
  pass


def _fmt_time(s: float) -> str:
  s = int(max(s, 0))
  return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _truncate_jsonl(path: str, max_step: int) -> None:
  """Drop metric lines past `max_step` (written after the checkpoint we resume from)."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = [l for l in f if l.strip() and json.loads(l).get("step", 0) <= max_step]
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.writelines(lines)
  os.replace(tmp, path)


def _to_json(x):
  if hasattr(x, "to_dict"):
    x = x.to_dict()
  return json.loads(json.dumps(x, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def train(config, workdir: str | None = None, *, stop_after_chunks: int | None = None,
          write_figures: bool = True, print_fn=None) -> tuple[TrainState, Setup]:
  """Train (or resume) the run described by `config` in `workdir`.

  Writes config.json, metrics.jsonl (one line per chunk), orbax checkpoints under
  checkpoints/, and reconstructions.png + traversals.png at the end. A non-finite loss
  raises `NonFiniteError`; the last good checkpoint stays as it was.
  `stop_after_chunks` ends early after that many chunks of this call (simulates a kill).
  """
  t_start = time.perf_counter()
  print_fn = print_fn or (lambda s: print(s, file=sys.stderr, flush=True))
  workdir = workdir or config.workdir
  setup = build(config)
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    json.dump(_to_json(config), f, indent=2, sort_keys=True)
  t = config.train
  mngr = ckpt.manager(os.path.join(workdir, "checkpoints"), max_to_keep=t.get("keep", 2))
  abstract = setup.abstract_state()
  state = ckpt.restore(mngr, abstract)
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  if state is None:
    # one compiled init instead of hundreds of eagerly dispatched ops (~10x faster start)
    state = jax.jit(setup.init_state)()
    start = 0
    if os.path.exists(metrics_path):
      os.remove(metrics_path)
  else:
    start = int(state.step)
    _truncate_jsonl(metrics_path, start)
    print_fn(f"resumed from checkpoint at step {start} in {workdir}")
  total = int(t.steps)
  step_fn = make_train_step(setup.objective, setup.optimizer)
  compiled, compile_s = {}, [0.0]

  def chunk_fn(k):
    if k not in compiled:
      tc = time.perf_counter()
      fn = jax.jit(make_train_chunk(step_fn, setup.dataset.sample, int(t.batch_size), k),
                   donate_argnums=0)
      compiled[k] = fn.lower(state, setup.hp).compile()
      took = time.perf_counter() - tc
      compile_s[0] += took
      print_fn(f"compiled a {k}-step chunk in {took:.1f}s "
               f"({time.perf_counter() - t_start:.1f}s since start)")
    return compiled[k]

  t0, done, chunks = time.perf_counter(), 0, 0
  last_print = -1e9
  step = start
  while step < total:
    k = min(int(t.chunk), total - step)
    new_state, m = chunk_fn(k)(state, setup.hp)
    m = jax.device_get(m)
    if np.any(m["nonfinite"]):
      bad = step + int(np.argmax(m["nonfinite"])) + 1
      last = mngr.latest_step()
      raise NonFiniteError(
          f"Non-finite loss or gradient at step {bad} (loss={m['loss'][np.argmax(m['nonfinite'])]}). "
          f"Training stopped; the last good checkpoint (step {last}) in "
          f"{os.path.join(workdir, 'checkpoints')} is untouched. Lower hp.lr, add "
          f"optim.grad_clip, or check the data.")
    state = new_state
    step += k
    done += k
    chunks += 1
    row = {"step": step, **{key: float(np.mean(v)) for key, v in m.items() if key != "nonfinite"}}
    with open(metrics_path, "a") as f:
      f.write(json.dumps(row) + "\n")
    if step % int(t.ckpt_every) == 0 or step == total:
      ckpt.save(mngr, step, state)
    now = time.perf_counter()
    if now - last_print >= float(t.get("log_every_s", 5.0)) or step == total:
      rate = done / max(now - t0 - compile_s[0], 1e-9)
      extra = " ".join(f"{key} {row[key]:.4g}" for key in ("rec", "kl") if key in row)
      print_fn(f"step {step}/{total} | {rate:.2f} steps/s ({rate * int(t.batch_size):.0f} img/s)"
               f" | ETA {_fmt_time((total - step) / max(rate, 1e-9))} | loss {row['loss']:.4g} {extra}")
      last_print = now
    if stop_after_chunks is not None and chunks >= stop_after_chunks:
      return state, setup
  if write_figures:
    write_run_figures(setup, state.params, workdir)
  return state, setup


def write_run_figures(setup: Setup, params, workdir: str) -> None:
  """reconstructions.png and traversals.png for a trained autoencoder."""
  v = setup.config.get("viz", {})
  model = setup.model
  images, _ = setup.dataset.sample(jax.random.key(1234), 256)
  z = np.asarray(jax.jit(model.represent)(params, images))
  n = int(v.get("num_anchors", 3))
  recon = jax.jit(model.reconstruct)(params, images[:8])
  viz.save_reconstructions(images[:8], recon, os.path.join(workdir, "reconstructions.png"))
  decode = jax.jit(lambda z: jax.nn.sigmoid(model.decode(params, z)))
  viz.save_traversals(decode, z[:n], os.path.join(workdir, "traversals.png"), latents=z,
                      num_steps=int(v.get("num_steps", 9)), num_sigma=float(v.get("num_sigma", 3.0)))


def config_from_json(path: str):
  """The ConfigDict a run was trained with, from its workdir's config.json."""
  import ml_collections
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def load_run(workdir: str, step: int | None = None):
  """(setup, state) of a trained run: its config.json rebuilt, its checkpoint restored."""
  cfg_path = os.path.join(workdir, "config.json")
  if not os.path.exists(cfg_path):
    raise FileNotFoundError(f"{workdir} has no config.json: is it a workdir written by "
                            f"experiments.train?")
  setup = build(config_from_json(cfg_path))
  mngr = ckpt.manager(os.path.join(workdir, "checkpoints"))
  state = ckpt.restore(mngr, setup.abstract_state(), step)
  if state is None:
    raise FileNotFoundError(f"{workdir}/checkpoints has no checkpoint yet: train first.")
  return setup, state
