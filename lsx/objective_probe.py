"""Does an objective prefer the factor-aligned solution? Optimization or objective.

When a method misses the factors, two causes look alike in its scores: the optimizer did
not find the objective's best solution, or the objective's best solutions are not the
factor-aligned ones. A probe evaluates the objective at a factor-aligned start, trains
the method from there and from a random start (through `lsx.train.train`, each start a
run in its own sub-workdir), and scores every result with DFA:

- `probe_directions`: contrastive directions from the supervised factor directions
  (`lsx.directions.factor_directions`) and from random ones, K = the ordinal factors;
- `probe_flows`: the post-hoc flow objective started from a joint run's flows (each
  trained on sequences of one factor) with every term and with term groups left out,
  and from a random start; the objective is evaluated after the frame classifier is
  retrained on the frozen flows.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from lsx import directions as ld, metrics as lm
from lsx.directions import family as dfam
from lsx.flows import family as ffam
from lsx.traversal_eval import decoder_from_config
from lsx.objective import Objective
from lsx.runs import load_run, train
from lsx.train import Setup, make_run_optimizer, resolve_hp

# post-hoc flow objective: which of its terms a run minimizes (L = cls + ic + pde - jvp)
TERM_SETS = {"all": ("cls", "ic", "pde", "-jvp"), "no_jvp": ("cls", "ic", "pde"),
             "cls_only": ("cls",), "no_cls": ("ic", "pde", "-jvp")}
SCORES = ("disentanglement", "completeness", "direction_mig", "coverage", "vp")


def objective_evaluator(setup: Setup, batches: int):
  """value(params) -> (objective, aux terms) averaged over `batches` fixed batches: the
  loss compiled once and reused for every set of parameters."""
  ev = jax.jit(lambda p, r: setup.objective.loss(
      p, setup.sample(jax.random.fold_in(r, 1), int(setup.config.train.batch_size))[0], r,
      setup.hp))

  def value(params):
    vals = [jax.device_get(ev(params, jax.random.key(500 + i))) for i in range(int(batches))]
    return (float(np.mean([v[0] for v in vals])),
            {k: float(np.mean([v[1][k] for v in vals])) for k in vals[0][1]})
  return value


def _fit(config, setup, workdir, params, steps: int):
  """`params` after `steps` steps of the setup's objective from `params`: a fresh run in
  the probe's scratch directory `workdir` (removed first: a rerun starts over)."""
  import shutil
  shutil.rmtree(workdir, ignore_errors=True)
  c = config.copy_and_resolve_references()
  with c.unlocked():
    chunk = int(np.gcd(int(steps), int(c.train.chunk)))
    c.train.update(steps=int(steps), chunk=chunk, ckpt_every=int(steps))
    c.workdir = workdir
  state, _ = train(c, workdir, setup=setup, init_params=params, print_fn=lambda s: None)
  return state.params


def probe_directions(config, steps: int, eval_batches: int, log=print):
  """Rows {start or run: objective, its terms, DFA/VP, directions} for a contrastive
  method (config.directions.method) on the decoder of config.decoder."""
  method = config.directions.method
  if method not in ld.FORMS:
    raise ValueError(f"the directions probe needs a contrastive method {ld.FORMS}, got "
                     f"{method!r} (a reconstructor or closed form has no objective to "
                     f"evaluate at given directions).")
  dec = decoder_from_config(config)
  sup, norms = ld.factor_directions(dec.z, dec.factors, dec.dataset.factor_sizes,
                                    lm.ordinal_mask(dec.dataset))
  k, d = sup.shape
  c = dfam.method_config(config, method, config.workdir)
  with c.unlocked():
    c.directions.update(num=k, kind="global")
    c.sweep.seed, c.sweep.hp = (), {}
  setup = dfam.build_directions(c, decoder=dec)
  starts = {"factor directions": sup,
            "random": ld.normalize(jax.random.normal(jax.random.key(4), (k, d)))}
  sets = dict(starts)
  for name, m0 in starts.items():
    wd = os.path.join(config.workdir, f"from {name}")
    p = _fit(c, setup, wd, {"directions": {"d": jnp.asarray(m0)}}, steps)
    sets[f"{method} from {name}"] = ld.normalize(p["directions"]["d"])
    log(f"trained {method} from {name}: {steps} steps")
  oracle = lm.oracle_from_config(dec.dataset, config.eval, log=log)
  trav = ld.linear_traversal(setup.objective.directions, int(config.eval.steps),
                             float(config.eval.span) * dec.sd / int(config.eval.steps))
  stacked = {"d": jnp.stack([jnp.asarray(m) for m in sets.values()])}
  scored, _ = ld.score_traversals({"all": (trav, stacked, dec)}, oracle,
                                  anchors=config.eval.anchors, vp_anchors=config.eval.vp_anchors,
                                  readable_orientation=config.eval.readable_orientation)
  rows = {}
  value = objective_evaluator(setup, eval_batches)
  for (name, m), r in zip(sets.items(), scored["all"]):
    v, aux = value({"directions": {"d": jnp.asarray(m)}})
    rows[name] = {"objective": v, **aux, **{s: float(r[s]) for s in SCORES},
                  "directions": np.asarray(m).round(5).tolist()}
  info = {"probe": "directions", "method": method, "features": config.directions.features,
          "decoder": config.decoder.workdir, "factor_norms": np.asarray(norms).round(4).tolist(),
          "steps": int(steps)}
  return rows, info


