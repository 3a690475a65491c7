"""Sweeps: many runs as one program.

A config's `sweep` names what varies: `seed` and traced hyperparameters under `hp`,
combined as a `product` (default) or a `zip`:

    config.sweep = dict(mode="product", seed=(0, 1, 2, 3), hp=dict(beta=(1., 2., 4., 8.)))

Members are stacked on a leading axis of the train state and of `hp`. The same pure
chunk (K scanned steps) then runs under one of these strategies:
- `vmap`: one batched program (accelerators; small dense models on CPU).
- `map`: members in sequence inside one jitted program (`lax.map`): CPU conv models,
  memory-bound cases.
- `sharded`: the member axis sharded over the `member` axis of a `("member", "data")`
  device mesh (`jax.make_mesh`, NamedSharding). With `mesh.data == 1` each device runs
  its own members through `jax.shard_map` (`lax.map` over them on CPU, `vmap` on
  accelerators); with `mesh.data > 1` it is `vmap` with `spmd_axis_name="member"` and each
  member's batch is sharded over `data`.
- `auto`: `sharded` when there is more than one device, else `vmap` on GPU/TPU and
  `map` on CPU.

On a CPU, a sweep launched through `lsx.train.train` splits the host into CPU devices
first (`mesh.cpu_devices`, default 'auto': the largest divisor of the member count that
is at most the number of cores; see `split_host`), so `auto` becomes `sharded` and the
cores each train their own members. Measured on a 2-core CPU, 16 members
(benchmarks/sweep_throughput.py, best of 3 interleaved rounds): `sharded` 1.11x (conv
beta-VAE), 1.07x (MLP 256-256) and 1.04x (small MLP) the speed of 16 sequential runs,
`map` 1.03x / 0.94x / 1.08x, `vmap` 0.95x / 0.82x / 0.72x: XLA:CPU's batched matrix
products and batched (grouped) convolutions are slower than the same products one member
at a time.
"""
from __future__ import annotations

import itertools
import os
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from lsx import records, viz

STRATEGIES = ("auto", "vmap", "map", "sharded")


class Plan(NamedTuple):
  """The members of a sweep: seeds [M] and the stacked traced hyperparameters."""
  seeds: np.ndarray  # [M] int
  hp: dict  # name -> float32 [M]
  axes: dict  # swept name -> values (for tables and plots), 'seed' included
  labels: list  # per member: dict of its swept values

  @property
  def size(self) -> int:
    return len(self.seeds)

  def member_hp(self, i: int) -> dict:
    return {k: v[i] for k, v in self.hp.items()}


def _as_dict(x) -> dict:
  return dict(x.to_dict() if hasattr(x, "to_dict") else x)


def plan(config, base_hp: dict) -> Plan | None:
  """Members of `config.sweep` (None for a single run). Raises on what cannot be swept."""
  spec = _as_dict(config.get("sweep", {}) or {})
  mode = spec.pop("mode", "product")
  spec = {k: v for k, v in spec.items() if not (isinstance(v, (tuple, list, dict)) and len(v) == 0)}
  if not spec:
    return None
  if mode not in ("product", "zip"):
    raise ValueError(f"config.sweep.mode must be 'product' or 'zip', got {mode!r}.")
  axes: dict[str, tuple] = {}
  for key, val in spec.items():
    if key == "seed":
      axes["seed"] = tuple(int(s) for s in val)
    elif key == "hp":
      for name, vals in _as_dict(val).items():
        if name not in base_hp:
          raise ValueError(f"config.sweep.hp.{name}: not a traced hyperparameter of this run; "
                           f"the traced ones are {sorted(base_hp)}.")
        axes[f"hp.{name}"] = tuple(float(v) for v in vals)
    else:
      raise ValueError(
          f"config.sweep.{key} cannot be vectorized: only 'seed' and the traced "
          f"hyperparameters under 'hp' ({sorted(base_hp)}) can be swept in one program. "
          f"A static field (shapes, steps, architecture) changes the compiled program: "
          f"run one job per value instead.")
  for k, v in axes.items():
    if len(v) == 0:
      raise ValueError(f"config.sweep.{k} is empty.")
  names = list(axes)
  if mode == "zip":
    lengths = {k: len(v) for k, v in axes.items()}
    if len(set(lengths.values())) != 1:
      raise ValueError(f"config.sweep.mode='zip' needs axes of one length, got {lengths}.")
    combos = list(zip(*axes.values()))
  else:
    combos = list(itertools.product(*axes.values()))
  labels = [dict(zip(names, c)) for c in combos]
  seeds = np.array([lab.get("seed", int(config.seed)) for lab in labels], np.int64)
  hp = {}
  for name, base in base_hp.items():
    key = f"hp.{name}"
    vals = [lab[key] if key in lab else float(base) for lab in labels]
    hp[name] = jnp.asarray(vals, jnp.float32)
  return Plan(seeds, hp, axes, labels)


def num_members(config) -> int:
  """Members of `config.sweep` (1 for a single run), from the config alone: no JAX call,
  so it can run before the backends start. `plan` validates what this only counts
  (lsx.records.num_members counts a recorded config the same way)."""
  return records.num_members(config)


def _cores() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not on Linux
    return os.cpu_count() or 1


