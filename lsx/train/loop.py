"""The engine: restore or init a built `Setup`, run scanned chunks, log, save.

It knows no family: `lsx.runs` builds a run's `Setup` from its config (the family table)
and hands it here.
"""
from __future__ import annotations

import functools
import logging
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from lsx import records, viz
from lsx.records import config_to_json, write_config
from lsx.train import checkpoint as ckpt
from lsx.train import distributed as dist
from lsx.train import sweep as sweep_lib
from lsx.train import workdir as workdir_lib
from lsx.train import validate, xla_options
from lsx.train.setup import Setup
from lsx.train.state import (PRECISIONS, TrainState, make_shared_chunk, make_train_chunk,
                             make_train_step)
from lsx.train.config import run_config

log = logging.getLogger("lsx")


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


def prepare_host(config) -> None:
  """Before any device is touched (a Setup's build touches them): the multi-process
  initialization, or a CPU sweep's one device per core (sweep.split_host). Idempotent;
  no-ops for one process / a single run."""
  if not dist.maybe_initialize(config):
    sweep_lib.split_host(config)


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
