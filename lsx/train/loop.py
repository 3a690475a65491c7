"""The engine: restore or init a built `Setup`, run scanned chunks, log, save.

It knows no family: `lsx.runs` builds a run's `Setup` from its config (the family table)
and hands it here.
"""
from __future__ import annotations

import contextlib
import functools
import os
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lsx import records
from lsx.records import config_to_json, write_config
from lsx.train import checkpoint as ckpt, distributed as dist, events, sweep as sweep_lib
from lsx.train import validate, workdir as workdir_lib, xla_options
from lsx.train.config import check_resume_config, config_changes
from lsx.train.setup import RunSpec, Setup, prepare_host, run_spec
from lsx.train.state import (PRECISIONS, TrainState, make_shared_chunk, make_train_chunk,
                             make_train_step)


class NonFiniteError(FloatingPointError):
  """A single run's loss or gradient became NaN or Inf (its last checkpoint is kept)."""


def train(config, workdir: str | None = None, **kwargs) -> tuple[TrainState, Setup]:
  """Train (or resume) the run or sweep described by `config` in `workdir` (default
  config.workdir), holding the workdir's lock (`lsx.train.workdir`: one writer at a time).

  Writes config.json, metrics.jsonl (one line per chunk; per-member lists for a sweep),
  TensorBoard events in tb/ (`lsx.train.events`, with tensorboardX), orbax checkpoints
  under checkpoints/ (the stacked state for a sweep), and at the end the family's figures
  (single run) or sweep.csv + sweep.png (sweep). A non-finite loss stops a single run with `NonFiniteError` (the last good
  checkpoint stays as it was); in a sweep the member's updates are skipped from then on
  and it is reported and marked in sweep.csv, while the others go on.
  `stop_after_chunks` ends early after that many chunks of this call (simulates a kill).
  Resuming with a config that differs from the recorded one in more than
  `RESUMABLE_CHANGES` is refused, unless `allow_config_change` (then the changes are
  appended to the workdir's history.jsonl). Every family's `Setup` (`setup`, built by
  `lsx.runs.build`) trains here; `init_params` starts a fresh run from given parameters
  (stacked for a sweep) instead of the objective's init.
  """
  validate.check_run(config)
  setup = kwargs.pop("setup", None)
  if setup is None:
    raise TypeError("lsx.train.loop.train runs a built Setup (setup=...); lsx.runs.train "
                    "(or lsx.train.train) builds one from the config's family.")
  workdir = config.workdir if workdir is None else workdir
  if not str(workdir or "").strip():
    raise ValueError("the workdir is empty: give a directory (config.workdir or --workdir).")
  prepare_host(config)
  # what the workdir holds, read before anything is written (records.check_writable)
  records.check_writable(records.inspect_workdir(workdir), config_to_json(config),
                         config_changes)
  workdir_lib.prepare(workdir)
  if not dist.is_main():
    return _train(config, workdir, setup=setup, **kwargs)
  with workdir_lib.lock(workdir):
    return _train(config, workdir, setup=setup, **kwargs)


def _initializer(run: RunSpec, init_params) -> tuple[Callable, dict]:
  """The compiled fresh state (stacked and placed for a sweep) and the traced hp."""
  setup, members = run.setup, run.members
  if members is None:
    init, hp = jax.jit(setup.init_state), setup.hp
  else:
    seeds = jnp.asarray(members.seeds, jnp.uint32)
    shard = {} if run.mesh is None else {"out_shardings": sweep_lib.member_sharding(run.mesh)}
    init = jax.jit(lambda: sweep_lib.stack_init(setup.init_state, seeds), **shard)
    hp = members.hp
  if init_params is not None:
    fresh = init
    want = jax.tree.map(lambda a: (a.shape, a.dtype), jax.eval_shape(fresh).params)
    got = jax.tree.map(lambda a: (jnp.shape(a), jnp.asarray(a).dtype), init_params)
    if want != got:
      raise ValueError(f"init_params do not match the run's parameters: {got} vs {want} "
                       f"(for a sweep, stack them on a leading member axis).")
    init = functools.partial(jax.jit(lambda p: fresh().replace(params=p)), init_params)
  if run.mesh is not None:
    hp = {k: dist.global_array(v, sweep_lib.member_sharding(run.mesh)) for k, v in hp.items()}
  return init, hp


