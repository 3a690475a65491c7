"""Potential flows as a training family (`config.family = 'flows'`), trained by `lsx.train`.

`config.flows.mode`:
- 'posthoc' (configs/flows_sprites.py): K potentials and the frame classifier learned on
  the latent space of the frozen decoder in `config.decoder.workdir`
  (`make_flow_objective`);
- 'joint' (configs/flows_joint_sprites.py): a beta-VAE (`config.model` on `config.data`)
  and one potential per moving factor trained together on one-factor sequences
  (`make_joint_objective`, `sequence_batch`).

Both are `Objective`s, so runs checkpoint, resume and sweep (seeds, traced weights) like
every other family. `export_vae` writes a joint run's VAE as an autoencoder workdir.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from lsx import models, viz
from lsx.data import get_dataset, require_render
from lsx.directions import evaluate_sets, reference_sets, traversal_frames
from lsx.directions.family import CODES, Decoder
from lsx.directions.protocols import check_protocol
from lsx.flows import flow_traversal
from lsx.objective import Objective
from lsx.records import read_metrics
from lsx.train import validate
from lsx.train.setup import make_run_optimizer, resolve_hp, Setup
from lsx.flows import (CLASSIFIER_LABELS, CONVENTIONS, JOINT_HP_DEFAULTS, check_transforms, make_flow,
                       make_flow_objective, make_joint_objective, sequence_batch)

MODES = ("posthoc", "joint")
TRAINING_KEYS = ("ic", "pde", "jvp", "cls_acc", "image_change")
# lambda_jvp scales the rewarded L_JVP inside the wave term (1: the public objective)
POSTHOC_HP_DEFAULTS = {"lambda_cls": 1.0, "lambda_pde": 1.0, "lambda_jvp": 1.0}


def _init_keys(rng):
  # the flow parameters from `rng` itself, the training stream from a fold of it
  return rng, jax.random.fold_in(rng, 7)


def posthoc_objective(config, flow, decode, image_shape, path_len=None) -> Objective:
  """The post-hoc flow objective of `config.flows` (its Laplacian and JVP settings) on
  a frozen `decode`, over {"flow", "classifier"}."""
  f = config.flows
  init_clf, loss = make_flow_objective(
      flow, decode, image_shape, path_len=int(path_len or f.path_len),
      laplacian_mode=f.laplacian, num_probes=int(f.num_probes),
      normalize_jvp=bool(f.normalize_jvp), jvp_reduction=f.jvp_reduction,
      convention=f.get("convention", "lsx"), classifier=f.get("classifier", "mlp"),
      classifier_width=int(f.get("classifier_width", 0)),
      classifier_labels=f.get("classifier_labels", ""))

  def init(rng):
    k1, k2 = jax.random.split(rng)
    return {"flow": flow.init(k1), "classifier": init_clf(k2)}

  return Objective("flows_posthoc", init, loss, POSTHOC_HP_DEFAULTS,
                   info={"flow": flow, "init_classifier": init_clf,
                         "hp_bounds": {"lambda_jvp": (0.0, True)}})


def check_flows(config) -> None:
  """The flows section's own rules (values and combinations), raised by name before
  anything is built or loaded."""
  f = config.flows
  if f.mode not in MODES:
    raise ValueError(f"config.flows.mode must be one of {MODES}, got {f.mode!r}.")
  validate.positive(config, "flows.num_probes", "eval.anchors", "eval.steps",
                    *(("flows.num_potentials",) if f.mode == "posthoc" else ()))
  if int(f.path_len) < 2:
    raise ValueError(f"config.flows.path_len must be >= 2 (points on a flow's path), got "
                     f"{f.path_len}.")
  if f.laplacian not in ("exact", "hutchinson"):
    raise ValueError(f"config.flows.laplacian must be 'exact' or 'hutchinson', got "
                     f"{f.laplacian!r}.")
  check_protocol(config.eval)
  if f.get("convention", "lsx") not in CONVENTIONS:
    raise ValueError(f"config.flows.convention must be one of {CONVENTIONS}, got "
                     f"{f.convention!r}.")
  if f.get("convention", "lsx") == "reference" and f.mode != "posthoc":
    raise ValueError("config.flows.convention='reference' is the public post-hoc objective; "
                     "use it with flows.mode='posthoc'.")
  labels = f.get("classifier_labels", "")
  if labels not in ("",) + CLASSIFIER_LABELS:
    raise ValueError(f"config.flows.classifier_labels must be '' (the convention's own) or "
                     f"one of {CLASSIFIER_LABELS}, got {labels!r}.")
  if labels == "batch" and f.get("convention", "lsx") != "reference":
    raise ValueError("config.flows.classifier_labels='batch' is the reference objective's "
                     "(one potential per batch); with convention='lsx' leave it ''.")
  if f.get("codes", "encoder") not in CODES:
    raise ValueError(f"config.flows.codes must be one of {CODES} (the codes the flows train "
                     f"from: the encoder means of data images, or z ~ N(0, I) as the public "
                     f"trainer), got {f.codes!r}.")


def build_flows(config, runs=None):
  """The `Setup` of a flows run (post hoc on a trained decoder, or joint with a VAE)."""
  check_flows(config)
  f = config.flows
  flow_kw = dict(output=f.flow_output, net=f.get("potential_net", "lsx"),
                 speed=f.get("speed", "log"), hidden=int(f.get("hidden", 0)) or None,
                 init=f.get("potential_init", "stacked"))
  if f.mode == "posthoc":
    dec = runs.load_decoder(config.decoder.workdir, 256)
    flow = make_flow(dec.model.latent_dim, int(f.num_potentials), **flow_kw)
    objective = posthoc_objective(config, flow, dec.generate, dec.dataset.image_shape)
    objective.info["decoder"] = dec
    sample = dec.sampler(f.get("codes", "encoder"), "flows.codes")
    return Setup(config, dec.dataset, dec.model, objective, make_run_optimizer(config, objective),
                 resolve_hp(config, objective), sample=sample, init_keys=_init_keys,
                 log_keys=("pde", "pde_rel", "ic", "jvp", "cls", "cls_acc", "image_change"),
                 finish=write_training_figure,
                 finish_sweep=lambda s, p, w, m: write_training_figure(s, p, w))
  ds = get_dataset(config.data.name, size=int(config.data.size))
  require_render(ds, "joint flow training (one-factor sequences)")
  path_len = int(f.path_len)
  transforms, speeds = check_transforms(ds, f.transforms, f.speeds, path_len)
  m = config.model
  model = models.make_autoencoder(ds.image_shape, int(m.latent_dim), m.arch,
                                  hidden=tuple(m.hidden) or None)
  flow = make_flow(model.latent_dim, len(transforms), **flow_kw)
  loss = make_joint_objective(model, flow, path_len=path_len, laplacian_mode=f.laplacian,
                              num_probes=int(f.num_probes), normalize_jvp=bool(f.normalize_jvp),
                              jvp_reduction=f.jvp_reduction)

  def init(rng):
    k1, k2 = jax.random.split(rng)
    return {"vae": model.init(k1), "flow": flow.init(k2)}

  hp = {k: v for k, v in JOINT_HP_DEFAULTS.items() if k != "lr"}
  objective = Objective("flows_joint", init, loss, hp,
                        info={"flow": flow, "hp_bounds": {"flow_terms": (0.0, True)}})
  sample = lambda rng, n: (sequence_batch(ds, rng, n, transforms, speeds, path_len), None)
  return Setup(config, ds, model, objective, make_run_optimizer(config, objective),
               resolve_hp(config, objective), sample=sample, init_keys=_init_keys,
               log_keys=("rec", "latent", "pde", "pde_rel", "jvp"), finish=None)


TRAINING_TITLES = {"ic": "L_IC (velocity at t = 0)", "pde": "L_PDE (wave residual)",
                   "jvp": "L_JVP (rewarded)", "cls_acc": "frame classifier accuracy",
                   "image_change": "image change of one step ||G(z_t+1) - G(z_t)||",
                   "speed": "mean |grad u| along the path"}


def write_training_figure(setup, params, workdir: str) -> str | None:
  """flows_training.png: the trajectory of a post-hoc run from its metrics.jsonl (L_IC,
  L_PDE, L_JVP, the frame classifier's accuracy, the image change of one flow step and,
  for the reference form, the mean speed), one curve per member of a sweep."""
  del params
  rows = read_metrics(workdir)
  keys = [k for k in TRAINING_KEYS + ("speed",) if rows and k in rows[-1]]
  if not keys:  # no logged step (metrics.jsonl removed, or a run of older keys): no figure
    return None
  return viz.save_metric_curves(rows, keys, os.path.join(workdir, "flows_training.png"),
                                TRAINING_TITLES, log_keys=("ic", "pde", "jvp", "image_change",
                                                           "speed"))


def training_diagnostics(setup, params, *, seed: int = 0, batches: int = 4,
                         batch_size: int | None = None) -> dict:
  """The post-hoc objective's terms at `params` (one member), averaged over `batches`
  fresh training batches (key `seed`): {"ic", "pde", "jvp", "cls", "cls_acc"
  (classifier_accuracy), "image_change", ...}. At a run's initial parameters it is the
  trajectory's start (step 0), at its last the end, on the same batches."""
  if setup.config.flows.mode != "posthoc":
    raise ValueError("training_diagnostics reads the post-hoc objective (flows.mode='posthoc').")
  n = int(batch_size or setup.config.train.batch_size)
  loss = jax.jit(lambda p, z, r: setup.objective.loss(p, z, r, setup.hp)[1])
  rows = []
  for i in range(int(batches)):
    k_z, k_l = jax.random.split(jax.random.fold_in(jax.random.key(int(seed)), i))
    z, _ = setup.sample(k_z, n)
    rows.append(jax.device_get(loss(params, z, k_l)))
  return {k: float(sum(float(r[k]) for r in rows) / len(rows)) for k in rows[0]}


