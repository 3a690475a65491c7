"""Shared config skeleton. Every config file calls `base_config()` then `finalize()`."""
import ml_collections


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.workdir = "workdirs/run"
  # data: procedural 'sprites'/'scenes', or any TFDS image dataset by name
  c.data = dict(name="sprites", size=64, split="train", data_dir="", max_examples=0,
                image_key="image")
  # model: arch 'conv' (Locatello et al. 2019) or 'mlp'; bottleneck '' = objective's own
  # hidden: MLP widths (empty = Locatello's 1200s); image_shape: empty = the data's
  # num_values: codebook size per latent (quantized bottleneck); style_widths: 'style' decoder
  c.model = dict(arch="conv", latent_dim=10, bottleneck="", conv_impl="gemm", image_shape=(),
                 hidden=(), num_values=10, style_widths=())
  c.objective = dict(name="beta_vae", likelihood="bernoulli", iwae_k=5)
  # traced hyperparameters (arrays inside the step: a sweep may vary them)
  c.hp = ml_collections.ConfigDict({"beta": 1.0, "lr": 1e-4})
  c.optim = dict(name="adam", grad_clip=0.0)
  c.train = dict(steps=2000, batch_size=64, chunk=50, ckpt_every=500, keep=2, log_every_s=5.0)
  c.viz = dict(num_anchors=3, num_steps=9, num_sigma=3.0)
  # sweep: many runs as one program (lsx/train/sweep.py). Sweepable: seed and traced hp,
  # e.g. sweep.seed=(0, 1, 2), sweep.hp=dict(beta=(1., 4.)); mode 'product' or 'zip'.
  c.sweep = ml_collections.ConfigDict({"mode": "product", "seed": (), "hp": {}})
  # 'auto' | 'vmap' | 'map' | 'sharded' (over a ("member", "data") mesh of all devices)
  c.sweep_strategy = "auto"
  # data: devices per member along the mesh's data axis; cpu_devices: on a CPU, split the
  # host into this many devices for a sweep ('auto': a divisor of the members <= cores)
  c.mesh = dict(data=1, cpu_devices="auto")
  # multi-process runs (every process runs the same command); or LSX_COORDINATOR,
  # LSX_NUM_PROCESSES, LSX_PROCESS_ID in the environment; auto: let JAX detect a cluster
  c.distributed = dict(coordinator="", num_processes=1, process_id=-1, auto=False)
  return c


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
  """A config from 'path/to/config.py[:arg]' (what --config accepts), for scripts that
  build configs themselves (experiments.compare, experiments.flows)."""
  import importlib.util
  path, _, arg = spec.partition(":")
  mod_spec = importlib.util.spec_from_file_location("lsx_config", path)
  mod = importlib.util.module_from_spec(mod_spec)
  mod_spec.loader.exec_module(mod)
  return mod.get_config(arg) if arg else mod.get_config()
