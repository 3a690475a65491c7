"""Discover interpretable directions in a trained decoder's latent space and score them.

  python -m experiments.discover --config configs/latentclr_sprites.py
  python -m experiments.discover --config configs/latentclr_sprites.py --compare

One method (config.method): learns K directions for every seed in config.seeds (learned
methods train all seeds as one vectorized program), scores each seed with
direction-factor attribution and variation predictability, and writes in config.workdir:
directions.png (seed 0: for a few anchors, each direction at steps -S..S, one row per
direction) and directions.json (the directions, per-seed scores, mean and spread).

--compare: every method in config.compare.methods on the same decoder, plus the
references (random directions, the decoder's latent axes, the latent axes of a plain AE
decoder), into comparison.csv, comparison.png and comparison.json, and the oracle's raw
readings of every traversal (factors [members, K, N, S, F], distances) into readings.npz.
"""
from __future__ import annotations

import csv
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
from lsx import directions as ld, metrics as lm, viz
from lsx.train import load_run, make_optimizer, make_train_chunk, make_train_step, train
from lsx.train import sweep as sweep_lib
from lsx.train.state import TrainState

# the flags, defined when run as a script (importing this module defines none, so other
# experiments can use its pieces)
_CONFIG = None
_COMPARE = None

LEARNED = ("latentclr", "noiseclr", "voynov")
CLOSED = ("pca", "ganspace", "sefa", "jacobian")
METHODS = LEARNED + CLOSED
SCORES = ("disentanglement", "completeness", "direction_mig", "coverage", "vp", "off_manifold")


def load_decoder(workdir: str, config_spec: str):
  """(setup, params) of the trained model in `workdir`; trains it first when absent."""
  if not os.path.exists(os.path.join(workdir, "config.json")):
    print(f"no trained model in {workdir}: training one with {config_spec}", file=sys.stderr)
    cfg = common.load(config_spec)
    with cfg.unlocked():
      cfg.workdir = workdir
    train(cfg, workdir)
  setup, state = load_run(workdir)
  if sweep_lib.plan(setup.config, setup.hp) is not None:
    raise SystemExit(f"{workdir} holds a sweep; extract one member first "
                     f"(python -m experiments.extract_member).")
  return setup, state.params


class Decoder:
  """A trained autoencoder seen as a generator, with its encoded data and scale."""

  def __init__(self, setup, params, num_data: int):
    self.model, self.params, self.ds = setup.model, params, setup.dataset
    if not getattr(self.ds, "has_render", False):
      raise SystemExit("scoring directions needs a procedural dataset (a rendered factor grid).")
    self.generate = jax.jit(lambda z: jax.nn.sigmoid(self.model.decode(self.params, z)))
    images, self.factors = self.ds.sample(jax.random.key(7), num_data)
    self.z = jax.jit(self.model.represent)(params, images)
    # the latent scale traversals are measured in: the mean std of the active latents
    self.sd = float(np.asarray(self.z).std(0)[ld.active_latents(self.z)].mean())

  def sample(self, rng, n):
    return self.model.represent(self.params, self.ds.sample(rng, n)[0]), None


def _hp(c):
  return {k: jnp.float32(v) for k, v in c.hp.items()}


