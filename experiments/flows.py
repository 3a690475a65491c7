"""Potential-flow traversals (Song et al. 2023): learn them and score them.

  python -m experiments.flows --config configs/flows_sprites.py        # on a trained VAE
  python -m experiments.flows --config configs/flows_joint_sprites.py  # VAE + flows jointly

config.mode = 'posthoc': loads the beta-VAE in `vae_workdir` (trains it with
configs/betavae_sprites.py first if absent) and learns K potentials on its latent space
with the decoder frozen (L_IC, L_PDE, -L_JVP and the frame classifier).
config.mode = 'joint': trains a beta-VAE and one potential per moving factor together on
one-factor sequences rendered from the dataset's factors (lsx.flows.joint).

Both write in config.workdir: checkpoints/ (the train state; a killed run resumes where it
stopped), metrics.jsonl, flows_losses.png (the loss terms per chunk, the wave residual on
a log scale), flows.png (rows: potentials; for each anchor the path over -S..S steps) and
flows_dfa.json: direction-factor attribution and variation predictability of the flows,
next to the same VAE's latent axes and random directions (one row each), with the
chance-corrected D, C and coverage (`*_cc`, eval.null_permutations > 0) beside the plain ones.
Rerunning a finished run only scores it again.

  python -m experiments.flows --config configs/flows_joint_sprites.py --export_vae=DIR

writes the VAE of a finished joint run as an ordinary training workdir in DIR (config.json,
one checkpoint, export.json naming the source), which experiments.discover,
experiments.score_directions and experiments.evaluate load like any β-VAE they trained.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from configs import common
from lsx import directions as ld, flows, metrics as lm, models, viz
from lsx.data import get_dataset
from lsx.train import checkpoint as ckpt
from lsx.train import build as build_train
from lsx.train import (config_to_json, load_run, make_optimizer, make_train_chunk,
                       make_train_step, train, write_config)
from lsx.train.state import TrainState

_CONFIG = None  # the --config flag, defined when run as a script (importing defines no flags)
_EXPORT = None  # --export_vae

SCORES = ("disentanglement", "completeness", "direction_mig", "coverage", "vp", "off_manifold")
# the same attribution with chance correction (lsx.metrics.dfa(null_permutations=...))
CC_SCORES = ("disentanglement", "completeness", "coverage")


def _vae(config):
  if not os.path.exists(os.path.join(config.vae_workdir, "config.json")):
    print(f"no VAE in {config.vae_workdir}: training one first", file=sys.stderr)
    train(common.load("configs/betavae_sprites.py"), config.vae_workdir)
  return load_run(config.vae_workdir)


def flow_paths(flow, params, z, k, steps):
  """[2*steps+1, d]: the negative-direction path reversed, the anchor, the positive path."""
  up = flows.traverse(flow.potential, params, z, k, steps)
  down = flows.traverse(flow.potential, params, z, k, steps, sign=-1.0)
  return jnp.concatenate([down[::-1], up[1:]], 0)


def posthoc_objective(c, flow, decode, image_shape, path_len: int):
  """(init_classifier, loss) of the post-hoc flow objective with the config's Laplacian
  and JVP settings (`lsx.flows.make_flow_objective`)."""
  return flows.make_flow_objective(flow, decode, image_shape, path_len=path_len,
                                   laplacian_mode=c.laplacian, num_probes=int(c.num_probes),
                                   normalize_jvp=bool(c.normalize_jvp),
                                   jvp_reduction=c.jvp_reduction)


def _no_joint_checkpoint(source: str) -> FileNotFoundError:
  return FileNotFoundError(f"{source} has no checkpoint: train the joint run first "
                           f"(python -m experiments.flows --config ...).")


def restore_joint(c, step: int | None = None):
  """(pieces of `build_joint(c)`, the joint run's TrainState in c.workdir, restored at
  `step` or the latest). Raises FileNotFoundError when the run has no checkpoint."""
  source = os.path.join(c.workdir, "checkpoints")
  if not os.path.isdir(source):
    raise _no_joint_checkpoint(source)
  pieces = build_joint(c)
  opt = make_optimizer("adam")
  key = jax.random.fold_in(jax.random.key(int(c.seed)), 7)
  abstract = jax.eval_shape(lambda: TrainState.create(pieces[3](), opt, key))
  joint = ckpt.restore(ckpt.manager(source, max_to_keep=2), abstract, step)
  if joint is None:
    raise _no_joint_checkpoint(source)
  return pieces, joint


def build_posthoc(c):
  """(dataset, model, flow, init() -> params, loss, sample, params -> VAE params, log keys)
  for mode 'posthoc'."""
  setup, vstate = _vae(c)
  model, vparams, ds = setup.model, vstate.params, setup.dataset
  decode = lambda z: jax.nn.sigmoid(model.decode(vparams, z))
  flow = flows.make_flow(model.latent_dim, int(c.num_potentials), output=c.flow_output)
  init_clf, loss = posthoc_objective(c, flow, decode, ds.image_shape, int(c.path_len))
  k1, k2 = jax.random.split(jax.random.key(int(c.seed)))
  init = jax.jit(lambda: {"flow": flow.init(k1), "classifier": init_clf(k2)})  # one program
  sample = lambda rng, n: (model.represent(vparams, ds.sample(rng, n)[0]), None)
  vae_params = lambda p: vparams
  return ds, model, flow, init, loss, sample, vae_params, ("pde", "pde_rel", "ic", "jvp", "cls")


def build_joint(c):
  """The same pieces for mode 'joint': a beta-VAE and the flows trained together."""
  ds = get_dataset(c.data.name, size=int(c.data.size))
  if not getattr(ds, "has_render", False):
    raise ValueError(f"joint mode renders one-factor sequences from factor indices; dataset "
                     f"{c.data.name!r} has no renderer (use 'sprites' or 'scenes').")
  transforms, speeds = flows.check_transforms(ds, c.transforms, c.speeds, int(c.path_len))
  model = models.make_autoencoder(ds.image_shape, int(c.model.latent_dim), c.model.arch,
                                  hidden=tuple(c.model.hidden) or None)
  flow = flows.make_flow(model.latent_dim, len(transforms), output=c.flow_output)
  loss = flows.make_joint_objective(model, flow, path_len=int(c.path_len),
                                    laplacian_mode=c.laplacian, num_probes=int(c.num_probes),
                                    normalize_jvp=bool(c.normalize_jvp),
                                    jvp_reduction=c.jvp_reduction)
  k1, k2 = jax.random.split(jax.random.key(int(c.seed)))
  init = jax.jit(lambda: {"vae": model.init(k1), "flow": flow.init(k2)})  # not op by op
  path_len = int(c.path_len)
  sample = lambda rng, n: (flows.sequence_batch(ds, rng, n, transforms, speeds, path_len), None)
  vae_params = lambda p: p["vae"]
  return ds, model, flow, init, loss, sample, vae_params, ("rec", "latent", "pde", "pde_rel", "jvp")


@functools.lru_cache(maxsize=8)
def compiled_chunk(loss, sample, batch_size: int, k: int):
  """(optimizer, jitted k-step chunk) for one objective and sampler: built once, so a
  resumed or repeated run in the same process reuses the compiled program."""
  opt = make_optimizer("adam")
  return opt, jax.jit(make_train_chunk(make_train_step(loss, opt), sample, batch_size, k))


def train_loop(c, params, loss, sample, hp, log_keys, t0):
  """Chunks of c.train.chunk steps with checkpoints every c.train.ckpt_every steps; resumes
  from the latest checkpoint and stops (keeping it) on a non-finite loss."""
  total, k = int(c.train.steps), int(c.train.chunk)
  opt, chunk = compiled_chunk(loss, sample, int(c.train.batch_size), k)
  state = TrainState.create(params, opt, jax.random.fold_in(jax.random.key(int(c.seed)), 7))
  state = ckpt.on_restore_device(state)  # a fresh and a resumed run share the chunk
  every = int(c.train.ckpt_every)
  if every % k:
    raise ValueError(f"train.ckpt_every ({every}) must be a multiple of train.chunk ({k}).")
  mngr = ckpt.manager(os.path.join(c.workdir, "checkpoints"), max_to_keep=2)
  restored = ckpt.restore(mngr, jax.eval_shape(lambda: state))
  metrics_path = os.path.join(c.workdir, "metrics.jsonl")
  rows = []
  if restored is not None:
    state = restored
    with open(metrics_path) as f:
      rows = [r for r in map(json.loads, f) if r["step"] <= int(state.step)]
    print(f"resumed from step {int(state.step)}", file=sys.stderr)
  done, last, rate = int(state.step), -1e9, float("nan")
  first, tc = True, time.perf_counter()
  while done < total:
    state, m = chunk(state, hp)
    m = jax.device_get(m)
    if np.any(m["nonfinite"]):
      raise FloatingPointError(
          f"non-finite loss or gradient near step {done + int(np.argmax(m['nonfinite']))}; the "
          f"last good checkpoint ({mngr.latest_step()}) is kept. Lower hp.lr or hp.lambda_pde.")
    done = int(state.step)
    rows.append({"step": done, **{n: float(np.mean(v)) for n, v in m.items() if n != "nonfinite"}})
    now = time.perf_counter()
    if first:
      first, tc, start = False, now, done
      print(f"compiled and ran the first {k}-step chunk ({now - t0:.0f}s since start)",
            file=sys.stderr)
    elif done > start:
      rate = (done - start) / max(now - tc, 1e-9)
    if done % every == 0 or done >= total:
      ckpt.save(mngr, done, state)
      with open(metrics_path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    if now - last > float(c.train.log_every_s) or done >= total:
      eta = (total - done) / rate if rate == rate and rate > 0 else 0.0
      r = rows[-1]
      print(f"step {done}/{total} | {rate:.2f} steps/s | ETA {eta:.0f}s | "
            + " ".join(f"{n} {r[n]:.4g}" for n in log_keys), file=sys.stderr, flush=True)
      last = now
  return state, rows, rate


def flow_vp_pairs(flow, fp, decode, anchors, max_steps, rng):
  """(x' - x, potential labels) with x' the anchor moved 1..max_steps flow steps either way."""
  k, n = flow.num, anchors.shape[0]
  k_s, k_sign = jax.random.split(rng)
  steps = jax.random.randint(k_s, (k, n), 1, max_steps + 1)
  sign = jnp.where(jax.random.bernoulli(k_sign, 0.5, (k, n)), 1.0, -1.0)

  def moved(z, kk, s, sg):
    path = flows.traverse(flow.potential, fp, z, kk, max_steps, sign=sg)
    return path[s]

  z1 = jax.vmap(lambda kk, s, sg: jax.vmap(moved, in_axes=(0, None, 0, 0))(anchors, kk, s, sg))(
      jnp.arange(k), steps, sign)
  x0 = decode(anchors)
  x1 = decode(z1.reshape(k * n, -1)).reshape((k, n) + x0.shape[1:])
  return (x1 - x0[None]).reshape((k * n,) + x0.shape[1:]), jnp.repeat(jnp.arange(k), n)


def evaluate(c, ds, model, vparams, flow, fp, references: bool = True):
  """Rows of SCORES for the flows `fp`, the VAE's active latent axes and random directions
  (`references=False`: the flows' row only); frames: K x anchors x (2S+1) x image."""
  return evaluate_sets(c, ds, model, vparams, flow, {"flows": fp}, references)


def evaluate_sets(c, ds, model, vparams, flow, flow_sets: dict, references: bool = True):
  """`evaluate` for several named parameter sets of one `flow` (name -> params): traversed
  as one stacked program and read with the references in one oracle pass, so scoring N
  sets compiles and renders once, not N times. Frames are the first set's."""
  if not flow_sets:
    raise ValueError("evaluate_sets needs at least one named set of flow parameters.")
  names = list(flow_sets)
  refs = ("latent axes", "random (seed")
  clash = [n for n in names if references and n.startswith(refs)]
  if clash:
    raise ValueError(f"flow set names {clash} clash with the reference rows; rename them.")
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *flow_sets.values())
  decode = jax.jit(lambda z: jax.nn.sigmoid(model.decode(vparams, z)))
  images, _ = ds.sample(jax.random.key(1234), 2000)
  z = np.asarray(jax.jit(model.represent)(vparams, images))
  anchors = jnp.asarray(z[:int(c.eval.anchors)])
  vp_anchors = jnp.asarray(z[-int(c.eval.vp_anchors):])
  s = int(c.eval.steps)
  def one(fp):  # K x anchors x (2S+1) x d
    along = jax.vmap(lambda zz, kk: flow_paths(flow, fp, zz, kk, s), in_axes=(0, None))
    return jax.vmap(along, in_axes=(None, 0))(anchors, jnp.arange(flow.num))
  paths = jax.jit(jax.vmap(one))(stacked)  # sets x K x anchors x (2S+1) x d
  frames = decode(paths.reshape(-1, model.latent_dim)).reshape(paths.shape[:4] + ds.image_shape)
  oracle = lm.make_oracle(ds, c.eval.oracle, pool=int(c.eval.oracle_pool),
                          steps=int(c.eval.oracle_steps), rng=jax.random.key(c.seed + 7),
                          log=lambda m: print(m, flush=True))

  def score(reading, steps, diffs, labels):
    fac = reading.factors
    aniso = reading.anisotropy if bool(c.eval.readable_orientation) else None
    res = lm.dataset_dfa(ds, fac, np.asarray(steps), off_manifold=np.asarray(reading.distance),
                         anisotropy=aniso)
    if int(c.eval.null_permutations):
      cc = lm.dataset_dfa(ds, fac, np.asarray(steps), anisotropy=aniso,
                          null_permutations=int(c.eval.null_permutations))
      res.update({f"{k}_cc": cc[k] for k in CC_SCORES} | {"matches_cc": cc["matches"]})
    res["vp"] = lm.variation_predictability(diffs, labels, jax.random.key(12))["vp"]
    return res

  diffs, labels = jax.jit(jax.vmap(lambda fp: flow_vp_pairs(flow, fp, decode, vp_anchors, s,
                                                            jax.random.key(11))))(stacked)
  sets = {name: (frames[i], np.arange(-s, s + 1), diffs[i], labels[i])
          for i, name in enumerate(names)}
  active = ld.active_latents(z)
  sd = float(z.std(0)[active].mean())
  span = float(c.eval.span) * sd
  steps = jnp.linspace(-span, span, 2 * s + 1)
  dirs = {"latent axes (active)": np.eye(z.shape[1])[active]} if references else {}
  for seed in range(int(c.eval.random_seeds) if references else 0):
    dirs[f"random (seed {seed})"] = np.asarray(
        jax.random.normal(jax.random.key(100 + seed), (int(active.sum()), z.shape[1])))
  for name, d in dirs.items():
    d = jnp.asarray(d, jnp.float32)
    dd, ll = lm.variation_pairs(decode, vp_anchors, d, jax.random.key(11), max_step=span,
                                min_step=span / 4)
    sets[name] = (lm.traverse_linear(decode, anchors, d, steps), steps, dd, ll)
  # one oracle pass for every row: the grid is rendered once
  readings = ld.read_in_one_pass(oracle, [v[0] for v in sets.values()])
  rows = {name: score(reading, *v[1:]) for (name, v), reading in zip(sets.items(), readings)}
  if isinstance(oracle, lm.ClassifierOracle):
    rows["oracle"] = {"kind": "classifier", "accuracy": oracle.accuracy,
                      "within_one": oracle.within_one}
  return frames[0], rows


def main(argv):
  del argv
  logging.getLogger("absl").setLevel(logging.WARNING)
  c = _CONFIG.value
  t0 = time.perf_counter()
  if c.mode not in ("posthoc", "joint"):
    raise ValueError(f"config.mode must be 'posthoc' or 'joint', got {c.mode!r}.")
  if _EXPORT is not None and _EXPORT.value:
    out = export_vae(c, _EXPORT.value)
    print(f"wrote the joint run's VAE (step {int(load_run(out)[1].step)}) to {out}: "
          f"python -m experiments.discover --config configs/latentclr_sprites.py "
          f"--config.vae_workdir={out}")
    return
  lm.check_oracle(c.eval.oracle)
  build = build_joint if c.mode == "joint" else build_posthoc
  ds, model, flow, init, loss, sample, vae_params, log_keys = build(c)
  hp = {k: jnp.float32(v) for k, v in c.hp.items()}
  os.makedirs(c.workdir, exist_ok=True)
  state, rows, rate = train_loop(c, init(), loss, sample, hp, log_keys, t0)
  save_loss_plot(rows, os.path.join(c.workdir, "flows_losses.png"), log_keys)
  fp, vparams = state.params["flow"], vae_params(state.params)
  frames, scored = evaluate(c, ds, model, vparams, flow, fp)
  oracle_info = scored.pop("oracle", {"kind": "grid", "pool": int(c.eval.oracle_pool)})
  grid = [viz.image_grid(np.asarray(frames[:, a])) for a in range(min(3, frames.shape[1]))]
  viz.save_png(np.concatenate(grid, axis=1), os.path.join(c.workdir, "flows.png"), scale=2)
  cols = SCORES + tuple(f"{k}_cc" for k in CC_SCORES if f"{k}_cc" in scored["flows"])
  out = {name: {k: float(r[k]) for k in cols} | {"matches": r["matches"]}
         | ({"matches_cc": r["matches_cc"]} if "matches_cc" in r else {})
         | {"R": np.asarray(r["R"]).round(4).tolist()}
         for name, r in scored.items()}
  out["factor_names"] = [n for n, o in zip(ds.factor_names, lm.directions.ordinal_mask(ds)) if o]
  out["mode"] = c.mode
  out["oracle"] = oracle_info
  out["train_steps_per_s"] = rate if rate == rate else None  # None: nothing trained this time
  out["batch_size"] = int(c.train.batch_size)
  with open(os.path.join(c.workdir, "flows_dfa.json"), "w") as f:
    json.dump(out, f, indent=1)
  print(f"{'directions':22s} " + " ".join(f"{k[:13]:>13s}" for k in cols))
  for name, r in scored.items():
    print(f"{name:22s} " + " ".join(f"{float(r[k]):13.3f}" for k in cols))
  print("*_cc: chance-corrected attribution (eval.null_permutations; lsx.metrics.dfa)")
  print(f"training {rate:.2f} steps/s at batch {int(c.train.batch_size)}; wrote flows.png, "
        f"flows_losses.png, flows_dfa.json in {c.workdir} ({time.perf_counter() - t0:.0f}s)")


def export_vae(c, out_workdir: str, step: int | None = None) -> str:
  """Write the VAE of the joint run in `c.workdir` as a single-run training workdir.

  The exported config is a beta-VAE config of the same data, architecture, latent size,
  beta and learning rate (objective 'beta_vae'); its checkpoint holds the jointly trained
  VAE parameters, the step they were trained to, and a fresh optimizer state (the joint
  optimizer's moments belong to the joint objective). export.json names the source run.
  """
  if c.mode != "joint":
    raise ValueError(f"--export_vae needs a joint run (config.mode 'joint'), got {c.mode!r}: "
                     f"a post-hoc run's VAE is already a training workdir ({c.vae_workdir}).")
  source = os.path.join(c.workdir, "checkpoints")
  if not os.path.isdir(source):  # before anything is built
    raise _no_joint_checkpoint(source)
  if os.path.exists(os.path.join(out_workdir, "checkpoints")):
    raise FileExistsError(f"{out_workdir} already holds checkpoints; choose another directory.")
  _, joint = restore_joint(c, step)
  t = common.base_config()
  t.seed, t.workdir = int(c.seed), out_workdir
  t.data.name, t.data.size = c.data.name, int(c.data.size)
  t.model.arch, t.model.latent_dim = c.model.arch, int(c.model.latent_dim)
  t.model.hidden = tuple(c.model.hidden)
  t.objective.name = "beta_vae"
  t.hp = {"beta": float(c.hp.beta), "lr": float(c.hp.lr)}
  t.train.steps, t.train.batch_size = int(joint.step), int(c.train.batch_size)
  t.lock()
  setup = build_train(t)
  vae = joint.params["vae"]
  got = jax.tree.map(lambda a: (a.shape, a.dtype), vae)
  want = jax.tree.map(lambda a: (a.shape, a.dtype), setup.abstract_state().params)
  if got != want:  # guards a future change of either model builder
    raise ValueError(f"the joint run's VAE parameters do not match the beta-VAE that "
                     f"configs build for the same settings: {got} vs {want}")
  rng = jax.random.split(jax.random.key(int(c.seed)))[1]  # as Setup.init_state splits it
  state = TrainState.create(vae, setup.optimizer, rng).replace(step=joint.step)
  os.makedirs(out_workdir, exist_ok=True)
  write_config(t, out_workdir)
  ckpt.save(ckpt.manager(os.path.join(out_workdir, "checkpoints")), int(joint.step), state)
  with open(os.path.join(out_workdir, "export.json"), "w") as f:
    json.dump({"source": os.path.abspath(c.workdir), "step": int(joint.step),
               "objective": "joint beta-VAE + potential flows (experiments.flows, mode joint)",
               "flows_config": config_to_json(c)}, f, indent=1)
  return out_workdir


def save_loss_plot(rows, path, keys):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  titles = {"pde": "L_PDE (wave residual)", "pde_rel": "relative wave residual",
            "ic": "L_IC", "jvp": "L_JVP (rewarded)",
            "cls": "classifier CE", "rec": "reconstruction (x_0)", "latent": "L_latent"}
  fig, axes = plt.subplots(1, len(keys), figsize=(3.3 * len(keys), 2.8))
  steps = [r["step"] for r in rows]
  for ax, key in zip(axes, keys):
    ax.plot(steps, [r[key] for r in rows])
    ax.set_title(titles.get(key, key))
    ax.set_xlabel("step")
    if key == "pde":
      ax.set_yscale("log")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


if __name__ == "__main__":
  _CONFIG = config_flags.DEFINE_config_file("config", None, "Flows config file.",
                                            lock_config=True)
  _EXPORT = flags.DEFINE_string("export_vae", None, "Write a joint run's VAE as a training "
                                "workdir in this directory (and train nothing).")
  flags.mark_flags_as_required(["config"])
  app.run(main)