def _restore(run: RunSpec, config, mngr, init, allow_change: bool, skip_corrupt: bool):
  """(state, first step): the latest checkpoint restored into this config (refused when
  the config differs from the recorded one), or a fresh state; config.json and
  metrics.jsonl brought in line with it."""
  changes = {}
  if mngr.latest_step() is not None:
    changes = check_resume_config(config, run.workdir, allow=allow_change)
  abstract = jax.eval_shape(init)
  if run.mesh is not None:  # restore straight into the member sharding (global arrays)
    ms = sweep_lib.member_sharding(run.mesh)
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=ms),
                            abstract)
  state = ckpt.restore(mngr, abstract, skip_corrupt=skip_corrupt and run.main,
                       log=run.print_fn)
  if run.main:  # only once the run's checkpoint (if any) restored into this config
    write_config(config, run.workdir)
    if changes:
      records.append_history(run.workdir, {
          "resumed_at_step": int(state.step if np.ndim(state.step) == 0
                                 else np.max(state.step)), "changes": changes})
  if state is None:
    if os.path.exists(run.metrics_path) and run.main:
      os.remove(run.metrics_path)
    # one compiled init instead of hundreds of eagerly dispatched ops (~10x faster start)
    return init(), 0
  start = int(np.max(dist.to_host(state.step)))
  if run.main:
    records.truncate_metrics(run.metrics_path, start, run.print_fn)
  run.print_fn(f"resumed from checkpoint at step {start} in {run.workdir}")
  return state, start


def _chunk_compiler(run: RunSpec, state, hp) -> tuple[Callable, list]:
  """chunk_fn(k): the k-step chunk compiled once per k (donating the state), and the
  compile seconds so far (excluded from steps/s)."""
  setup, members, strategy = run.setup, run.members, run.strategy
  step_fn = make_train_step(setup.objective, setup.optimizer, PRECISIONS[run.precision])
  constrain = None
  if run.mesh is not None and run.mesh.shape["data"] > 1:
    data_spec = jax.sharding.NamedSharding(run.mesh, jax.sharding.PartitionSpec("data"))
    constrain = lambda x: jax.lax.with_sharding_constraint(x, data_spec)
  compiled, compile_s = {}, [0.0]

  def chunk_fn(k):
    if k not in compiled:
      tc = time.perf_counter()
      if members is not None and setup.sample_at is not None and strategy in ("vmap", "map"):
        chunk = make_shared_chunk(step_fn, setup.sample_at, run.batch, k,
                                  sweep_lib.lift(strategy))
      else:
        chunk = make_train_chunk(step_fn, setup.sample, run.batch, k, constrain,
                                 sample_at=setup.sample_at)
        if members is not None:
          chunk = sweep_lib.vectorize(chunk, strategy, run.mesh)
      arch = getattr(setup.model, "arch", None) or None  # the model's (or decoder's) kind
      compiled[k] = xla_options.jit(chunk, arch, donate_argnums=0).lower(state, hp).compile()
      took = time.perf_counter() - tc
      compile_s[0] += took
      what = f"{k}-step chunk" + (f" of {run.num} members ({strategy})" if members else "")
      run.print_fn(f"compiled a {what} in {took:.1f}s "
                   f"({time.perf_counter() - run.t_start:.1f}s since start)")
    return compiled[k]
  return chunk_fn, compile_s


def _check_finite(run: RunSpec, m: dict, k: int, step: int, mngr, failed: dict) -> None:
  """A single run stops at a non-finite loss (NonFiniteError, the last checkpoint kept);
  a sweep member is recorded in `failed` (nonfinite.json) and its updates are skipped."""
  if run.members is None:
    bad = np.asarray(m["nonfinite"])
    if np.any(bad):
      i, last = int(np.argmax(bad)), mngr.latest_step()
      kept = (f"the last good checkpoint (step {last}) in "
              f"{os.path.join(run.workdir, 'checkpoints')} is untouched" if last is not None
              else "no checkpoint yet (it failed before the first one)")
      raise NonFiniteError(
          f"Non-finite loss or gradient at step {step + i + 1} (loss={m['loss'][i]}). "
          f"Training stopped; {kept}. Lower hp.lr, add optim.grad_clip, or check the data.")
    return
  bad = np.asarray(m["nonfinite"]).reshape(run.num, k)
  for i in np.flatnonzero(bad.any(1)):
    if int(i) not in failed:
      failed[int(i)] = step + int(np.argmax(bad[i])) + 1
      run.print_fn(f"member {i} ({run.members.labels[i]}) hit a non-finite loss at step "
                   f"{failed[int(i)]}; its updates are skipped from here on.")
      if run.main:
        records.save_failed(run.workdir, failed)