def score_run(setup, params, oracle, *, references: bool = True, flow_sets=None):
  """Scores of a trained flows run (`params` of one member) with `score_traversals`: its
  flows (or the named parameter sets `flow_sets` of the same flow) next to, with
  `references`, the same VAE's active latent axes and random directions (with
  eval.protocol='reference': its K most active axes and K random directions, the papers'
  protocols added); traversals start from the codes of 2,000 data images (key 1234).
  Returns (scores, flows' frames [K, N, S, H, W, C] of the first set)."""
  flow_sets = flow_sets or {"flows": params["flow"]}
  clash = [n for n in flow_sets if references and n.startswith(("latent axes", "random"))]
  if clash:
    raise ValueError(f"flow set names {clash} clash with the reference rows; rename them.")
  e, flow = setup.config.eval, setup.objective.info["flow"]
  if setup.config.flows.mode == "joint":
    dec = Decoder(setup.model, params["vae"], setup.dataset, 2000, data_seed=1234)
  else:
    frozen = setup.objective.info["decoder"]
    dec = Decoder(frozen.model, frozen.params, frozen.dataset, 2000, data_seed=1234)
  trav = flow_traversal(flow, int(e.steps))
  sets = {n: (trav, jax.tree.map(lambda a: a[None], p), dec) for n, p in flow_sets.items()}
  if references:
    # the papers' protocols compare K directions of every method: the K most active
    # latent axes (and K random directions) beside the K flows; lsx's, every active axis
    num = flow.num if e.get("protocol", "lsx") == "reference" else None
    sets.update(reference_sets(dec, num, int(e.random_seeds), span=float(e.span) * dec.sd,
                               num_steps=int(e.steps), suffix=""))
  scored, _ = evaluate_sets(sets, oracle, e)
  first = next(iter(flow_sets.values()))
  return scored, traversal_frames(trav, first, dec.generate, dec.z[:int(e.anchors)])


