"""The config schema every family shares, and the autoencoder family's sections.

  run_config()          seed, workdir, hp (traced), optim, train, sweep, sweep_strategy,
                        mesh, distributed: what `lsx.train.train` reads for any family
  autoencoder_config()  run_config() + data, model, objective, viz

A family adds its own sections (directions: decoder, directions, eval; flows: flows,
decoder or data/model, eval) and sets `family`. configs/*.py fill these in; every field
is documented in docs/configs.md.
"""
import os

import ml_collections

from lsx.records import config_to_json, read_config


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
  # state stay float32); CPUs keep float32 (docs/sweeps.md has the measurement);
  # tensorboard: event files in workdir/tb when tensorboardX is installed (lsx.train.events)
  c.train = dict(steps=2000, batch_size=64, chunk=50, ckpt_every=500, keep=2, log_every_s=5.0,
                 precision="float32", tensorboard=True)
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


def flatten(tree, prefix: str = "") -> dict:
  """{dotted name: leaf} of a nested dict or ConfigDict ('train.steps': 4)."""
  out = {}
  for k, v in tree.items():
    if isinstance(v, (dict, ml_collections.ConfigDict)):
      out.update(flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def set_fields(config, strict: bool = True, create: bool = False, **fields):
  """Set dotted fields of a ConfigDict ('train.steps': 4) in place, unlocked for the
  duration; a field the config lacks is created in its (existing) section with `create`,
  else raises KeyError naming it (`strict`) or is skipped. Returns the config."""
  with config.unlocked():
    for name, value in fields.items():
      *path, leaf = name.split(".")
      node = config
      try:
        for p in path:
          node = node[p]
        if leaf not in node and not create:
          raise KeyError(leaf)
      except (KeyError, AttributeError, TypeError):
        if strict:
          raise KeyError(f"the config has no field {name!r}.") from None
        continue
      node[leaf] = value
  return config


# what a resumed run may change against its recorded config.json
RESUMABLE_CHANGES = ("train.steps", "train.log_every_s", "train.tensorboard", "workdir")


# fields a family's config sections gained after runs were recorded without them, at the
# value that does what those runs did (the family reads a missing field as this value)
GAINED_FIELDS = {"flows.classifier_labels": ""}


def config_changes(recorded: dict, now: dict) -> list[str]:
  """The dotted config keys in which `now` differs from the `recorded` config.json beyond
  `RESUMABLE_CHANGES` (a field the schema or a family gained since, at its default
  (`GAINED_FIELDS`), is no change)."""
  recorded, now = flatten(recorded), flatten(now)
  schema = {**flatten(config_to_json(run_config())), **GAINED_FIELDS}
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
  recorded_json, now_json = read_config(path), config_to_json(config)
  diff = config_changes(recorded_json, now_json)
  recorded, now = flatten(recorded_json), flatten(now_json)
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
