"""The run API: the family table, and what one does with a config or a workdir.

  build(config)                 the run's `Setup`, built by its family (config.family)
  train(config, workdir)        build, then train or resume it (lsx.train.loop, the engine)
  load_run(workdir[, step])     (setup, state) of a trained run, from its config.json
  ensure_trained(workdir, spec) a trained run there (trained or resumed first)
  extract_member(...)           one member of a sweep as an ordinary workdir
  load_decoder(workdir)         a trained autoencoder as a `Decoder` (direction methods)
  evaluate_workdir(workdir)     an autoencoder run scored with every metric
  export_vae(workdir, out)      the VAE of a joint flows run as an autoencoder workdir

`FAMILIES` is a literal table {name: builder}; a builder is `builder(config, runs)` and
returns a `lsx.train.Setup`. `runs` is this module: a family that reads another run (a
direction method's decoder, an SAE's source model, a relative decoder's encoders, the
denoiser h directions are learned on) loads it through `runs.load_run` / `runs.load_decoder`, so no family imports the layer above
it. `lsx.train` re-exports `train`, `build`, `load_run`, ... from here.
"""
from __future__ import annotations

import difflib
import json
import os
import sys

import jax
import jax.numpy as jnp

from lsx import records
from lsx.compare_spaces import build_relative_ae, build_relative_decoder
from lsx.diffusion.family import build_diffusion, build_h_directions
from lsx.directions.family import Decoder, build_directions
from lsx.flows.family import build_flows
from lsx.metrics import suite as metrics_suite
from lsx.models.family import build_autoencoder
from lsx.records import config_from_json, config_to_json, write_config
from lsx.sae.family import build_sae
from lsx.train import checkpoint as ckpt
from lsx.train import loop as engine
from lsx.train import sweep as sweep_lib
from lsx.train import validate
from lsx.train.config import load_config
from lsx.train.setup import Setup
from lsx.train.config import autoencoder_config
from lsx.train.state import TrainState

FAMILIES = {
    "autoencoder": build_autoencoder,
    "directions": build_directions,
    "flows": build_flows,
    "sae": build_sae,
    "relative_ae": build_relative_ae,
    "relative_decoder": build_relative_decoder,
    "diffusion": build_diffusion,
    "h_directions": build_h_directions,
}


def check_family(config) -> str:
  family = config.get("family", "autoencoder")
  if family not in FAMILIES:
    close = difflib.get_close_matches(str(family), list(FAMILIES), n=1)
    raise ValueError(f"Unknown training family {family!r}; known: {sorted(FAMILIES)}"
                     + (f". Did you mean {close[0]!r}?" if close else "."))
  return family


def build(config) -> Setup:
  """Validate the config and build the run's pieces for its family (config.family,
  default 'autoencoder'). Raises before anything compiles."""
  check_family(config)
  validate.check_run(config)
  return _build(config)


def _build(config) -> Setup:
  """`build` after its checks. A config section the family reads but the config lacks
  (a family set on another family's config) is named with the family, not raised as
  ml_collections' bare AttributeError."""
  family = config.get("family", "autoencoder")
  try:
    setup = FAMILIES[family](config, sys.modules[__name__])
  except AttributeError as e:
    name = str(e).strip("'\"")
    if name.isidentifier() and name not in config:
      raise ValueError(f"config.family={family!r} reads config.{name}, which this config "
                       f"has not: the '{family}' family is configured by its own config "
                       f"files (docs/configs.md); start from one of those rather than "
                       f"setting family on another family's config.") from None
    raise
  sweep_lib.plan(config, setup.hp)  # the sweep's axes and values, checked here too
  return setup


def train(config, workdir: str | None = None, **kwargs):
  """Build the run of `config` (unless `setup=` is given) and train or resume it in
  `workdir` (default config.workdir): `lsx.train.loop.train` has the details."""
  check_family(config)
  validate.check_run(config)
  engine.prepare_host(config)  # before the build touches a device
  if kwargs.get("setup") is None:
    kwargs["setup"] = _build(config)  # every check before the workdir
  return engine.train(config, workdir, **kwargs)


