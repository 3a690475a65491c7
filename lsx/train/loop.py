"""The host loop: build from config, restore or init, run scanned chunks, log, save."""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from lsx import data as lsx_data
from lsx import models, viz
from lsx.train import checkpoint as ckpt
from lsx import records
from lsx.records import config_from_json, config_to_json, write_config
from lsx.train import distributed as dist
from lsx.train import sweep as sweep_lib
from lsx.train import workdir as workdir_lib
from lsx.train import validate, xla_options
from lsx.objective import Objective
from lsx.registry import Registry
from lsx.train.state import (OPTIMIZER_HPS, PRECISIONS, TrainState, make_optimizer,
                             make_shared_chunk, make_train_chunk, make_train_step,
                             objective_optimizer)

log = logging.getLogger("lsx")


def _split_keys(rng):
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
  init_keys: Callable = _split_keys
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


FAMILIES = Registry("training family")


def check_train(config) -> None:
  """The sections every family shares, checked before anything compiles
  (`lsx.train.validate.check_run`)."""
  validate.check_run(config)


def make_run_optimizer(config, objective):
  """config.optim's optimizer, with the objective's players' optimizers beside it."""
  o = config.optim
  return objective_optimizer(objective, make_optimizer(
      o.name, o.get("grad_clip", 0.0), lr_decay_steps=tuple(o.get("lr_decay_steps", ()) or ()),
      lr_decay_factor=float(o.get("lr_decay_factor", 1.0))))


def build(config) -> Setup:
  """Validate the config and build the run's pieces for its family (config.family,
  default 'autoencoder'). Raises before anything compiles."""
  _load_families()
  validate.check_run(config)
  setup = FAMILIES.build(config.get("family", "autoencoder"), config)
  sweep_lib.plan(config, setup.hp)  # the sweep's axes and values, checked here too
  return setup


def _load_families():
  # each family registers itself when its module is imported
  import lsx.compare  # noqa: F401
  import lsx.directions.family  # noqa: F401
  import lsx.flows.family  # noqa: F401
  import lsx.sae  # noqa: F401


@FAMILIES.register("autoencoder")
def build_autoencoder(config) -> Setup:
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
RESUMABLE_CHANGES = ("train.steps", "train.log_every_s", "workdir")


def _flat(d, prefix=""):
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def config_changes(recorded: dict, now: dict) -> list[str]:
  """The dotted config keys in which `now` differs from the `recorded` config.json beyond
  `RESUMABLE_CHANGES` (a field the schema gained since, at its default, is no change)."""
  recorded, now = _flat(recorded), _flat(now)
  from lsx.train.config import run_config
  schema = _flat(config_to_json(run_config()))
  added = {k for k in set(now) - set(recorded) if k in schema and now[k] == schema[k]}
  return sorted(k for k in (set(recorded) | set(now)) - added
                if k not in RESUMABLE_CHANGES and recorded.get(k) != now.get(k))