PROBE_LABELS = ("mixed", "batch")


def frame_probe(setup, flow_params, *, steps: int = 300, lr: float = 1e-3,
                batch_size: int = 64, labels: str = "mixed", eval_batches: int = 4,
                seed: int = 0, classifier: str | None = None, width: int | None = None) -> dict:
  """Can the K flows be told apart from the frames they make? A fresh frame classifier of
  the run's form (`config.flows.classifier`, `classifier_width`) trained for `steps` Adam
  steps at `lr` on the frozen flows `flow_params` (one member), then read on
  `eval_batches` held-out batches where every sample has its own potential.

  Pairs as the run's objective makes them: z0 from the run's codes, t* ~ U{0 .. L-2}, the
  path z_{i+1} = z_i + grad u_k(z_i, i) with the flows held fixed, the pair
  (G(z_{t*+1}), G(z_{t*+2})) and, for the reference form, the reflected pair
  (G(2 z0 - z_{t*+2}), G(2 z0 - z_{t*+1})) half of the time. `labels`: 'mixed' (each
  sample its own k and coin: the classifier is shown the K flows side by side) or 'batch'
  (one k and one coin per batch, as the reference objective trains its classifier).
  High accuracy with 'mixed' and chance with 'batch' says the flows differ and the
  one-label batches are what keeps the run's classifier at chance; chance with both says
  the K flows move the images alike — for this classifier: `classifier` / `width` put
  another form in the run's place (e.g. 'mlp', which reads x_b - x_a explicitly).

  Returns {"accuracy" (held out, mixed), "train_accuracy" (the last 20 steps' batches),
  "chance" (1 / K), "labels", "classifier", "steps", "lr", "batch_size"}."""
  import numpy as np
  import optax
  from lsx.flows import classifier_pairs, frame_classifier

  f = setup.config.flows
  if f.mode != "posthoc":
    raise ValueError("frame_probe reads a post-hoc flows run (flows.mode='posthoc').")
  if labels not in PROBE_LABELS:
    raise ValueError(f"frame_probe labels must be one of {PROBE_LABELS}, got {labels!r}.")
  if min(int(steps), int(batch_size), int(eval_batches)) < 1 or not float(lr) > 0:
    raise ValueError(f"frame_probe needs steps, batch_size, eval_batches >= 1 and lr > 0, got "
                     f"{steps}, {batch_size}, {eval_batches}, {lr}.")
  flow = setup.objective.info["flow"]
  decode = setup.objective.info["decoder"].generate
  form = classifier or f.get("classifier", "mlp")
  clf = frame_classifier(flow, form, int(f.get("classifier_width", 0) if width is None
                                         else width))
  length, reflect = int(f.path_len), f.get("convention", "lsx") == "reference"
  n = int(batch_size)

  def pairs(rng, mixed: bool):
    k_z, k_k, k_t, k_r = jax.random.split(rng, 4)
    z0, _ = setup.sample(k_z, n)
    lat1, lat2, ks = classifier_pairs(flow, flow_params, z0, (k_k, k_t, k_r), length,
                                      per_sample=mixed, reflect=reflect)
    x = decode(jnp.concatenate([lat1, lat2], 0))
    return x[:n], x[n:], ks

  def loss(p, xa, xb, ks, rng):
    logits = clf.apply({"params": p}, xa, xb, rng)
    return (optax.softmax_cross_entropy_with_integer_labels(logits, ks).mean(),
            jnp.mean(jnp.argmax(logits, 1) == ks))

  opt = optax.adam(float(lr))
  key = jax.random.key(int(seed))
  xa, xb, _ = pairs(key, True)
  params = clf.init(jax.random.fold_in(key, 1), xa, xb, key)["params"]
  state = opt.init(params)

  @jax.jit
  def train_step(p, s, rng):
    k_p, k_c = jax.random.split(rng)
    xa, xb, ks = pairs(k_p, labels == "mixed")
    (_, acc), g = jax.value_and_grad(loss, has_aux=True)(p, xa, xb, ks, k_c)
    u, s = opt.update(g, s, p)
    return optax.apply_updates(p, u), s, acc

  @jax.jit
  def held_out(p, rng):
    k_p, k_c = jax.random.split(rng)
    xa, xb, ks = pairs(k_p, True)
    return loss(p, xa, xb, ks, k_c)[1]

  accs = []
  for i in range(int(steps)):
    params, state, acc = train_step(params, state, jax.random.fold_in(key, 10 + i))
    accs.append(acc)
  test = [held_out(params, jax.random.fold_in(jax.random.key(int(seed) + 1), j))
          for j in range(int(eval_batches))]
  return {"accuracy": float(np.mean(jax.device_get(test))),
          "train_accuracy": float(np.mean(jax.device_get(accs[-20:]))),
          "chance": 1.0 / flow.num, "labels": labels, "classifier": form,
          "steps": int(steps), "lr": float(lr),
          "batch_size": n}