def ensure_trained(workdir: str, config_spec: str, print_fn=None) -> str:
  """`workdir` holding a trained run: trained first with the config file `config_spec`
  ('path/to/config.py[:arg]') when it holds none, and an unfinished run there (killed
  before its last step) resumed to its end with its own config.json. Returns `workdir`."""
  log = print_fn or (lambda s: print(s, file=sys.stderr, flush=True))
  cfg_path = os.path.join(workdir, "config.json")
  if not os.path.exists(cfg_path):
    log(f"no trained model in {workdir}: training one with {config_spec}")
    cfg = load_config(config_spec)
    with cfg.unlocked():
      cfg.workdir = workdir
    train(cfg, workdir, print_fn=print_fn)
    return workdir
  ckpts = os.path.join(workdir, "checkpoints")
  done = max((int(n) for n in (os.listdir(ckpts) if os.path.isdir(ckpts) else ())
              if n.isdigit()), default=0)
  cfg = config_from_json(cfg_path)
  if done < int(cfg.train.steps):
    log(f"the run in {workdir} stopped at step {done} of {int(cfg.train.steps)}: resuming it")
    train(cfg, workdir, print_fn=print_fn)
  return workdir


def load_run(workdir: str, step: int | None = None):
  """(setup, state) of a trained run: its config.json rebuilt, its checkpoint restored.

  For a sweep the state is the stacked one (leading member axis); see `extract_member`.
  """
  records.require_run(workdir, "load_run", trained=False)
  config = config_from_json(os.path.join(workdir, "config.json"))
  setup = build(config)
  members = sweep_lib.plan(config, setup.hp)
  if members is None:
    abstract = setup.abstract_state()
  else:
    seeds = jnp.asarray(members.seeds, jnp.uint32)
    abstract = jax.eval_shape(lambda: sweep_lib.stack_init(setup.init_state, seeds))
  ckdir = os.path.join(workdir, "checkpoints")
  state = ckpt.restore(ckpt.manager(ckdir), abstract, step) if os.path.isdir(ckdir) else None
  if state is None:
    raise FileNotFoundError(f"{workdir}/checkpoints has no checkpoint yet: train first.")
  return setup, state


def extract_member(workdir: str, member: int, out_workdir: str) -> str:
  """Write member `member` of the sweep in `workdir` as an ordinary single-run workdir
  (config.json with its seed and hyperparameters, its checkpoint, its metrics)."""
  if os.path.abspath(out_workdir) == os.path.abspath(workdir):
    raise ValueError(f"--out {out_workdir} is the sweep's own workdir; give a new directory.")
  if os.path.lexists(out_workdir) and (not os.path.isdir(out_workdir) or os.listdir(out_workdir)):
    raise FileExistsError(f"{out_workdir} already holds a run or other files; extract into a "
                          f"new (or empty) directory so nothing there is overwritten.")
  records.require_run(workdir, "extract_member", sweep=True)  # before anything is loaded
  setup, state = load_run(workdir)
  config = setup.config
  members = sweep_lib.plan(config, setup.hp)
  if not 0 <= member < members.size:
    raise ValueError(f"member must be in [0, {members.size}), got {member}.")
  one = sweep_lib.take_member(state, member)
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.seed = int(members.seeds[member])
    config.hp = {k: float(v[member]) for k, v in members.hp.items()}
    config.sweep = {"mode": "product", "seed": (), "hp": {}}
    config.workdir = out_workdir
  # written beside the target and renamed into place at the end: a failure half-way
  # leaves no partial workdir at `out_workdir`
  import shutil
  tmp = f"{os.path.abspath(out_workdir).rstrip(os.sep)}.partial-{os.getpid()}"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  try:
    write_config(config, tmp)
    ckpt.save(ckpt.manager(os.path.join(tmp, "checkpoints")), int(one.step), one)
    rows = records.read_metrics(workdir)
    records.atomic_write(os.path.join(tmp, "metrics.jsonl"), "".join(
        json.dumps({k: (v if k == "step" else v[member]) for k, v in r.items()}) + "\n"
        for r in rows))
    if os.path.isdir(out_workdir):
      os.rmdir(out_workdir)  # empty (checked above)
    os.replace(tmp, out_workdir)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return out_workdir