def check_resume_config(config, workdir: str, allow: bool = False) -> dict:
  """Refuse to resume the run in `workdir` with a config that differs from the one it
  was trained with (config.json) in anything but `RESUMABLE_CHANGES`, naming the keys:
  the checkpoint's numbers would otherwise be credited to a config that did not make them.
  With `allow`, return the changes {key: [recorded, new]} instead."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"{workdir} holds checkpoints but no config.json, so what they were trained with is "
        f"unknown: restore config.json (the config the run was trained with, written by "
        f"lsx.train.write_config), or train in a new workdir.")
  recorded_json, now_json = records._read_config(path), config_to_json(config)
  diff = config_changes(recorded_json, now_json)
  recorded, now = _flat(recorded_json), _flat(now_json)
  if diff and allow:
    return {k: [recorded.get(k), now.get(k)] for k in diff}
  if diff:
    show = ", ".join(f"{k}: {recorded.get(k)!r} -> {now.get(k)!r}" for k in diff[:8])
    raise ValueError(f"{workdir} holds a run trained with another config ({show}"
                     f"{', ...' if len(diff) > 8 else ''}). Resume it with the config.json it "
                     f"records (only {', '.join(RESUMABLE_CHANGES)} may change), train in a new "
                     f"workdir, or pass allow_config_change (experiments.train "
                     f"--allow_config_change) to continue with the change recorded in "
                     f"history.jsonl.")
  return {}


class NonFiniteError(FloatingPointError):
  pass


def _fmt_time(s: float) -> str:
  s = int(max(s, 0))
  return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def train(config, workdir: str | None = None, **kwargs) -> tuple[TrainState, Setup]:
  """Train (or resume) the run or sweep described by `config` in `workdir` (default
  config.workdir), holding the workdir's lock (`lsx.train.workdir`: one writer at a time).

  Writes config.json, metrics.jsonl (one line per chunk; per-member lists for a
  sweep), orbax checkpoints under checkpoints/ (the stacked state for a sweep), and at
  the end reconstructions.png + traversals.png (single run) or sweep.csv + sweep.png
  (sweep). A non-finite loss stops a single run with `NonFiniteError` (the last good
  checkpoint stays as it was); in a sweep the member's updates are skipped from then on
  and it is reported and marked in sweep.csv, while the others go on.
  `stop_after_chunks` ends early after that many chunks of this call (simulates a kill).
  Resuming with a config that differs from the recorded one in more than
  `RESUMABLE_CHANGES` is refused, unless `allow_config_change` (then the changes are
  appended to the workdir's history.jsonl). Every family (`FAMILIES`) trains here;
  `setup` skips `build(config)` (a caller that already built it), `init_params` starts a
  fresh run from given parameters (stacked for a sweep) instead of the objective's init.
  """
  validate.check_run(config)
  workdir = config.workdir if workdir is None else workdir
  if not str(workdir or "").strip():
    raise ValueError("the workdir is empty: give a directory (config.workdir or --workdir).")
  # both before any device is touched: no-ops for one process / a single run
  if not dist.maybe_initialize(config):
    sweep_lib.split_host(config)  # a CPU sweep: one device per core (see sweep.py)
  setup = kwargs.pop("setup", None) or build(config)  # every check before the workdir
  # what the workdir holds, read before anything is written (records.check_writable)
  records.check_writable(records.inspect_workdir(workdir), config_to_json(config),
                         config_changes)
  workdir_lib.prepare(workdir)
  if not dist.is_main():
    return _train(config, workdir, setup=setup, **kwargs)
  with workdir_lib.lock(workdir):
    return _train(config, workdir, setup=setup, **kwargs)


def _train(config, workdir: str, *, stop_after_chunks: int | None = None,
          write_figures: bool = True, print_fn=None, setup: Setup | None = None,
          init_params=None, allow_config_change: bool = False,
          skip_corrupt_checkpoint: bool = False) -> tuple[TrainState, Setup]:
  """The body of `train`, with `workdir` locked and `setup` built."""
  t_start = time.perf_counter()
  main = dist.is_main()
  print_fn = print_fn or (lambda s: print(s, file=sys.stderr, flush=True))
  if not main:
    print_fn = lambda s: None
  members = sweep_lib.plan(config, setup.hp)
  t = config.train
  mesh, strategy = None, None
  if members is not None:
    strategy = sweep_lib.resolve_strategy(config.get("sweep_strategy", "auto"),
                                          num_members=members.size,
                                          data=int(config.get("mesh", {}).get("data", 1)))
    if strategy == "sharded":
      mesh = sweep_lib.make_mesh(members.size, int(config.get("mesh", {}).get("data", 1)))
  mngr = ckpt.manager(os.path.join(workdir, "checkpoints"), max_to_keep=t.get("keep", 2))
  changes = {}
  if mngr.latest_step() is not None:
    changes = check_resume_config(config, workdir, allow=allow_config_change)
  if members is None:
    init, hp, num = jax.jit(setup.init_state), setup.hp, 1
  else:
    seeds = jnp.asarray(members.seeds, jnp.uint32)
    shard = {} if mesh is None else {"out_shardings": sweep_lib.member_sharding(mesh)}
    init = jax.jit(lambda: sweep_lib.stack_init(setup.init_state, seeds), **shard)
    hp, num = members.hp, members.size
  if init_params is not None:
    fresh = init
    want = jax.tree.map(lambda a: (a.shape, a.dtype), jax.eval_shape(fresh).params)
    got = jax.tree.map(lambda a: (jnp.shape(a), jnp.asarray(a).dtype), init_params)
    if want != got:
      raise ValueError(f"init_params do not match the run's parameters: {got} vs {want} "
                       f"(for a sweep, stack them on a leading member axis).")
    init = functools.partial(jax.jit(lambda p: fresh().replace(params=p)), init_params)
  abstract = jax.eval_shape(init)
  if mesh is not None:  # restore straight into the member sharding (global arrays)
    ms = sweep_lib.member_sharding(mesh)
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=ms), abstract)
    hp = {k: dist.global_array(v, ms) for k, v in hp.items()}
  state = ckpt.restore(mngr, abstract, skip_corrupt=skip_corrupt_checkpoint and main,
                       log=print_fn)
  if main:  # only once the run's checkpoint (if any) restored into this config
    write_config(config, workdir)
    if changes:
      records.append_history(workdir, {
          "resumed_at_step": int(state.step if np.ndim(state.step) == 0
                                 else np.max(state.step)), "changes": changes})
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  if state is None:
    # one compiled init instead of hundreds of eagerly dispatched ops (~10x faster start)
    state = init()
    start = 0
    if os.path.exists(metrics_path) and main:
      os.remove(metrics_path)
  else:
    start = int(np.max(dist.to_host(state.step)))
    if main:
      records.truncate_metrics(metrics_path, start, print_fn)
    print_fn(f"resumed from checkpoint at step {start} in {workdir}")
  total = int(t.steps)
  step_fn = make_train_step(setup.objective, setup.optimizer,
                            PRECISIONS[t.get("precision", "float32")])
  constrain = None
  if mesh is not None and mesh.shape["data"] > 1:
    data_spec = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    constrain = lambda x: jax.lax.with_sharding_constraint(x, data_spec)
  compiled, compile_s = {}, [0.0]

  def chunk_fn(k):
    if k not in compiled:
      tc = time.perf_counter()
      shared = setup.sample_at is not None and strategy in ("vmap", "map")
      if members is not None and shared:
        chunk = make_shared_chunk(step_fn, setup.sample_at, int(t.batch_size), k,
                                  sweep_lib.lift(strategy))
      else:
        chunk = make_train_chunk(step_fn, setup.sample, int(t.batch_size), k, constrain,
                                 sample_at=setup.sample_at)
        if members is not None:
          chunk = sweep_lib.vectorize(chunk, strategy, mesh)
      arch = getattr(setup.model, "arch", None) or None  # the model's (or decoder's) kind
      compiled[k] = xla_options.jit(chunk, arch, donate_argnums=0).lower(state, hp).compile()
      took = time.perf_counter() - tc
      compile_s[0] += took
      what = f"{k}-step chunk" + (f" of {num} members ({strategy})" if members else "")
      print_fn(f"compiled a {what} in {took:.1f}s ({time.perf_counter() - t_start:.1f}s since start)")
    return compiled[k]

  t0, done, chunks = time.perf_counter(), 0, 0
  last_print = -1e9
  step = start
  failed = records.load_failed(workdir, start) if members is not None else {}
  while step < total:
    k = min(int(t.chunk), total - step)
    new_state, m = chunk_fn(k)(state, hp)
    m = dist.to_host(m)
    bad = np.asarray(m["nonfinite"]).reshape(num, k) if members else np.asarray(m["nonfinite"])
    if members is None and np.any(bad):
      i = int(np.argmax(bad))
      last = mngr.latest_step()
      kept = (f"the last good checkpoint (step {last}) in "
              f"{os.path.join(workdir, 'checkpoints')} is untouched" if last is not None else
              "no checkpoint yet (it failed before the first one)")
      raise NonFiniteError(
          f"Non-finite loss or gradient at step {step + i + 1} (loss={m['loss'][i]}). "
          f"Training stopped; {kept}. Lower hp.lr, add optim.grad_clip, or check the data.")
    if members is not None:
      for i in np.flatnonzero(bad.any(1)):
        if int(i) not in failed:
          failed[int(i)] = step + int(np.argmax(bad[i])) + 1
          print_fn(f"member {i} ({members.labels[i]}) hit a non-finite loss at step "
                   f"{failed[int(i)]}; its updates are skipped from here on.")
          if main:
            records.save_failed(workdir, failed)
    state = new_state
    step += k
    done += k
    chunks += 1
    if members is None:
      row = {"step": step, **{key: float(np.mean(v)) for key, v in m.items() if key != "nonfinite"}}
    else:
      row = {"step": step, **{key: np.mean(np.asarray(v, np.float64), axis=1).tolist()
                              for key, v in m.items() if key != "nonfinite"}}
    if main:
      records.append_metrics(metrics_path, row)
    if step % int(t.ckpt_every) == 0 or step == total:
      ckpt.save(mngr, step, state)
    now = time.perf_counter()
    if now - last_print >= float(t.get("log_every_s", 5.0)) or step == total:
      rate = done / max(now - t0 - compile_s[0], 1e-9)
      loss = np.mean(row["loss"])
      extra = " ".join(f"{key} {np.mean(row[key]):.4g}" for key in setup.log_keys if key in row)
      who = f"{num} members x " if members else ""
      print_fn(f"step {step}/{total} | {who}{rate:.2f} steps/s ({rate * num * int(t.batch_size):.0f} img/s)"
               f" | ETA {_fmt_time((total - step) / max(rate, 1e-9))} | loss {loss:.4g}"
               f"{' (mean)' if members else ''} {extra}")
      last_print = now
    if stop_after_chunks is not None and chunks >= stop_after_chunks:
      return state, setup
  if members is not None:
    if main:
      write_sweep_outputs(members, metrics_path, workdir, failed)
      if write_figures and setup.finish_sweep is not None:
        setup.finish_sweep(setup, state.params, workdir, members)
  elif write_figures and main and setup.finish is not None:
    setup.finish(setup, state.params, workdir)
  return state, setup


def write_sweep_outputs(members, metrics_path: str, workdir: str, failed=None) -> None:
  """sweep.csv (one row per member: swept values, final metrics) and sweep.png."""
  import csv
  import io
  failed = failed or {}
  last = records.read_metrics(os.path.dirname(metrics_path) or ".")[-1]
  keys = [k for k in last if k != "step"]
  rows = []
  for i, lab in enumerate(members.labels):
    row = {"member": i, "seed": int(members.seeds[i]),
           **{f"hp.{k}": float(v[i]) for k, v in members.hp.items()}}
    row.update({k: last[k][i] for k in keys})
    row["nonfinite_at"] = failed.get(i, "")
    rows.append(row)
  buf = io.StringIO()
  w = csv.DictWriter(buf, list(rows[0]))
  w.writeheader()
  w.writerows(rows)
  records.atomic_write(os.path.join(workdir, "sweep.csv"), buf.getvalue())
  viz.save_sweep_plot(rows, [a for a in members.axes if a != "seed"],
                      [k for k in ("loss", "rec", "kl") if k in keys],
                      os.path.join(workdir, "sweep.png"))


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


def ensure_trained(workdir: str, config_spec: str, print_fn=None) -> str:
  """`workdir` holding a trained run: trained first with the config file `config_spec`
  ('path/to/config.py[:arg]') when it holds none, and an unfinished run there (killed
  before its last step) resumed to its end with its own config.json. Returns `workdir`."""
  log = print_fn or (lambda s: print(s, file=sys.stderr, flush=True))
  cfg_path = os.path.join(workdir, "config.json")
  if not os.path.exists(cfg_path):
    from lsx.train.config import load_config
    log(f"no trained model in {workdir}: training one with {config_spec}")
    cfg = load_config(config_spec)
    with cfg.unlocked():
      cfg.workdir = workdir
    train(cfg, workdir, print_fn=print_fn)
    return workdir
  ckpts = os.path.join(workdir, "checkpoints")
  done = max((int(n) for n in (os.listdir(ckpts) if os.path.isdir(ckpts) else ())
              if n.isdigit()), default=0)
  cfg = config_from_json(cfg_path)
  if done < int(cfg.train.steps):
    log(f"the run in {workdir} stopped at step {done} of {int(cfg.train.steps)}: resuming it")
    train(cfg, workdir, print_fn=print_fn)
  return workdir


def load_run(workdir: str, step: int | None = None):
  """(setup, state) of a trained run: its config.json rebuilt, its checkpoint restored.

  For a sweep the state is the stacked one (leading member axis); see `extract_member`.
  """
  records.require_run(workdir, "load_run", trained=False)
  config = config_from_json(os.path.join(workdir, "config.json"))
  setup = build(config)
  members = sweep_lib.plan(config, setup.hp)
  if members is None:
    abstract = setup.abstract_state()
  else:
    seeds = jnp.asarray(members.seeds, jnp.uint32)
    abstract = jax.eval_shape(lambda: sweep_lib.stack_init(setup.init_state, seeds))
  ckdir = os.path.join(workdir, "checkpoints")
  state = ckpt.restore(ckpt.manager(ckdir), abstract, step) if os.path.isdir(ckdir) else None
  if state is None:
    raise FileNotFoundError(f"{workdir}/checkpoints has no checkpoint yet: train first.")
  return setup, state


def extract_member(workdir: str, member: int, out_workdir: str) -> str:
  """Write member `member` of the sweep in `workdir` as an ordinary single-run workdir
  (config.json with its seed and hyperparameters, its checkpoint, its metrics)."""
  if os.path.abspath(out_workdir) == os.path.abspath(workdir):
    raise ValueError(f"--out {out_workdir} is the sweep's own workdir; give a new directory.")
  if os.path.lexists(out_workdir) and (not os.path.isdir(out_workdir) or os.listdir(out_workdir)):
    raise FileExistsError(f"{out_workdir} already holds a run or other files; extract into a "
                          f"new (or empty) directory so nothing there is overwritten.")
  records.require_run(workdir, "extract_member", sweep=True)  # before anything is loaded
  setup, state = load_run(workdir)
  config = setup.config
  members = sweep_lib.plan(config, setup.hp)
  if not 0 <= member < members.size:
    raise ValueError(f"member must be in [0, {members.size}), got {member}.")
  one = sweep_lib.take_member(state, member)
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.seed = int(members.seeds[member])
    config.hp = {k: float(v[member]) for k, v in members.hp.items()}
    config.sweep = {"mode": "product", "seed": (), "hp": {}}
    config.workdir = out_workdir
  # written beside the target and renamed into place at the end: a failure half-way
  # leaves no partial workdir at `out_workdir`
  import shutil
  tmp = f"{os.path.abspath(out_workdir).rstrip(os.sep)}.partial-{os.getpid()}"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  try:
    write_config(config, tmp)
    ckpt.save(ckpt.manager(os.path.join(tmp, "checkpoints")), int(one.step), one)
    rows = records.read_metrics(workdir)
    records.atomic_write(os.path.join(tmp, "metrics.jsonl"), "".join(
        json.dumps({k: (v if k == "step" else v[member]) for k, v in r.items()}) + "\n"
        for r in rows))
    if os.path.isdir(out_workdir):
      os.rmdir(out_workdir)  # empty (checked above)
    os.replace(tmp, out_workdir)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return out_workdir
