"""One validation layer for run configs: every check runs before a workdir is touched or
anything compiles, and each failure names the field, the value and the fix.

  check_run(config)           the sections every family shares (train, sweep, mesh, ...)
  check_autoencoder(config)   data / model / objective / viz of the autoencoder family
  check_hp(name, value, ...)  one traced hyperparameter (finite, in its range, and
                              representable in float32, the dtype the step reads it in)
  positive(config, *fields)   ints in [1, 2^31 - 1] (what a family's own sections use)
  number(config, field, low)  a finite float >= low (NaN refused by name)
  check_seed(value)           an integer in [0, 2^32 - 1] (uint32 PRNG keys)

`lsx.train.train` and `lsx.train.build` call these; the families call theirs in their
builders before loading a decoder or a dataset. docs/reliability.md lists every case.
"""
from __future__ import annotations

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


def positive(config, *fields: str) -> None:
  """Each dotted field of `config` (present ones) is an integer >= 1."""
  for f in fields:
    try:
      v = _get(config, f)
    except (KeyError, AttributeError):
      continue
    if (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
        or int(v) != v or v < 1):
      raise ValueError(f"config.{f} must be >= 1 (an integer), got {v!r}.")
    if v > INT_MAX:
      raise ValueError(f"config.{f}={int(v)} exceeds {INT_MAX} (the int32 lsx counts steps "
                       f"and shapes in).")


def number(config, field: str, low: float, inclusive: bool = True, default=None) -> float:
  """A float field of `config` (dotted): finite (NaN fails every comparison, so it is
  refused by name) and >= `low` (> when not `inclusive`)."""
  try:
    v = _get(config, field)
  except (KeyError, AttributeError):
    v = default
  if v is None:
    return v
  try:
    x = float(v)
  except (TypeError, ValueError):
    raise ValueError(f"config.{field} must be a number, got {v!r}.") from None
  if not math.isfinite(x) or x < low or (x == low and not inclusive):
    raise ValueError(f"config.{field} must be a finite number {'>=' if inclusive else '>'} "
                     f"{low:g}, got {v!r}.")
  return x


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
    raise ValueError(f"{where}.{name}={v:g} is not representable in {np.dtype(HP_DTYPE).name}, "
                     f"the dtype the training step reads it in (magnitudes from "
                     f"{float(info.tiny):.3g} to {float(info.max):.3g}, or 0): it would become "
                     f"{float(HP_DTYPE(v)):g}.")
  bound = (bounds or {}).get(name) or HP_BOUNDS.get(name)
  if bound is None and name.endswith("_lr"):  # a player's learning rate
    bound = HP_BOUNDS["lr"]
  if bound is not None:
    low, inclusive = bound
    if v < low or (v == low and not inclusive):
      raise ValueError(f"{where}.{name} must be {'>=' if inclusive else '>'} {low:g}, got {v:g}.")


def check_run(config) -> None:
  """The sections every family shares (lsx.train.config.run_config)."""
  t = config.train
  positive(config, "train.steps", "train.batch_size", "train.chunk", "train.ckpt_every")
  if int(t.ckpt_every) % int(t.chunk):
    raise ValueError(f"config.train.ckpt_every ({t.ckpt_every}) must be a multiple of "
                     f"config.train.chunk ({t.chunk}): checkpoints are taken between chunks.")
  if int(t.get("keep", 2)) < 1:
    raise ValueError(f"config.train.keep must be >= 1 (checkpoints kept), got {t.keep}: with "
                     f"0 nothing a run trains would be saved.")
  if t.get("precision", "float32") not in PRECISIONS:
    raise ValueError(f"config.train.precision must be one of {sorted(PRECISIONS)}, got "
                     f"{t.precision!r}.")
  number(config, "train.log_every_s", 0.0)
  check_seed(config.get("seed", 0))
  for s_ in tuple((config.get("sweep", {}) or {}).get("seed", ()) or ()):
    check_seed(s_, "config.sweep.seed")
  o = config.get("optim", {}) or {}
  if o.get("name", "adam") not in OPTIMIZER_HPS:
    raise ValueError(f"config.optim.name must be one of {sorted(OPTIMIZER_HPS)}, got "
                     f"{o.get('name')!r}.")
  number(config, "optim.grad_clip", 0.0)
  steps = tuple(o.get("lr_decay_steps", ()) or ())
  if any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in steps) or list(steps) != sorted(set(steps)):
    raise ValueError(f"config.optim.lr_decay_steps must be increasing integer steps >= 1, got "
                     f"{steps}.")
  factor = float(o.get("lr_decay_factor", 1.0))
  if not 0 < factor <= 1:  # NaN fails both comparisons: refused
    raise ValueError(f"config.optim.lr_decay_factor must be in (0, 1], got {factor}.")
  for name, value in dict(config.get("hp", {}) or {}).items():
    check_hp(name, value)
  sw = config.get("sweep", {}) or {}
  mode = sw.get("mode", "product")
  if mode not in ("product", "zip"):
    raise ValueError(f"config.sweep.mode must be 'product' or 'zip', got {mode!r}.")
  for name, values in dict(sw.get("hp", {}) or {}).items():
    if not isinstance(values, (tuple, list)) or len(values) == 0:
      raise ValueError(f"config.sweep.hp.{name} is empty: give the values to sweep, e.g. "
                       f"sweep.hp={{'{name}': (1.0, 4.0)}}, or drop it.")
    for v in values:
      check_hp(name, v, where="config.sweep.hp")
  strategy = config.get("sweep_strategy", "auto")
  if strategy not in SWEEP_STRATEGIES:
    raise ValueError(f"config.sweep_strategy must be one of {SWEEP_STRATEGIES}, got "
                     f"{strategy!r}.")
  mesh = config.get("mesh", {}) or {}
  positive(config, "mesh.data")
  cpu = mesh.get("cpu_devices", "auto")
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
    positive(config, "distributed.num_processes")
    n, pid = int(d.get("num_processes", 1)), int(d.get("process_id", -1))
    if pid >= n:
      raise ValueError(f"config.distributed.process_id={pid} must be < num_processes={n} "
                       f"(or -1: from the environment).")


def check_autoencoder(config) -> None:
  """The autoencoder family's data, model, objective and viz sections."""
  positive(config, "data.size", "model.latent_dim", "viz.num_anchors", "viz.num_steps")
  m = config.model
  hidden = tuple(m.get("hidden", ()) or ())
  if any(int(h) < 1 for h in hidden):
    raise ValueError(f"config.model.hidden must list widths >= 1, got {hidden}.")
  if "num_values" in m and int(m.num_values) < 2:
    raise ValueError(f"config.model.num_values must be >= 2 (values per quantized latent), "
                     f"got {m.num_values}.")
  o = config.objective
  lik = o.get("likelihood", "bernoulli")
  if lik not in ("bernoulli", "gaussian"):
    raise ValueError(f"config.objective.likelihood must be 'bernoulli' or 'gaussian', got "
                     f"{lik!r}.")
  number(config, "viz.num_sigma", 0.0, inclusive=False)
