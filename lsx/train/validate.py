"""One validation layer for run configs: every check runs before a workdir is touched or
anything compiles, and each failure names the field, the value and the fix.

  RUN_SCHEMA, AUTOENCODER_SCHEMA
                              the declared fields ({dotted name: Field(kind, range, dtype)})
  check_fields(config, schema)
                              every declared field the config has, in the dtype of use
  check_run(config)           RUN_SCHEMA and the rules between fields (train, sweep, mesh, ...)
  check_autoencoder(config)   AUTOENCODER_SCHEMA (data / model / objective / viz)
  check_hp(name, value, ...)  one traced hyperparameter (finite, in its range, and
                              representable in float32, the dtype the step reads it in)
  positive(config, *fields)   ints in [1, 2^31 - 1] (what a family's own sections use)
  number(config, field, low)  a finite float >= low (NaN refused by name)
  check_seed(value)           an integer in [0, 2^32 - 1] (uint32 PRNG keys)

`lsx.train.train` and `lsx.train.build` call these; the families call theirs in their
builders before loading a decoder or a dataset. docs/reliability.md lists every case.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from lsx.train.state import PRECISIONS
from lsx.train.state import OPTIMIZER_HPS

# ranges of the traced hyperparameters lsx knows by name: (low, low inclusive); an
# objective can add its own with `info["hp_bounds"]`
HP_BOUNDS = {"lr": (0.0, False), "weight_decay": (0.0, True), "beta": (0.0, True),
             "gamma": (0.0, True), "alpha": (0.0, True), "temperature": (0.0, False)}
SWEEP_STRATEGIES = ("auto", "vmap", "map", "sharded")
# hyperparameters are traced as float32 arrays; integers that reach the step counter,
# shapes and PRNG keys as int32 / uint32
HP_DTYPE = np.float32
INT_MAX = int(np.iinfo(np.int32).max)
SEED_RANGE = (0, int(np.iinfo(np.uint32).max))


def _get(config, dotted: str):
  node = config
  for part in dotted.split("."):
    node = node[part]
  return node


def _int_value(name: str, v, low: int = 1, why: str = "") -> None:
  if (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
      or int(v) != v or v < low):
    raise ValueError(f"config.{name} must be >= {low} (an integer{'; ' + why if why else ''}), "
                     f"got {v!r}.")
  if v > INT_MAX:
    raise ValueError(f"config.{name}={int(v)} exceeds {INT_MAX} (the int32 lsx counts steps "
                     f"and shapes in).")


def _float_value(name: str, v, low: float, inclusive: bool = True) -> float:
  try:
    x = float(v)
  except (TypeError, ValueError):
    raise ValueError(f"config.{name} must be a number, got {v!r}.") from None
  if not math.isfinite(x) or x < low or (x == low and not inclusive):
    raise ValueError(f"config.{name} must be a finite number {'>=' if inclusive else '>'} "
                     f"{low:g}, got {v!r}.")
  return x


def positive(config, *fields: str, low: int = 1, why: str = "") -> None:
  """Each dotted field of `config` (present ones) is an integer in [low, 2^31 - 1]."""
  for f in fields:
    try:
      v = _get(config, f)
    except (KeyError, AttributeError):
      continue
    _int_value(f, v, low, why)


def number(config, field: str, low: float, inclusive: bool = True, default=None) -> float:
  """A float field of `config` (dotted): finite (NaN fails every comparison, so it is
  refused by name) and >= `low` (> when not `inclusive`)."""
  try:
    v = _get(config, field)
  except (KeyError, AttributeError):
    v = default
  return v if v is None else _float_value(field, v, low, inclusive)


def check_seed(value, where: str = "config.seed") -> None:
  """A seed: an integer in the range PRNG keys are made from (uint32)."""
  lo, hi = SEED_RANGE
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
    raise ValueError(f"{where} must be an integer in [{lo}, {hi}] (seeds become uint32 PRNG "
                     f"keys), got {value!r}.")


def check_hp(name: str, value, bounds: dict | None = None, where: str = "config.hp") -> None:
  """A traced hyperparameter: finite, and within its range (HP_BOUNDS or `bounds`)."""
  try:
    v = float(value)
  except (TypeError, ValueError):
    raise ValueError(f"{where}.{name} must be a number, got {value!r}.") from None
  if not math.isfinite(v):
    raise ValueError(f"{where}.{name} must be finite, got {v}: a NaN or Inf hyperparameter "
                     f"makes every loss non-finite.")
  # checked in the dtype the step reads it in: an overflow to inf or an underflow to 0
  # (or to a subnormal, whose precision is gone) would train something else silently
  info = np.finfo(HP_DTYPE)
  if abs(v) > float(info.max) or (v != 0 and abs(v) < float(info.tiny)):
    with np.errstate(over="ignore", under="ignore"):
      cast = float(HP_DTYPE(v))
    raise ValueError(f"{where}.{name}={v:g} is not representable in {np.dtype(HP_DTYPE).name}, "
                     f"the dtype the training step reads it in (magnitudes from "
                     f"{float(info.tiny):.3g} to {float(info.max):.3g}, or 0): it would become "
                     f"{cast:g}.")
  bound = (bounds or {}).get(name) or HP_BOUNDS.get(name)
  if bound is None and name.endswith("_lr"):  # a player's learning rate
    bound = HP_BOUNDS["lr"]
  if bound is not None:
    low, inclusive = bound
    if v < low or (v == low and not inclusive):
      raise ValueError(f"{where}.{name} must be {'>=' if inclusive else '>'} {low:g}, got {v:g}.")


@dataclasses.dataclass(frozen=True)
class Field:
  """One config field's type and range, checked in the dtype it is used in.

  kind: 'int' (an integer in [low, 2^31 - 1], int32), 'float' (finite and >= / > low,
  <= high, representable in `dtype` when that is float32: an overflow to inf or an
  underflow to 0 is refused), 'choice' (one of `choices`), 'seed' (uint32), 'seeds' (a
  tuple of them), 'steps' (increasing integers >= 1). A field the config lacks is not
  checked (a family's section may not have it). `why` is added to a range message."""
  kind: str
  low: float | None = None
  inclusive: bool = True
  high: float | None = None
  choices: tuple = ()
  dtype: type | None = None
  why: str = ""


# the sections every family shares (lsx.train.config.run_config)
RUN_SCHEMA = {
    "train.steps": Field("int", 1), "train.batch_size": Field("int", 1),
    "train.chunk": Field("int", 1), "train.ckpt_every": Field("int", 1),
    "train.keep": Field("int", 1, why="checkpoints kept: with 0 nothing a run trains would "
                                      "be saved"),
    "train.precision": Field("choice", choices=tuple(sorted(PRECISIONS))),
    "train.log_every_s": Field("float", 0.0),
    "train.tensorboard": Field("choice", choices=(True, False)),
    "seed": Field("seed"), "sweep.seed": Field("seeds"),
    "sweep.mode": Field("choice", choices=("product", "zip")),
    "sweep_strategy": Field("choice", choices=SWEEP_STRATEGIES),
    "optim.name": Field("choice", choices=tuple(sorted(OPTIMIZER_HPS))),
    "optim.grad_clip": Field("float", 0.0, dtype=HP_DTYPE),
    "optim.lr_decay_steps": Field("steps"),
    "optim.lr_decay_factor": Field("float", 0.0, inclusive=False, high=1.0, dtype=HP_DTYPE),
    "mesh.data": Field("int", 1),
    "distributed.num_processes": Field("int", 1),
}
# the autoencoder family's sections (lsx.train.config.autoencoder_config)
AUTOENCODER_SCHEMA = {
    "data.size": Field("int", 1), "model.latent_dim": Field("int", 1),
    "model.num_values": Field("int", 2, why="values per quantized latent"),
    "objective.likelihood": Field("choice", choices=("bernoulli", "gaussian")),
    "viz.num_anchors": Field("int", 1), "viz.num_steps": Field("int", 1),
    "viz.num_sigma": Field("float", 0.0, inclusive=False, dtype=HP_DTYPE),
}


def _check_float(name: str, v, f: Field) -> None:
  if isinstance(v, bool):
    raise ValueError(f"config.{name} must be a number, got {v!r}.")
  x = _float_value(name, v, f.low if f.low is not None else -math.inf, f.inclusive)
  if f.high is not None and x > f.high:
    raise ValueError(f"config.{name} must be in ({f.low:g}, {f.high:g}], got {v!r}.")
  if f.dtype is not None:
    info = np.finfo(f.dtype)
    if abs(x) > float(info.max) or (x != 0 and abs(x) < float(info.tiny)):
      raise ValueError(f"config.{name}={x:g} is not representable in {np.dtype(f.dtype).name}, "
                       f"the dtype it is used in (magnitudes from {float(info.tiny):.3g} to "
                       f"{float(info.max):.3g}, or 0).")


def check_field(name: str, value, f: Field) -> None:
  """`value` of the dotted field `name` against its declaration `f` (module doc)."""
  if f.kind == "int":
    _int_value(name, value, int(f.low), f.why)
  elif f.kind == "float":
    if f.high is not None and not (isinstance(value, (int, float)) and math.isfinite(value)):
      raise ValueError(f"config.{name} must be in ({f.low:g}, {f.high:g}], got {value!r}.")
    _check_float(name, value, f)
  elif f.kind == "choice":
    if value not in f.choices:
      raise ValueError(f"config.{name} must be one of {list(f.choices)}, got {value!r}.")
  elif f.kind == "seed":
    check_seed(value, f"config.{name}")
  elif f.kind == "seeds":
    for v in tuple(value or ()):
      check_seed(v, f"config.{name}")
  elif f.kind == "steps":
    steps = tuple(value or ())
    if (any(isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= INT_MAX
            for s in steps) or list(steps) != sorted(set(steps))):
      raise ValueError(f"config.{name} must be increasing integer steps in [1, {INT_MAX}], "
                       f"got {steps}.")
  else:
    raise AssertionError(f.kind)


def check_fields(config, schema: dict) -> None:
  """Every field of `schema` ({dotted name: Field}) that `config` has, checked."""
  for name, f in schema.items():
    try:
      value = _get(config, name)
    except (KeyError, AttributeError):
      continue
    check_field(name, value, f)


def check_run(config) -> None:
  """The sections every family shares (RUN_SCHEMA, then the rules between fields)."""
  check_fields(config, RUN_SCHEMA)
  t = config.train
  if int(t.ckpt_every) % int(t.chunk):
    raise ValueError(f"config.train.ckpt_every ({t.ckpt_every}) must be a multiple of "
                     f"config.train.chunk ({t.chunk}): checkpoints are taken between chunks.")
  for name, value in dict(config.get("hp", {}) or {}).items():
    check_hp(name, value)
  for name, values in dict((config.get("sweep", {}) or {}).get("hp", {}) or {}).items():
    if not isinstance(values, (tuple, list)) or len(values) == 0:
      raise ValueError(f"config.sweep.hp.{name} is empty: give the values to sweep, e.g. "
                       f"sweep.hp={{'{name}': (1.0, 4.0)}}, or drop it.")
    for v in values:
      check_hp(name, v, where="config.sweep.hp")
  cpu = (config.get("mesh", {}) or {}).get("cpu_devices", "auto")
  if cpu != "auto":
    try:
      n = int(cpu)
    except (TypeError, ValueError):
      n = -1
    if n < 0 or str(cpu).strip() != str(n):
      raise ValueError(f"config.mesh.cpu_devices must be 'auto' or a number of devices "
                       f"(0 or 1: the host stays one device), got {cpu!r}.")
  d = config.get("distributed", {}) or {}
  if d:
    n, pid = int(d.get("num_processes", 1)), int(d.get("process_id", -1))
    if pid >= n:
      raise ValueError(f"config.distributed.process_id={pid} must be < num_processes={n} "
                       f"(or -1: from the environment).")


def check_autoencoder(config) -> None:
  """The autoencoder family's data, model, objective and viz sections."""
  check_fields(config, AUTOENCODER_SCHEMA)
  hidden = tuple(config.model.get("hidden", ()) or ())
  if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
    raise ValueError(f"config.model.hidden must list integer widths >= 1, got {hidden}.")
