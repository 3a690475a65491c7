"""Sweep strategies side by side: M members as one program vs M sequential single runs.

For each model (default conv beta-VAE of Locatello et al.; a small MLP autoencoder) and
each strategy (sequential = one compiled single run called M times; vmap; map; sharded
when more than one device; auto = what lsx picks here), times `--steps` training steps
per member after compilation, in `--rounds` interleaved rounds (the best of each
strategy is kept: a shared machine's load drifts), and prints images/s and the ratio to
sequential. Then checks
equivalence: every member's loss history and final parameter norm against the same
configuration trained alone.

  python benchmarks/sweep_throughput.py [--members 16] [--steps 20] [--equiv-steps 100]
      [--cpu-devices auto]

On a CPU the process is first split into host devices exactly as `lsx.train.train` does
for a sweep (`mesh.cpu_devices`, default 'auto': one device per core); `sequential`, `vmap`
and `map` run on the first device, `sharded` (what `auto` picks then) over all of them.
`--cpu-devices 1` keeps one device.

`--ceiling` adds one member trained at batch members x batch: the images/s of the network
itself at that size on this device, an upper bound for any strategy (the ratio column is
its speed over the sequential runs).

Memory: the peak of each compiled program (XLA's buffer assignment, `peak_memory_in_bytes`;
for sequential, one member's program plus the other members' resident states), at M and
at M/4 members: linear growth reads 4.0 in the `x(M/4->M)` column. For `sharded` the peak
is per device.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from configs import common  # noqa: E402
from lsx.train import build, make_train_chunk, make_train_step, sweep, xla_options  # noqa: E402

MODELS = {
    "conv beta-VAE (64x64, d=10)": dict(key="conv", arch="conv", hidden=()),
    "MLP AE 256-256 (64x64, d=10)": dict(key="mlp", arch="mlp", hidden=(256, 256)),
    "small MLP AE 64-64 (64x64)": dict(key="small-mlp", arch="mlp", hidden=(64, 64)),
}


def make(arch, hidden, members, batch, conv_impl="gemm"):
  c = common.base_config()
  c.model.arch, c.model.hidden, c.model.conv_impl = arch, hidden, conv_impl
  c.train.batch_size = batch
  c.hp = {"beta": 4.0, "lr": 1e-3}
  c.sweep.seed = tuple(range(members))
  setup = build(c)
  plan = sweep.plan(c, setup.hp)
  return setup, plan


def chunk_of(setup, batch, k):
  return make_train_chunk(make_train_step(setup.objective, setup.optimizer),
                          setup.dataset.sample, batch, k)


def _peak(compiled) -> int:
  m = compiled.memory_analysis()
  peak = getattr(m, "peak_memory_in_bytes", 0)
  return peak or (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
                  - m.alias_size_in_bytes)


class Runner:
  """One strategy's compiled program and its members' states; `run(steps)` trains on."""

  def __init__(self, setup, plan, strategy, chunk, batch):
    self.strategy, self.chunk, self.size = strategy, chunk, plan.size
    fn = chunk_of(setup, batch, chunk)
    seeds = jnp.asarray(plan.seeds, jnp.uint32)
    if strategy == "sequential":
      self.states = [setup.init_state(jax.random.key(int(s))) for s in plan.seeds]
      self.hps = [plan.member_hp(i) for i in range(plan.size)]
      self.prog = xla_options.jit(fn, setup.model.arch).lower(self.states[0], self.hps[0]).compile()
      self.state_bytes = sum(l.nbytes for l in jax.tree.leaves(self.states[0]))
      self.peak = _peak(self.prog) + (plan.size - 1) * self.state_bytes  # the others' states
      return
    mesh = sweep.make_mesh(plan.size) if strategy == "sharded" else None
    self.state = jax.jit(lambda: sweep.stack_init(setup.init_state, seeds))()
    self.hp = plan.hp
    if mesh is not None:
      self.state, self.hp = sweep.shard_members(self.state, mesh), sweep.shard_members(self.hp, mesh)
    self.prog = xla_options.jit(sweep.vectorize(fn, strategy, mesh), setup.model.arch).lower(
        self.state, self.hp).compile()
    self.peak = _peak(self.prog)

  def run(self, steps):
    """Trains every member `steps` more steps: (seconds, per-step losses [M, steps])."""
    t0 = time.perf_counter()
    if self.strategy == "sequential":
      losses = [[] for _ in self.states]
      for _ in range(steps // self.chunk):
        for i in range(self.size):
          self.states[i], m = self.prog(self.states[i], self.hps[i])
          losses[i].append(m["loss"])
      jax.block_until_ready(self.states)
      took = time.perf_counter() - t0
      return took, np.array([np.concatenate([np.asarray(x) for x in l]) for l in losses])
    losses = []
    for _ in range(steps // self.chunk):
      self.state, m = self.prog(self.state, self.hp)
      losses.append(m["loss"])
    jax.block_until_ready(self.state)
    took = time.perf_counter() - t0
    return took, np.concatenate([np.asarray(l) for l in losses], 1)

  def final(self):
    if self.strategy == "sequential":
      return jax.tree.map(lambda *a: jnp.stack(a), *self.states)
    return self.state


def quarter_peak(runner, setup, plan, chunk, batch) -> int:
  """Peak bytes for M/4 members (`plan`) of `runner`'s strategy: memory growth."""
  if runner.strategy == "sequential":  # the same one-member program, fewer resident states
    return runner.peak - (runner.size - plan.size) * runner.state_bytes
  seeds = jnp.asarray(plan.seeds, jnp.uint32)
  state = jax.eval_shape(lambda: sweep.stack_init(setup.init_state, seeds))
  fn = sweep.vectorize(chunk_of(setup, batch, chunk), runner.strategy)
  return _peak(xla_options.jit(fn, setup.model.arch).lower(state, plan.hp).compile())


