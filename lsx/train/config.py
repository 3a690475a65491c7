"""The config schema every family shares, and the autoencoder family's sections.

  run_config()          seed, workdir, hp (traced), optim, train, sweep, sweep_strategy,
                        mesh, distributed: what `lsx.train.train` reads for any family
  autoencoder_config()  run_config() + data, model, objective, viz

A family adds its own sections (directions: decoder, directions, eval; flows: flows,
decoder or data/model, eval) and sets `family`. configs/*.py fill these in; every field
is documented in docs/configs.md.
"""
import ml_collections


def run_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.family = "autoencoder"  # which builder lsx.train.build uses (lsx.train.FAMILIES)
  c.seed = 0
  c.workdir = "workdirs/run"
  # traced hyperparameters (arrays inside the step: a sweep may vary them); the
  # objective's defaults fill what is not set here
  c.hp = ml_collections.ConfigDict({"lr": 1e-4})
  # lr_decay_steps: steps at which the learning rate is multiplied by lr_decay_factor
  c.optim = dict(name="adam", grad_clip=0.0, lr_decay_steps=(), lr_decay_factor=1.0)
  # precision: 'float32' or 'bfloat16' (losses computed in bf16; parameters and optimizer
  # state stay float32); CPUs keep float32 (docs/sweeps.md has the measurement)
  c.train = dict(steps=2000, batch_size=64, chunk=50, ckpt_every=500, keep=2, log_every_s=5.0,
                 precision="float32")
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


def autoencoder_config() -> ml_collections.ConfigDict:
  c = run_config()
  # data: procedural 'sprites'/'scenes', or any TFDS image dataset by name
  c.data = dict(name="sprites", size=64, split="train", data_dir="", max_examples=0,
                image_key="image")
  # model: arch 'conv' (Locatello et al. 2019) or 'mlp'; bottleneck '' = objective's own
  # hidden: MLP widths (empty = Locatello's 1200s); image_shape: empty = the data's
  # num_values: codebook size per latent (quantized bottleneck); style_widths: 'style' decoder
  c.model = dict(arch="conv", latent_dim=10, bottleneck="", conv_impl="gemm", image_shape=(),
                 hidden=(), num_values=10, style_widths=())
  # name: a registered objective (lsx.models.objectives.REGISTRY); other fields are the
  # objective's own options (iwae_k for 'iwae', disc_width/disc_depth for 'factor_vae')
  c.objective = dict(name="beta_vae", likelihood="bernoulli")
  c.hp = ml_collections.ConfigDict({"beta": 1.0, "lr": 1e-4})
  c.viz = dict(num_anchors=3, num_steps=9, num_sigma=3.0)
  return c


def load_config(spec: str) -> ml_collections.ConfigDict:
  """A config from 'path/to/config.py[:arg]' (what --config accepts)."""
  import importlib.util
  import os
  import sys
  path, _, arg = spec.partition(":")
  if not os.path.exists(path):
    raise FileNotFoundError(f"config file {path!r} does not exist.")
  root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
  if root not in sys.path:  # config files import configs.common
    sys.path.insert(0, root)
  mod_spec = importlib.util.spec_from_file_location("lsx_config", path)
  mod = importlib.util.module_from_spec(mod_spec)
  mod_spec.loader.exec_module(mod)
  return mod.get_config(arg) if arg else mod.get_config()
