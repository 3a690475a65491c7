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


def load(spec: str):
  """A config from 'path/to/config.py[:arg]' (lsx.train.config.load_config)."""
  return config_lib.load_config(spec)