def _metrics_row(run: RunSpec, step: int, m: dict) -> dict:
  """metrics.jsonl's row of a chunk: each metric's mean over the chunk (per member)."""
  if run.members is None:
    return {"step": step, **{k: float(np.mean(v)) for k, v in m.items() if k != "nonfinite"}}
  return {"step": step, **{k: np.mean(np.asarray(v, np.float64), axis=1).tolist()
                           for k, v in m.items() if k != "nonfinite"}}


def _progress_line(run: RunSpec, row: dict, step: int, rate: float) -> str:
  extra = " ".join(f"{k} {np.mean(row[k]):.4g}" for k in run.setup.log_keys if k in row)
  who, mean = (f"{run.num} members x ", " (mean)") if run.members else ("", "")
  eta = int(max((run.total - step) / max(rate, 1e-9), 0))
  return (f"step {step}/{run.total} | {who}{rate:.2f} steps/s "
          f"({rate * run.num * run.batch:.0f} img/s) | ETA "
          f"{eta // 3600}:{eta % 3600 // 60:02d}:{eta % 60:02d} | loss "
          f"{np.mean(row['loss']):.4g}{mean} {extra}")


def _train(config, workdir: str, *, stop_after_chunks: int | None = None,
           write_figures: bool = True, print_fn=None, setup: Setup | None = None,
           init_params=None, allow_config_change: bool = False,
           skip_corrupt_checkpoint: bool = False) -> tuple[TrainState, Setup]:
  """The body of `train`, with `workdir` locked and `setup` built."""
  run = run_spec(config, workdir, setup, print_fn)
  mngr = ckpt.manager(os.path.join(workdir, "checkpoints"), max_to_keep=run.keep)
  init, hp = _initializer(run, init_params)
  state, step = _restore(run, config, mngr, init, allow_config_change, skip_corrupt_checkpoint)
  chunk_fn, compile_s = _chunk_compiler(run, state, hp)
  failed = records.load_failed(workdir, step) if run.members is not None else {}
  tb = events.open_writer(workdir, config_to_json(config), run.members and run.members.labels,
                          step, enabled=run.main and run.events, log=run.print_fn)
  t0, done, chunks, last_print = time.perf_counter(), 0, 0, -1e9
  with contextlib.closing(tb):
    while step < run.total:
      k = min(run.chunk, run.total - step)
      new_state, m = chunk_fn(k)(state, hp)
      m = dist.to_host(m)
      _check_finite(run, m, k, step, mngr, failed)
      state, step, done, chunks = new_state, step + k, done + k, chunks + 1
      row = _metrics_row(run, step, m)
      if run.main:
        records.append_metrics(run.metrics_path, row)
        tb.scalars(row)
      if step % run.ckpt_every == 0 or step == run.total:
        ckpt.save(mngr, step, state)
      now = time.perf_counter()
      if now - last_print >= run.log_every_s or step == run.total:
        run.print_fn(_progress_line(run, row, step, done / max(now - t0 - compile_s[0], 1e-9)))
        last_print = now
      if stop_after_chunks is not None and chunks >= stop_after_chunks:
        return state, setup
    if run.main:
      _finish(run, state, failed, write_figures)
      tb.figures(workdir, step)
      if chunks:
        tb.hparams(row)
  return state, setup


def _finish(run: RunSpec, state, failed: dict, write_figures: bool) -> None:
  """A finished run's outputs: the sweep's tables (and figures), or the run's figures."""
  setup = run.setup
  if run.members is not None:
    sweep_lib.write_outputs(run.members, run.workdir, failed)
    if write_figures and setup.finish_sweep is not None:
      setup.finish_sweep(setup, state.params, run.workdir, run.members)
  elif write_figures and setup.finish is not None:
    setup.finish(setup, state.params, run.workdir)