def learn(c, method: str, dec: Decoder, log=print):
  """(Directions, stacked params [members, ...], info) for every seed of config.seeds."""
  seeds = [int(s) for s in c.seeds]
  d, k = dec.model.latent_dim, int(c.directions.num)
  if method in CLOSED:
    mats = []
    for s in seeds:  # seeds vary the data sample (and the power-iteration start)
      idx = jax.random.permutation(jax.random.key(s), dec.z.shape[0])[: dec.z.shape[0] // 2]
      z = dec.z[idx]
      if method == "pca":
        u, _ = ld.pca_directions(z, min(k, d))
      elif method == "ganspace":
        feat = ld.make_feature_map(c.features, dec.model, dec.params)
        u, _ = ld.ganspace_directions(feat, z, min(k, d))
      elif method == "sefa":
        u, _ = ld.sefa_directions(dec.params["decoder"]["Dense_0"]["kernel"], min(k, d))
      else:
        u, _ = ld.jacobian_svd(lambda zz: dec.generate(zz[None])[0], z[:64], min(k, d), iters=50,
                               rng=jax.random.key(s))
      mats.append(u)
    dirs = ld.make_directions("global", min(k, d), d)
    return dirs, {"d": jnp.stack(mats)}, {}
  if method not in LEARNED:
    raise ValueError(f"Unknown method {method!r}; choose one of {METHODS}.")
  kind = c.directions.kind
  dirs = ld.make_directions(kind, k, d, hidden=int(c.directions.hidden) or None)
  if method == "voynov":
    init, loss = ld.make_voynov_objective(dirs, dec.generate, dec.model.image_shape)
  else:
    feat = ld.make_feature_map(c.features, dec.model, dec.params)
    init, loss = ld.make_contrastive_objective(dirs, feat, method)
  opt = make_optimizer(c.optimizer)
  init_state = lambda rng: TrainState.create(init(jax.random.fold_in(rng, 1)), opt,
                                             jax.random.fold_in(rng, 2))
  state = jax.jit(lambda: sweep_lib.stack_init(init_state, seeds))()  # one program, not op by op
  hp = jax.tree.map(lambda v: jnp.full((len(seeds),), v), _hp(c))
  strategy = sweep_lib.resolve_strategy(c.sweep_strategy, "conv", num_devices=1)
  chunk_len, total = int(c.train.chunk), int(c.train.steps)
  step = make_train_step(loss, opt)
  chunk = jax.jit(sweep_lib.vectorize(make_train_chunk(step, dec.sample,
                                                       int(c.train.batch_size), chunk_len),
                                      strategy))
  t0, tc, last, done, history = time.perf_counter(), None, -1e9, 0, []
  while done < total:
    state, m = chunk(state, hp)
    m = jax.device_get(m)
    done += chunk_len
    if bool(np.any(m["nonfinite"])):
      raise FloatingPointError(f"{method}: non-finite loss at step {done}; lower hp.lr.")
    history.append({"step": done, **{n: np.asarray(v).mean(-1).tolist()
                                     for n, v in m.items() if n != "nonfinite"}})
    if tc is None:
      tc = time.perf_counter()
      log(f"{method}: compiled and ran the first chunk of {len(seeds)} members in "
          f"{tc - t0:.0f}s ({strategy})")
    now = time.perf_counter()
    if now - last > float(c.train.log_every_s) or done >= total:
      rate = (done - chunk_len) / max(now - tc, 1e-9)
      eta = (total - done) / rate if rate > 0 else 0.0
      loss_now = np.mean(history[-1]["loss"])
      log(f"{method}: step {done}/{total} | {len(seeds)} members x {rate:.2f} steps/s | "
          f"ETA {eta:.0f}s | loss {loss_now:.4g}")
      last = now
  rate = (done - chunk_len) / max(time.perf_counter() - tc, 1e-9) if done > chunk_len else 0.0
  return dirs, state.params["directions"], {"history": history, "steps_per_s": rate,
                                            "strategy": strategy}


def traversal_set(c, dirs, stacked, dec: Decoder):
  """Traversal images of every member (seed) of stacked direction params:
  [members, K, N, S, H, W, C], anchors the first `eval.anchors` encoded data points."""
  n = jax.tree.leaves(stacked)[0].shape[0]
  s = int(c.eval.steps)
  step_size = float(c.eval.span) * dec.sd / s
  anchors = dec.z[: int(c.eval.anchors)]
  return jnp.stack([ld.traversal_images(dirs, sweep_lib.take_member(stacked, i),
                                        dec.generate, anchors, s, step_size)
                    for i in range(n)])


def score_read(c, dirs, stacked, dec: Decoder, factors, dist, aniso=None) -> list[dict]:
  """DFA (from oracle-read factors [members, K, N, S, F]; `aniso` the images' rotation
  anisotropy, used when `eval.readable_orientation`) and VP of every member."""
  s = int(c.eval.steps)
  span = float(c.eval.span) * dec.sd
  vp_anchors = dec.z[-int(c.eval.vp_anchors):]
  out = []
  for i in range(factors.shape[0]):
    a = aniso[i] if aniso is not None and bool(c.eval.readable_orientation) else None
    r = lm.dataset_dfa(dec.ds, factors[i], np.arange(-s, s + 1), off_manifold=dist[i],
                       anisotropy=a)
    rng = jax.random.key(11 + i)
    diffs, labels = ld.shift_pairs(dirs, sweep_lib.take_member(stacked, i), dec.generate,
                                   vp_anchors, rng, span, span / 4)
    r["vp"] = lm.variation_predictability(diffs, labels, jax.random.fold_in(rng, 2),
                                          num_classes=dirs.num)["vp"]
    out.append({k: r[k] for k in SCORES} | {"matches": r["matches"]})
  return out


def score_members(c, dirs, stacked, dec: Decoder, oracle) -> list[dict]:
  """DFA and VP of every member (seed) of stacked direction params."""
  (factors, dist, aniso), = ld.read_in_one_pass(oracle, [traversal_set(c, dirs, stacked, dec)])
  return score_read(c, dirs, stacked, dec, factors, dist, aniso)


def summarize(rows: list[dict]) -> dict:
  return {k: {"mean": float(np.mean([r[k] for r in rows])),
              "std": float(np.std([r[k] for r in rows]))} for k in SCORES}


def save_direction_grid(dirs, params, dec: Decoder, c, path):
  s = int(c.eval.steps)
  imgs = ld.traversal_images(dirs, params, dec.generate, dec.z[:3], s,
                             float(c.eval.span) * dec.sd / s)  # [K, N, S, H, W, C]
  grid = [viz.image_grid(np.asarray(imgs[:, a])) for a in range(imgs.shape[1])]
  viz.save_png(np.concatenate(grid, axis=1), path, scale=2)


def run_method(c, method, dec, oracle, log=print):
  dirs, stacked, info = learn(c, method, dec, log)
  rows = score_members(c, dirs, stacked, dec, oracle)
  return dirs, stacked, info, rows


def reference_sets(c, dec: Decoder, name: str) -> dict:
  """Latent axes (and, for the decoder under study, random directions and the supervised
  factor directions) as stacked direction params to score like the methods:
  {row name: (dirs, stacked)}."""
  d = dec.model.latent_dim
  k = min(int(c.directions.num), d)
  axes = ld.make_directions("global", k, d)
  # the k most active latent axes (all of them when K >= d)
  order = np.argsort(-np.asarray(jnp.std(dec.z, 0)))[:k]
  out = {f"latent axes ({name})": (axes, {"d": jnp.eye(d)[order][None]})}
  if name == "decoder":
    mats = jnp.stack([jax.random.normal(jax.random.key(100 + s), (k, d))
                      for s in range(int(c.compare.random_seeds))])
    out["random"] = (axes, {"d": mats})
    # what one global linear direction per factor reaches on this decoder (reads labels)
    u, _ = ld.factor_directions(dec.z, dec.factors, dec.ds.factor_sizes,
                                lm.directions.ordinal_mask(dec.ds))
    out["factor directions (supervised)"] = (ld.make_directions("global", *u.shape),
                                             {"d": u[None]})
  return out


def save_comparison_plot(table: dict, path: str):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  names = list(table)
  keys = ("disentanglement", "completeness", "direction_mig", "coverage", "vp")
  fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 0.35 * len(names) + 1.6),
                           sharey=True)
  for ax, key in zip(axes, keys):
    m = [table[n]["summary"][key]["mean"] for n in names]
    e = [table[n]["summary"][key]["std"] for n in names]
    ax.barh(range(len(names)), m, xerr=e, color="tab:blue", alpha=0.8)
    for n_i, name in enumerate(names):
      vals = [r[key] for r in table[name]["seeds"]]
      ax.plot(vals, [n_i] * len(vals), "k.", ms=3)
    ax.set_title(key.replace("_", "-"))
  axes[0].set_yticks(range(len(names)))
  axes[0].set_yticklabels(names)
  axes[0].invert_yaxis()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv):
  del argv
  logging.getLogger("absl").setLevel(logging.WARNING)
  c = _CONFIG.value
  log = lambda msg: print(msg, file=sys.stderr, flush=True)
  t0 = time.perf_counter()
  lm.check_oracle(c.eval.oracle)
  setup, params = load_decoder(c.vae_workdir, c.vae_config)
  dec = Decoder(setup, params, int(c.eval.data))
  oracle = lm.make_oracle(dec.ds, c.eval.oracle, pool=int(c.eval.oracle_pool),
                          steps=int(c.eval.oracle_steps), rng=jax.random.key(7), log=log)
  oracle_info = ({"kind": "classifier", "accuracy": oracle.accuracy,
                  "within_one": oracle.within_one}
                 if isinstance(oracle, lm.ClassifierOracle)
                 else {"kind": "grid", "pool": int(c.eval.oracle_pool)})
  os.makedirs(c.workdir, exist_ok=True)
  if not _COMPARE.value:
    dirs, stacked, info, rows = run_method(c, c.method, dec, oracle, log)
    save_direction_grid(dirs, sweep_lib.take_member(stacked, 0), dec, c,
                        os.path.join(c.workdir, "directions.png"))
    out = {"method": c.method, "kind": dirs.kind if c.method in LEARNED else "global",
           "seeds": list(c.seeds), "factor_names": list(dec.ds.factor_names),
           "scores": rows, "summary": summarize(rows), "oracle": oracle_info,
           "train_steps_per_s": info.get("steps_per_s"),
           "params": jax.tree.map(lambda a: np.asarray(a).tolist(), stacked)}
    with open(os.path.join(c.workdir, "directions.json"), "w") as f:
      json.dump(out, f)
    _print_table({c.method: {"summary": out["summary"]}})
    log(f"wrote directions.png, directions.json in {c.workdir} ({time.perf_counter() - t0:.0f}s)")
    return
  entries = {}  # row name -> (dirs, stacked params, decoder)
  for method in c.compare.methods:
    dirs, stacked, _ = learn(c, method, dec, log)
    entries[method] = (dirs, stacked, dec)
  entries.update({n: (dd, st, dec) for n, (dd, st) in reference_sets(c, dec, "decoder").items()})
  ae_setup, ae_params = load_decoder(c.compare.ae_workdir, c.compare.ae_config)
  ae = Decoder(ae_setup, ae_params, int(c.eval.data))
  entries.update({n: (dd, st, ae) for n, (dd, st) in reference_sets(c, ae, "plain AE").items()})
  t1 = time.perf_counter()
  reads = ld.read_in_one_pass(oracle, [traversal_set(c, dd, st, dc)
                                        for dd, st, dc in entries.values()])
  log(f"oracle read every traversal of {len(entries)} rows in one pass "
      f"({time.perf_counter() - t1:.0f}s)")
  # the raw readings, so a scoring variant can be studied without decoding again
  np.savez_compressed(os.path.join(c.workdir, "readings.npz"),
                      **{f"{n}/factors": r.factors for n, r in zip(entries, reads)},
                      **{f"{n}/distance": r.distance for n, r in zip(entries, reads)},
                      **{f"{n}/anisotropy": r.anisotropy for n, r in zip(entries, reads)})
  table = {}
  for (name, (dd, st, dc)), (factors, dist, aniso) in zip(entries.items(), reads):
    rows = score_read(c, dd, st, dc, factors, dist, aniso)
    table[name] = {"seeds": rows, "summary": summarize(rows)}
    log(f"{name}: D {table[name]['summary']['disentanglement']['mean']:.3f} "
        f"coverage {table[name]['summary']['coverage']['mean']:.2f}")
  with open(os.path.join(c.workdir, "comparison.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["method", "seeds"] + [f"{k}_{s}" for k in SCORES for s in ("mean", "std")])
    for name, t in table.items():
      w.writerow([name, len(t["seeds"])] + [f"{t['summary'][k][s]:.4f}" for k in SCORES
                                            for s in ("mean", "std")])
  with open(os.path.join(c.workdir, "comparison.json"), "w") as f:
    json.dump({"factor_names": list(dec.ds.factor_names), "oracle": oracle_info,
               "table": table}, f, indent=1)
  save_comparison_plot(table, os.path.join(c.workdir, "comparison.png"))
  _print_table(table)
  log(f"wrote comparison.csv, comparison.png, comparison.json in {c.workdir} "
      f"({time.perf_counter() - t0:.0f}s)")


def _print_table(table):
  print(f"{'method':24s} " + " ".join(f"{k[:15]:>15s}" for k in SCORES))
  for name, t in table.items():
    s = t["summary"]
    print(f"{name:24s} " + " ".join(f"{s[k]['mean']:8.3f}±{s[k]['std']:.3f}"[:15].rjust(15)
                                     for k in SCORES))


if __name__ == "__main__":
  _CONFIG = config_flags.DEFINE_config_file("config", None, "Directions config file.",
                                            lock_config=True)
  _COMPARE = flags.DEFINE_bool("compare", False, "Compare every method in config.compare.")
  flags.mark_flags_as_required(["config"])
  app.run(main)