def param_norms(states):
  leaves = jax.tree.leaves(states.params)
  return np.sqrt(sum(np.sum(np.asarray(l, np.float64).reshape(l.shape[0], -1) ** 2, 1)
                     for l in leaves))


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--members", type=int, default=16)
  ap.add_argument("--steps", type=int, default=20)
  ap.add_argument("--chunk", type=int, default=10)
  ap.add_argument("--batch", type=int, default=64)
  ap.add_argument("--equiv-steps", type=int, default=100)
  ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (best kept)")
  ap.add_argument("--conv-impl", default="gemm", help="model.conv_impl of the conv model")
  ap.add_argument("--models", default="conv,mlp,small-mlp",
                  help="which of conv, mlp (256-256), small-mlp (64-64) to time")
  ap.add_argument("--ceiling", action="store_true",
                  help="also time one member at batch members*batch: the network's own "
                       "images/s ceiling on this device, which bounds what any strategy can reach")
  ap.add_argument("--cpu-devices", default="auto",
                  help="mesh.cpu_devices: split the CPU host into devices (auto: one per core)")
  args = ap.parse_args()
  c = common.base_config()  # before any JAX call: the host split must precede the backends
  c.sweep.seed, c.mesh.cpu_devices = tuple(range(args.members)), args.cpu_devices
  sweep.split_host(c)
  strategies = ["sequential", "vmap", "map"] + (["sharded"] if jax.device_count() > 1 else [])
  dev = jax.devices()[0]
  print(f"{args.members} members, {args.steps} steps each, batch {args.batch}, "
        f"conv_impl {args.conv_impl} | "
        f"{jax.device_count()} x {dev.platform} ({getattr(dev, 'device_kind', '')}), "
        f"{os.cpu_count()} CPUs, {platform.machine()}")
  print(f"{'model':30s} {'strategy':11s} {'img/s':>9s} {'vs sequential':>14s} {'peak MB':>9s} "
        f"{'x(M/4->M)':>9s}")
  for name, kw in MODELS.items():
    if kw["key"] not in args.models.split(","):
      continue
    setup, plan = make(kw["arch"], kw["hidden"], args.members, args.batch, args.conv_impl)
    quarter = make(kw["arch"], kw["hidden"], max(1, args.members // 4), args.batch, args.conv_impl)
    auto = sweep.resolve_strategy("auto")
    runners = {s: Runner(setup, plan, s, args.chunk, args.batch) for s in strategies}
    for r in runners.values():
      r.run(args.chunk)  # warm up
    best = {s: float("inf") for s in strategies}
    for _ in range(args.rounds):  # interleaved rounds, best of each: this CPU is shared
      for s, r in runners.items():
        best[s] = min(best[s], r.run(args.steps)[0])
    for s, r in runners.items():
      ips = args.members * args.steps * args.batch / best[s]
      growth = (r.peak / quarter_peak(r, *quarter, args.chunk, args.batch)
                if s != "sharded" else float("nan"))
      print(f"{name:30s} {s:11s} {ips:9.0f} {best['sequential'] / best[s]:13.2f}x "
            f"{r.peak / 2**20:9.1f} {growth:9.2f}", flush=True)
    del runners
    if args.ceiling:  # one member, all members' images in one batch: no per-member overhead
      big = args.members * args.batch
      one = Runner(*make(kw["arch"], kw["hidden"], 1, big, args.conv_impl), "sequential",
                   args.chunk, big)
      one.run(args.chunk)
      t = min(one.run(args.steps)[0] for _ in range(args.rounds))
      print(f"{name:30s} {'ceiling':11s} {args.steps * big / t:9.0f} "
            f"{best['sequential'] / t:13.2f}x {one.peak / 2**20:9.1f}   (1 member, batch {big})")
      del one
    print(f"{name:30s} {'auto=' + auto:11s} {'':9s} {best['sequential'] / best[auto]:13.2f}x")
    print(f"ratio auto/sequential ({kw['key']}, {args.members} members): "
          f"{best['sequential'] / best[auto]:.2f}")
  if args.equiv_steps:
    print(f"\nequivalence after {args.equiv_steps} steps, MLP AE, {args.members} members vs "
          f"the same member trained alone (max relative difference)")
    setup, plan = make("mlp", (256, 256), args.members, args.batch)
    ref = Runner(setup, plan, "sequential", args.chunk, args.batch)
    la = ref.run(args.equiv_steps)[1]
    alone = ref.final()
    na = param_norms(alone)
    for s in strategies[1:]:
      r = Runner(setup, plan, s, args.chunk, args.batch)
      ls, st = r.run(args.equiv_steps)[1], r.final()
      dl = float(np.max(np.abs(ls[:, -1] - la[:, -1]) / np.abs(la[:, -1])))
      dh = float(np.max(np.abs(ls - la) / np.abs(la)))
      dn = float(np.max(np.abs(param_norms(st) - na) / na))
      exact = all(np.array_equal(np.asarray(a), np.asarray(b))
                  for a, b in zip(jax.tree.leaves(alone.params), jax.tree.leaves(st.params)))
      print(f"  {s:9s} final losses {dl:.2e} (any step {dh:.2e})  param norm {dn:.2e}  "
            f"bit-exact params: {exact}")


if __name__ == "__main__":
  main()
