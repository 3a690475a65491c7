"""What a run is built from: `Setup` (the pieces every family builds and the engine runs),
the traced hyperparameters resolved from a config, the run's optimizer, and the `RunSpec`
the engine reads (resolved once from a config and its Setup).

Every family's builder returns a `Setup`; `lsx.train.loop` runs one. Nothing here knows a
family.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp

from lsx.objective import Objective
from lsx.train import distributed as dist
from lsx.train import sweep as sweep_lib
from lsx.train import validate
from lsx.train.state import OPTIMIZER_HPS, TrainState, make_optimizer, objective_optimizer


def split_keys(rng):
  return tuple(jax.random.split(rng))


@dataclasses.dataclass
class Setup:
  """Everything a run is built from: pure functions plus the traced `hp` pytree.

  Every family (`FAMILIES`: autoencoders, directions, flows) builds one and `train` runs
  it. `sample(rng, n) -> (batch, extra)` draws a training batch on device; `init_keys`
  splits a run's key into (init, train) keys; `finish(setup, params, workdir)` writes a
  single run's figures."""
  config: Any
  dataset: Any
  model: Any  # the autoencoder (trained, or the decoder a direction/flow family reads)
  objective: Objective
  optimizer: Any
  hp: dict
  sample: Callable | None = None
  init_keys: Callable = split_keys
  finish: Callable | None = None
  log_keys: tuple = ("rec", "kl")
  # sample_at(t, n): the batch of step t (instead of one drawn from the member's rng), so
  # a sweep's members read the same batches, drawn once per step (vmap/map strategies)
  sample_at: Callable | None = None
  # finish_sweep(setup, stacked params, workdir, members): a sweep's own outputs
  finish_sweep: Callable | None = None

  def __post_init__(self):
    if self.sample is None:
      self.sample = self.dataset.sample

  def init_state(self, rng=None) -> TrainState:
    rng = jax.random.key(int(self.config.seed)) if rng is None else rng
    k_init, k_train = self.init_keys(rng)
    return TrainState.create(self.objective.init(k_init), self.optimizer, k_train)

  def abstract_state(self):
    return jax.eval_shape(self.init_state)


def resolve_hp(config, objective) -> dict:
  """The traced hyperparameters: objective defaults, then lr/weight decay, then config.hp."""
  allowed = dict(objective.all_hp_defaults())
  allowed.update({k: None for k in OPTIMIZER_HPS[config.optim.name]})
  given = dict(config.hp)
  unknown = sorted(set(given) - set(allowed))
  if unknown:
    raise ValueError(f"config.hp has {unknown}, which objective {objective.name!r} with "
                     f"optimizer {config.optim.name!r} does not use; it uses {sorted(allowed)}.")
  hp = {k: v for k, v in allowed.items() if v is not None}
  hp.update(given)
  bounds = objective.info.get("hp_bounds")
  for k, v in hp.items():
    validate.check_hp(k, v, bounds)
  for k, vals in dict((config.get("sweep", {}) or {}).get("hp", {}) or {}).items():
    for v in vals:
      validate.check_hp(k, v, bounds, where="config.sweep.hp")
  missing = sorted(k for k in allowed if k not in hp)
  if missing:
    raise ValueError(f"config.hp must set {missing}.")
  return {k: jnp.asarray(v, jnp.float32) for k, v in sorted(hp.items())}


def make_run_optimizer(config, objective):
  """config.optim's optimizer, with the objective's players' optimizers beside it."""
  o = config.optim
  return objective_optimizer(objective, make_optimizer(
      o.name, o.get("grad_clip", 0.0), lr_decay_steps=tuple(o.get("lr_decay_steps", ()) or ()),
      lr_decay_factor=float(o.get("lr_decay_factor", 1.0))))


def prepare_host(config) -> None:
  """Before any device is touched (a Setup's build touches them): the multi-process
  initialization, or a CPU sweep's one device per core (sweep.split_host). Idempotent;
  no-ops for one process / a single run."""
  if not dist.maybe_initialize(config):
    sweep_lib.split_host(config)


@dataclasses.dataclass
class RunSpec:
  """What the engine (lsx.train.loop) reads of a run, resolved once from its config and
  `Setup`: the sweep's members and strategy, the budget, cadences and the printer."""
  setup: Setup
  workdir: str
  members: sweep_lib.Plan | None  # None: a single run
  strategy: str | None
  mesh: jax.sharding.Mesh | None
  num: int  # members (1 for a single run)
  total: int
  batch: int
  chunk: int
  ckpt_every: int
  log_every_s: float
  keep: int
  precision: str
  main: bool
  events: bool  # TensorBoard event files (train.tensorboard)
  print_fn: Callable
  t_start: float

  @property
  def metrics_path(self) -> str:
    return os.path.join(self.workdir, "metrics.jsonl")


def run_spec(config, workdir: str, setup: Setup, print_fn) -> RunSpec:
  """The run spec of `config` trained in `workdir` with the built `setup` (print_fn: the
  progress printer, default stderr; silent on every process but the main one)."""
  main, t = dist.is_main(), config.train
  print_fn = print_fn or (lambda s: print(s, file=sys.stderr, flush=True))
  members = sweep_lib.plan(config, setup.hp)
  strategy = mesh = None
  if members is not None:
    data = int(config.get("mesh", {}).get("data", 1))
    strategy = sweep_lib.resolve_strategy(config.get("sweep_strategy", "auto"),
                                          num_members=members.size, data=data)
    if strategy == "sharded":
      mesh = sweep_lib.make_mesh(members.size, data)
  return RunSpec(setup, workdir, members, strategy, mesh, 1 if members is None else members.size,
              int(t.steps), int(t.batch_size), int(t.chunk), int(t.ckpt_every),
              float(t.get("log_every_s", 5.0)), t.get("keep", 2),
              t.get("precision", "float32"), main, bool(t.get("tensorboard", True)),
              print_fn if main else (lambda s: None),
              time.perf_counter())