def probe_flows(workdir: str, steps: int, eval_batches: int, classifier_steps: int,
                path_len: int, terms=("all", "no_jvp", "cls_only", "no_cls"), log=print,
                out_dir: str | None = None):
  """Rows {start or run: post-hoc objective, terms, DFA/VP, R} started from the flows of
  the joint flows run in `workdir` (sub-runs written under `out_dir`, default
  workdir/probe)."""
  unknown = sorted(set(terms) - set(TERM_SETS))
  if unknown:
    raise ValueError(f"terms {unknown} unknown; choose from {sorted(TERM_SETS)}.")
  joint_setup, joint = load_run(workdir)
  c = joint_setup.config
  if c.get("family") != "flows" or c.flows.mode != "joint":
    raise ValueError("the flows probe starts from a joint run's flows: give the workdir of "
                     "a finished joint run (configs/flows_joint_sprites.py).")
  out_dir = out_dir or os.path.join(workdir, "probe")
  flow = joint_setup.objective.info["flow"]
  dec = dfam.Decoder(joint_setup.model, joint.params["vae"], joint_setup.dataset, 256)
  post = ffam.posthoc_objective(c, flow, dec.generate, dec.dataset.image_shape, path_len)
  pc = c.copy_and_resolve_references()
  with pc.unlocked():
    pc.hp = {"lr": 1e-3, "lambda_cls": 1.0, "lambda_pde": 1.0}
    pc.sweep.seed, pc.sweep.hp = (), {}

  def setup_for(loss):
    obj = Objective(post.name, post.init, loss, post.hp_defaults, info=post.info)
    return Setup(pc, dec.dataset, dec.model, obj, make_run_optimizer(pc, obj),
                 resolve_hp(pc, obj), sample=dec.sample, init_keys=ffam._init_keys)

  def terms_loss(names):
    def fn(p, z, rng, h):
      _, aux = post.loss(p, z, rng, h)
      return sum(-aux[t[1:]] if t.startswith("-") else aux[t] for t in names), aux
    return fn

  init_clf = post.info["init_classifier"]
  k1, k2 = jax.random.split(jax.random.key(int(c.seed)))
  fj = joint.params["flow"]
  sets = {"joint flows": fj}
  for t in terms:
    run = os.path.join(out_dir, f"from joint ({t})")
    sets[f"post hoc from joint ({t})"] = _fit(pc, setup_for(terms_loss(TERM_SETS[t])), run,
                                              {"flow": fj, "classifier": init_clf(k2)}, steps)["flow"]
    log(f"post hoc from the joint flows ({t}): {steps} steps")
  sets["post hoc from random (all)"] = _fit(
      pc, setup_for(terms_loss(TERM_SETS["all"])), os.path.join(out_dir, "from random"),
      {"flow": flow.init(k1), "classifier": init_clf(k2)}, steps)["flow"]
  # the classifier alone on frozen flows (zero flow gradients leave Adam's flow update 0)
  frozen = setup_for(lambda p, z, r, h: post.loss(
      {"flow": jax.lax.stop_gradient(p["flow"]), "classifier": p["classifier"]}, z, r, h))
  values, value = {}, objective_evaluator(setup_for(post.loss), eval_batches)
  for i, (name, fp) in enumerate(sets.items()):
    p = _fit(pc, frozen, os.path.join(out_dir, f"classifier {i}"),
             {"flow": fp, "classifier": init_clf(jax.random.key(5))}, classifier_steps)
    values[name] = value(p)
  oracle = lm.oracle_from_config(dec.dataset, c.eval, seed=int(c.seed) + 7, log=log)
  scored, _ = ffam.score_run(joint_setup, joint.params, oracle, references=False,
                             flow_sets=sets)
  rows = {}
  for name, (v, aux) in values.items():
    r = scored[name][0]
    rows[name] = {"objective": v, **aux, **{s: float(r[s]) for s in SCORES},
                  "R": np.asarray(r["R"]).round(4).tolist()}
    log(f"{name}: objective {v:.4f}, D {float(r['disentanglement']):.3f}")
  info = {"probe": "flows", "joint_run": workdir, "path_len": int(path_len),
          "steps": int(steps), "classifier_steps": int(classifier_steps),
          "factor_names": [n for n, o in zip(dec.dataset.factor_names,
                                             lm.ordinal_mask(dec.dataset)) if o]}
  return rows, info