def split_host(config) -> int:
  """Make the CPU backend `n` devices for this sweep; returns n (1: left as it was).

  `config.mesh.cpu_devices`: 'auto' (default) takes the largest divisor of the member
  count that is at most the number of cores; an int asks for that many; 0 or 1 leaves the
  host one device. Only for a sweep whose strategy is 'auto' or 'sharded', and only
  before JAX's backends start: afterwards (a notebook that already ran JAX, a test
  process), when `XLA_FLAGS` forces a host device count or `jax_num_cpu_devices` is set,
  it leaves the process as it is. On a machine with an accelerator, the CPU devices are
  not the ones a sweep runs on, so this changes nothing there.
  """
  want = (config.get("mesh", {}) or {}).get("cpu_devices", "auto")
  m = num_members(config)
  if m <= 1 or config.get("sweep_strategy", "auto") not in ("auto", "sharded"):
    return 1
  if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
    return 1
  if jax.config.jax_num_cpu_devices != -1:
    return 1
  if want == "auto":
    n = max(d for d in range(1, min(m, _cores()) + 1) if m % d == 0)
  else:
    n = int(want)
    if n > 1 and m % n:
      raise ValueError(f"config.mesh.cpu_devices={n} does not divide the {m} sweep members.")
  if n <= 1:
    return 1
  try:
    jax.config.update("jax_num_cpu_devices", n)
  except RuntimeError:  # the backends already started in this process
    return 1
  return n


def resolve_strategy(strategy: str, num_devices: int | None = None,
                     num_members: int | None = None, data: int = 1) -> str:
  """The strategy 'auto' stands for: 'sharded' over several devices when the members split
  evenly over the mesh's member axis (devices / data), else the one-device strategy (a
  later sweep of, say, 3 members in a process whose host was split in 2 devices for an
  earlier one of 6)."""
  if strategy not in STRATEGIES:
    raise ValueError(f"Unknown sweep strategy {strategy!r}; choose one of {STRATEGIES}.")
  if strategy != "auto":
    return strategy
  num_devices = jax.device_count() if num_devices is None else num_devices
  groups = num_devices // max(int(data), 1)
  if num_devices > 1 and (num_members is None or (groups >= 1 and num_members % groups == 0)):
    return "sharded"
  # measured: on CPU `map` beat `vmap` for conv and MLP models alike
  return _one_device(jax.default_backend())


def _one_device(platform: str) -> str:
  """How one device runs several members: in sequence on CPU, batched elsewhere."""
  return "map" if platform == "cpu" else "vmap"


def make_mesh(num_members: int, data: int = 1):
  """A ("member", "data") mesh over all devices: `data` devices per member group."""
  n = jax.device_count()
  if n % data:
    raise ValueError(f"mesh data axis {data} does not divide the {n} devices.")
  member = n // data
  if num_members % member:
    raise ValueError(f"{num_members} sweep members cannot be split evenly over the mesh's "
                     f"member axis of {member} devices; use a multiple of {member} members "
                     f"or set config.mesh.data so that devices/data divides it.")
  auto = (jax.sharding.AxisType.Auto,) * 2  # the compiler propagates shardings
  return jax.make_mesh((member, data), ("member", "data"), axis_types=auto)


def lift(strategy: str) -> Callable:
  """`f(state, hp)` -> the same over stacked members, by 'vmap' or 'map'."""
  if strategy == "vmap":
    return jax.vmap
  if strategy == "map":
    return lambda f: (lambda state, hp: jax.lax.map(lambda a: f(*a), (state, hp)))
  raise ValueError(f"lift: strategy must be 'vmap' or 'map', got {strategy!r}.")


def vectorize(chunk: Callable, strategy: str, mesh=None) -> Callable:
  """Lift `chunk(state, hp) -> (state, metrics)` to stacked members."""
  if strategy in ("vmap", "map"):
    return lift(strategy)(chunk)
  if strategy == "sharded":
    if mesh is None:
      raise ValueError("strategy 'sharded' needs a mesh (make_mesh).")
    if mesh.shape["data"] > 1:
      return jax.vmap(chunk, spmd_axis_name="member")
    local = vectorize(chunk, _one_device(mesh.devices.flat[0].platform))  # per device
    spec = P("member")
    return jax.shard_map(local, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False)
  raise ValueError(f"Unknown strategy {strategy!r}.")


def member_sharding(mesh):
  return NamedSharding(mesh, P("member"))


def shard_members(tree, mesh):
  """Place every leaf's leading (member) axis on the mesh's member axis."""
  return jax.device_put(tree, member_sharding(mesh))


def take_member(tree, i: int):
  """Member i of a stacked pytree (every leaf's leading axis indexed)."""
  return jax.tree.map(lambda a: a[i], tree)


def stack_init(init_state: Callable, seeds) -> Any:
  """Stacked initial states: member i starts exactly as a single run with seed i."""
  return jax.vmap(lambda s: init_state(jax.random.key(s)))(jnp.asarray(seeds, jnp.uint32))


def write_outputs(members: Plan, workdir: str, failed: dict | None = None) -> None:
  """A finished sweep's tables: sweep.csv (one row per member: swept values, final
  metrics, the step of a non-finite loss) and sweep.png."""
  import csv
  import io
  failed = failed or {}
  last = records.read_metrics(workdir)[-1]
  keys = [k for k in last if k != "step"]
  rows = []
  for i, _ in enumerate(members.labels):
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
