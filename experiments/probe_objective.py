"""Does an objective prefer the factor-aligned solution? Optimization or objective.

When a method misses the factors, two causes look alike in its scores: the optimizer did
not find the objective's best solution, or the objective's best solutions are not the
factor-aligned ones. This probe tells them apart on a trained decoder with ground truth:
it evaluates the objective at a factor-aligned solution, trains the method from there
and from a random start, and scores every result with DFA.

  # contrastive directions (config.method latentclr | noiseclr) on a trained decoder:
  python -m experiments.probe_objective --config configs/latentclr_sprites.py \\
      --config.vae_workdir=workdirs/fjvae0 --config.workdir=workdirs/probe_clr
  # post-hoc potential flows, started from the flows of a finished joint run:
  python -m experiments.probe_objective --config configs/flows_joint_sprites.py \\
      --config.workdir=workdirs/fj_tanh

Directions: the factor-aligned start is `lsx.directions.factor_directions` (one global
direction per ordinal factor, least squares of the codes on the factors); rows
'factor directions', 'random', '<method> from factor directions', '<method> from random',
each with the objective's value (mean over --eval_batches batches; lower is better) and
its DFA/VP, K = the number of ordinal factors, `--steps` training steps.

Flows: the factor-aligned start is the joint run's flows (each trained on sequences of one
factor). The post-hoc objective (lsx.flows.make_flow_objective, K = the joint run's
potentials, path length --path_len) is evaluated with a frame classifier trained for
--classifier_steps steps on the frozen flows, then the flows are trained post hoc from
there with every term and with one term group left out (--terms), and from a random start.
Writes probe_objective.json in config.workdir and prints the table.
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from lsx import directions as ld, metrics as lm
from lsx.train import make_optimizer, make_train_chunk, make_train_step
from lsx.train.checkpoint import on_restore_device
from lsx.train.state import TrainState

_CONFIG = config_flags.DEFINE_config_file("config", None, "A discover or joint-flows config.",
                                          lock_config=True)
_STEPS = flags.DEFINE_integer("steps", 1000, "training steps from each start")
_EVAL = flags.DEFINE_integer("eval_batches", 20, "batches the objective is averaged over")
_CLF = flags.DEFINE_integer("classifier_steps", 300, "flows: classifier steps on frozen flows")
_PATH = flags.DEFINE_integer("path_len", 10, "flows: the post-hoc objective's path length")
_TERMS = flags.DEFINE_list("terms", ["all", "no_jvp", "cls_only", "no_cls"],
                           "flows: post-hoc term sets trained from the joint flows")

# post-hoc flow objective: which of its terms a run minimizes (L = cls + ic + pde - jvp)
TERM_SETS = {"all": ("cls", "ic", "pde", "-jvp"), "no_jvp": ("cls", "ic", "pde"),
             "cls_only": ("cls",), "no_cls": ("ic", "pde", "-jvp")}
SCORES = ("disentanglement", "completeness", "direction_mig", "coverage", "vp")


def _trainer(loss, sample, hp, steps: int, batch: int):
  """fit(params, seed) -> params after `steps` Adam steps of `loss`: compiled once, reused
  for every start."""
  chunk = math.gcd(steps, 20) if steps > 0 else 1
  opt = make_optimizer("adam")
  run = jax.jit(make_train_chunk(make_train_step(loss, opt), sample, batch, chunk))

  def fit(params, seed):
    # every start (restored or fresh) on one placement: one compiled program for all
    state = TrainState.create(on_restore_device(params), opt, jax.random.key(seed))
    for _ in range(steps // chunk):
      state, m = run(state, hp)
      if bool(np.any(jax.device_get(m["nonfinite"]))):
        raise FloatingPointError("non-finite loss in the probe's training; lower the lr.")
    return state.params
  return fit


def _averager(loss, sample, hp, batches: int, batch: int):
  """value(params) -> (objective, aux) averaged over `batches` fixed batches."""
  ev = jax.jit(lambda p, r: loss(p, sample(jax.random.fold_in(r, 1), batch)[0], r, hp))

  def value(params):
    params = on_restore_device(params)  # one program for every start (see _trainer)
    vals = [jax.device_get(ev(params, jax.random.key(500 + i))) for i in range(batches)]
    aux = {k: float(np.mean([v[1][k] for v in vals])) for k in vals[0][1]}
    return float(np.mean([v[0] for v in vals])), aux
  return value


def probe_directions(c, log):
  from experiments import discover as ed
  if c.method not in ld.FORMS:
    raise ValueError(f"the directions probe needs a contrastive method {ld.FORMS}, got "
                     f"{c.method!r} (a reconstructor or closed form has no objective to "
                     f"evaluate at given directions).")
  setup, params = ed.load_decoder(c.vae_workdir, c.vae_config)
  dec = ed.Decoder(setup, params, int(c.eval.data))
  oracle = lm.make_oracle(dec.ds, c.eval.oracle, pool=int(c.eval.oracle_pool),
                          steps=int(c.eval.oracle_steps), rng=jax.random.key(7), log=log)
  sup, norms = ld.factor_directions(dec.z, dec.factors, dec.ds.factor_sizes,
                                    lm.directions.ordinal_mask(dec.ds))
  k, d = sup.shape
  dirs = ld.make_directions("global", k, d)
  feat = ld.make_feature_map(c.features, dec.model, dec.params)
  _, loss = ld.make_contrastive_objective(dirs, feat, c.method)
  hp = {n: jnp.float32(v) for n, v in c.hp.items()}
  batch = int(c.train.batch_size)
  rand = jax.random.normal(jax.random.key(4), (k, d))
  starts = {"factor directions": sup, "random": ld.normalize(rand)}
  sets = dict(starts)
  fit = _trainer(loss, dec.sample, hp, int(_STEPS.value), batch)
  value = _averager(loss, dec.sample, hp, int(_EVAL.value), batch)
  for name, m0 in starts.items():
    t = time.perf_counter()
    p = fit({"directions": {"d": m0}}, 9)
    sets[f"{c.method} from {name}"] = ld.normalize(p["directions"]["d"])
    log(f"trained {c.method} from {name}: {int(_STEPS.value)} steps, "
        f"{time.perf_counter() - t:.0f}s")
  # every set scored as one member of a stack: one traversal program, one oracle pass
  scored = ed.score_members(c, dirs, {"d": jnp.stack([jnp.asarray(m) for m in sets.values()])},
                            dec, oracle)
  rows = {}
  for (name, m), r in zip(sets.items(), scored):
    v, aux = value({"directions": {"d": m}})
    rows[name] = {"objective": v, **aux, **{s: float(r[s]) for s in SCORES},
                  "directions": np.asarray(m).round(5).tolist()}
  info = {"probe": "directions", "method": c.method, "features": c.features,
          "decoder": c.vae_workdir, "factor_norms": np.asarray(norms).round(4).tolist(),
          "steps": int(_STEPS.value)}
  return rows, info


def probe_flows(c, log):
  from experiments import flows as ef
  if c.mode != "joint":
    raise ValueError("the flows probe starts from a joint run's flows: give a joint config "
                     "(configs/flows_joint_sprites.py) whose workdir holds the finished run.")
  unknown = sorted(set(_TERMS.value) - set(TERM_SETS))
  if unknown:
    raise ValueError(f"--terms {unknown} unknown; choose from {sorted(TERM_SETS)}.")
  (ds, model, flow, *_), joint = ef.restore_joint(c)
  vp, fj = joint.params["vae"], joint.params["flow"]
  decode = lambda z: jax.nn.sigmoid(model.decode(vp, z))
  init_clf, loss = ef.posthoc_objective(c, flow, decode, ds.image_shape, int(_PATH.value))
  sample = lambda rng, n: (model.represent(vp, ds.sample(rng, n)[0]), None)
  hp = {"lr": jnp.float32(1e-3), "lambda_cls": jnp.float32(1.0), "lambda_pde": jnp.float32(1.0)}
  batch = int(c.train.batch_size)

  def terms_loss(terms):
    def fn(p, z, rng, h):
      _, aux = loss(p, z, rng, h)
      return sum(-aux[t[1:]] if t.startswith("-") else aux[t] for t in terms), aux
    return fn

  k1, k2 = jax.random.split(jax.random.key(int(c.seed)))
  steps = int(_STEPS.value)
  fits = {terms: _trainer(terms_loss(TERM_SETS[terms]), sample, hp, steps, batch)
          for terms in set(_TERMS.value) | {"all"}}
  sets = {"joint flows": fj}
  for terms in _TERMS.value:
    t = time.perf_counter()
    sets[f"post hoc from joint ({terms})"] = fits[terms](
        {"flow": fj, "classifier": init_clf(k2)}, 7)["flow"]
    log(f"post hoc from the joint flows ({terms}): {time.perf_counter() - t:.0f}s")
  sets["post hoc from random (all)"] = fits["all"](
      {"flow": flow.init(k1), "classifier": init_clf(k2)}, 7)["flow"]
  # the classifier alone on frozen flows (zero flow gradients leave Adam's flow update 0)
  frozen = lambda p, z, r, h: loss({"flow": jax.lax.stop_gradient(p["flow"]),
                                    "classifier": p["classifier"]}, z, r, h)
  fit_clf = _trainer(frozen, sample, hp, int(_CLF.value), batch)
  value = _averager(loss, sample, hp, int(_EVAL.value), batch)
  values = {}
  for name, fp in sets.items():
    values[name] = value(fit_clf({"flow": fp, "classifier": init_clf(jax.random.key(5))}, 3))
  # every set scored in one stacked traversal and one oracle pass
  _, scored = ef.evaluate_sets(c, ds, model, vp, flow, sets, references=False)
  rows = {}
  for name, (v, aux) in values.items():
    r = scored[name]
    rows[name] = {"objective": v, **aux, **{s: float(r[s]) for s in SCORES},
                  "R": np.asarray(r["R"]).round(4).tolist()}
    log(f"{name}: objective {v:.4f}, D {float(r['disentanglement']):.3f}")
  info = {"probe": "flows", "joint_run": c.workdir, "path_len": int(_PATH.value),
          "steps": int(_STEPS.value), "classifier_steps": int(_CLF.value),
          "factor_names": [n for n, o in zip(ds.factor_names, lm.directions.ordinal_mask(ds))
                           if o]}
  return rows, info


def main(argv):
  del argv
  logging.getLogger("absl").setLevel(logging.WARNING)
  c = _CONFIG.value
  log = lambda m: print(m, file=sys.stderr, flush=True)
  t0 = time.perf_counter()
  rows, info = (probe_flows if c.get("mode") == "joint" else probe_directions)(c, log)
  os.makedirs(c.workdir, exist_ok=True)
  path = os.path.join(c.workdir, "probe_objective.json")
  with open(path, "w") as f:
    json.dump({**info, "rows": rows}, f, indent=1)
  print(f"{'start / run':36s} {'objective':>10s} " + " ".join(f"{s[:12]:>12s}" for s in SCORES))
  for name, r in rows.items():
    print(f"{name:36s} {r['objective']:10.4f} " + " ".join(f"{r[s]:12.3f}" for s in SCORES))
  print(f"objective: lower is better; wrote {path} ({time.perf_counter() - t0:.0f}s)")


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
