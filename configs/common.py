"""Shared config skeleton. Every config file calls `base_config()` then `finalize()`."""
import ml_collections

from lsx.train import config as config_lib


def base_config() -> ml_collections.ConfigDict:
  """The autoencoder config schema (lsx.train.config.autoencoder_config)."""
  return config_lib.autoencoder_config()


def run_config() -> ml_collections.ConfigDict:
  """The sections every family shares (lsx.train.config.run_config)."""
  return config_lib.run_config()


def check_arg(arg: str, known=("smoke",)) -> set:
  """The comma-separated config arguments, refused when unknown."""
  parts = set(arg.split(",")) if arg else set()
  unknown = parts - set(known)
  if unknown:
    raise ValueError(f"Unknown config argument {sorted(unknown)[0]!r}; known: "
                     f"{', '.join(repr(k) for k in known)} (comma-separated).")
  return parts


def finalize(config, arg: str = ""):
  """`arg`: 'smoke' shrinks the run for tests; 'sweep' trains 4 seeds x 4 betas as one
  program (where the config has a beta); 'smoke_sweep' both. Then the config is locked."""
  parts = set(arg.split(",")) if arg else set()
  if "sweep" in parts or "smoke_sweep" in parts:
    config.workdir = config.workdir + "_sweep"
    config.sweep.seed = (0, 1, 2, 3)
    if "beta" in config.hp:
      config.sweep.hp = {"beta": (1.0, 2.0, 4.0, 8.0)}
  if "smoke_sweep" in parts:
    config.sweep.seed = (0, 1)
    config.sweep.hp = {"beta": (1.0, 4.0)} if "beta" in config.hp else {}
  if parts & {"smoke", "smoke_sweep"}:
    config.train.steps = 4
    config.train.chunk = 2
    config.train.ckpt_every = 2
    config.model.latent_dim = 4
  unknown = parts - {"smoke", "sweep", "smoke_sweep"}
  if unknown:
    raise ValueError(f"Unknown config argument {sorted(unknown)[0]!r}; known: 'smoke', "
                     f"'sweep', 'smoke_sweep' (comma-separated).")
  config.lock()
  return config


def autoencoder(arg: str, name: str, data: str, objective: str, hp: dict, steps: int = 2000,
                fields: dict | None = None):
  """An autoencoder training config in one call: workdirs/<name>, the built-in dataset
  `data`, the objective, its hyperparameters and budget; `fields` are dotted overrides
  ({'model.latent_dim': 12}); then `finalize(config, arg)`."""
  config = base_config()
  config.workdir = f"workdirs/{name}"
  config.data.name = data
  config.objective.name = objective
  config_lib.set_fields(config, create=True, **dict(fields or {}))
  config.hp = dict(hp)
  config.train.steps = steps
  return finalize(config, arg)


def load(spec: str):
  """A config from 'path/to/config.py[:arg]' (lsx.train.config.load_config)."""
  return config_lib.load_config(spec)


def sae_base(arg: str, name: str, source: dict):
  """The shared skeleton of the sparse-autoencoder configs (family 'sae'): returns
  (config, arguments); a config argument naming a bottleneck selects it."""
  from lsx.sae.model import BOTTLENECKS, HP_DEFAULTS
  parts = check_arg(arg, ("smoke", "sweep") + BOTTLENECKS)
  bottleneck = next((p for p in parts if p in BOTTLENECKS), "topk")
  c = run_config()
  c.family = "sae"
  c.workdir = f"workdirs/sae_{name}_{bottleneck}"
  # normalize: scale the activations by one constant so that E||x||^2 = dim (estimated on
  # 4,096 samples), as the JumpReLU paper and SAELens train; the scores are scale-free
  c.source = {"normalize": False, **source}
  # the bottleneck and static bounds (k_max bounds hp.k, max_width bounds hp.width);
  # dead_tokens: samples without firing before AuxK treats a latent as dead
  c.sae = dict(bottleneck=bottleneck, max_width=1024, k_max=32, aux_k=256,
               dead_tokens=100_000, bandwidth=0.001, threshold_rate=0.01,
               threshold_init=0.001, median_samples=4096,
               # JumpReLU's forms (lsx.sae.model): the paper's, or Anthropic's 2025 options
               jump_grad="threshold", sparsity="l0", init_rate=0.0)
  # eval: activations the scores use; disentanglement: InfoMEC/MIG/DCI of the codes
  c.eval = dict(samples=10000, seed=4321, disentanglement=False)
  c.hp = dict(lr=1e-3, k=16.0, width=1024.0, **HP_DEFAULTS[bottleneck])
  return c, parts


def sae_finish(c, parts, sweep_k: tuple):
  """'sweep': 2 seeds x `sweep_k` (for the k bottlenecks) as one program; 'smoke': tiny."""
  if "sweep" in parts:
    c.workdir += "_sweep"
    c.sweep.seed = (0, 1)
    if c.sae.bottleneck in ("topk", "batchtopk", "mp"):
      c.sweep.hp = {"k": tuple(float(k) for k in sweep_k)}
    c.sweep_strategy = "vmap"
  if "smoke" in parts:
    c.sae.update(max_width=32, k_max=4, aux_k=8, dead_tokens=64, median_samples=64)
    c.hp.update(k=2.0, width=32.0)
    c.eval.samples = 256
    c.train.update(steps=4, chunk=2, ckpt_every=2, batch_size=32)
    if c.sweep.hp:
      c.sweep.hp = {"k": (2.0, 4.0)}
  c.lock()
  return c