def load_decoder(workdir: str, num_data: int = 2000) -> Decoder:
  """The decoder of the single autoencoder run trained in `workdir`."""
  records.require_run(workdir, "a decoder's directions", ("autoencoder", "relative_ae"),
                      sweep=False)
  setup, state = load_run(workdir)
  return Decoder(setup.model, state.params, setup.dataset, num_data)


def evaluate_workdir(workdir: str, **kw) -> dict:
  """Score the latest checkpoint of the autoencoder run in `workdir` with every metric
  (`lsx.metrics.suite.evaluate_run`); writes and returns metrics.json's dict."""
  metrics_suite.check_evaluate_args(kw.get("metrics"), **{
      k: v for k, v in kw.items() if k not in ("metrics", "seed", "log")})
  records.require_run(workdir, "experiments.evaluate", ("autoencoder", "relative_ae"))
  setup, state = load_run(workdir)
  return metrics_suite.evaluate_run(setup, state, workdir, **kw)


def export_vae(workdir: str, out_workdir: str, step: int | None = None) -> str:
  """Write the VAE of the joint flows run in `workdir` as an autoencoder training workdir
  (objective 'beta_vae', same data, architecture, beta and learning rate): its checkpoint
  holds the jointly trained VAE parameters at the step they were trained to and a fresh
  optimizer state; export.json names the source run."""
  if os.path.exists(os.path.join(out_workdir, "checkpoints")):
    raise FileExistsError(f"{out_workdir} already holds checkpoints; choose another directory.")
  setup, joint = load_run(workdir, step)
  c = setup.config
  if c.get("family") != "flows" or c.flows.mode != "joint":
    raise ValueError(f"{workdir} is not a joint flows run (config.family 'flows', "
                     f"flows.mode 'joint'); a post-hoc run's VAE is already a workdir "
                     f"({c.decoder.workdir if 'decoder' in c else '?'}).")
  t = autoencoder_config()
  t.seed, t.workdir = int(c.seed), out_workdir
  t.data.name, t.data.size = c.data.name, int(c.data.size)
  t.model.arch, t.model.latent_dim = c.model.arch, int(c.model.latent_dim)
  t.model.hidden = tuple(c.model.hidden)
  t.objective.name = "beta_vae"
  t.hp = {"beta": float(c.hp.beta), "lr": float(c.hp.lr)}
  t.train.steps, t.train.batch_size = int(joint.step), int(c.train.batch_size)
  t.lock()
  target = build(t)
  vae = joint.params["vae"]
  got = jax.tree.map(lambda a: (a.shape, a.dtype), vae)
  want = jax.tree.map(lambda a: (a.shape, a.dtype), target.abstract_state().params)
  if got != want:  # guards a future change of either model builder
    raise ValueError(f"the joint run's VAE parameters do not match the beta-VAE that "
                     f"configs build for the same settings: {got} vs {want}")
  rng = target.init_keys(jax.random.key(int(c.seed)))[1]
  state = TrainState.create(vae, target.optimizer, rng).replace(step=joint.step)
  os.makedirs(out_workdir, exist_ok=True)
  write_config(t, out_workdir)
  ckpt.save(ckpt.manager(os.path.join(out_workdir, "checkpoints")), int(joint.step), state)
  records.write_json(os.path.join(out_workdir, "export.json"), {
      "source": os.path.abspath(workdir), "step": int(joint.step),
      "objective": "joint beta-VAE + potential flows (lsx.flows.family)",
      "flows_config": config_to_json(c)}, indent=1)
  return out_workdir
