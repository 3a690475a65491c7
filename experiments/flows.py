"""Learn potential-flow traversals on a trained VAE's latent space and score them.

  python -m experiments.flows --config configs/flows_sprites.py

Writes in config.workdir: flows.png (rows: potentials; for each anchor the path over
-T..T steps: negative direction left, positive right), flows_losses.png (L_IC, L_PDE,
L_JVP, classifier loss per chunk), metrics.jsonl, flows_dfa.json (DFA of the flows next
to the VAE's latent axes and random directions).
"""
from __future__ import annotations

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
from lsx import flows, metrics as lm, viz
from lsx.train import load_run, make_optimizer, make_train_chunk, make_train_step, train
from lsx.train.state import TrainState

_CONFIG = config_flags.DEFINE_config_file("config", None, "Flows config file.", lock_config=True)


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


def main(argv):
  del argv
  logging.getLogger("absl").setLevel(logging.WARNING)
  c = _CONFIG.value
  t0 = time.perf_counter()
  setup, vstate = _vae(c)
  model, vparams, ds = setup.model, vstate.params, setup.dataset
  decode = lambda z: jax.nn.sigmoid(model.decode(vparams, z))
  d = model.latent_dim
  flow = flows.make_flow(d, int(c.num_potentials))
  init_clf, loss = flows.make_flow_objective(flow, decode, ds.image_shape,
                                             path_len=int(c.path_len),
                                             laplacian_mode=c.laplacian,
                                             num_probes=int(c.num_probes),
                                             normalize_jvp=bool(c.get("normalize_jvp", False)))
  opt = make_optimizer("adam")
  k1, k2, k3 = jax.random.split(jax.random.key(int(c.seed)), 3)
  params = {"flow": flow.init(k1), "classifier": init_clf(k2)}
  state = TrainState.create(params, opt, k3)
  hp = {k: jnp.float32(v) for k, v in c.hp.items()}
  sample = lambda rng, n: (model.represent(vparams, ds.sample(rng, n)[0]), None)
  step = make_train_step(loss, opt)
  total, k = int(c.train.steps), int(c.train.chunk)
  chunk = jax.jit(make_train_chunk(step, sample, int(c.train.batch_size), k))
  os.makedirs(c.workdir, exist_ok=True)
  rows, done, last = [], 0, -1e9
  tc = time.perf_counter()
  while done < total:
    state, m = chunk(state, hp)
    m = jax.device_get(m)
    done += k
    rows.append({"step": done, **{n: float(np.mean(v)) for n, v in m.items() if n != "nonfinite"}})
    if done == k:
      tc = time.perf_counter()
      print(f"compiled and ran the first {k}-step chunk ({tc - t0:.0f}s since start)", file=sys.stderr)
    now = time.perf_counter()
    if now - last > float(c.train.log_every_s) or done >= total:
      rate = (done - k) / max(now - tc, 1e-9) if done > k else float("nan")
      r = rows[-1]
      print(f"step {done}/{total} | {rate:.2f} steps/s | ETA {(total - done) / rate if rate == rate and rate > 0 else 0:.0f}s"
            f" | pde {r['pde']:.4g} ic {r['ic']:.3g} jvp {r['jvp']:.3g} cls {r['cls']:.3g} acc {r['cls_acc']:.2f}",
            file=sys.stderr, flush=True)
      last = now
  train_rate = (done - k) / max(time.perf_counter() - tc, 1e-9) if done > k else float("nan")
  with open(os.path.join(c.workdir, "metrics.jsonl"), "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
  save_loss_plot(rows, os.path.join(c.workdir, "flows_losses.png"))
  fp = state.params["flow"]
  images, _ = ds.sample(jax.random.key(1234), 2000)
  z = jax.jit(model.represent)(vparams, images)
  anchors = z[:int(c.eval.anchors)]
  s = int(c.eval.steps)
  paths = jax.jit(jax.vmap(jax.vmap(lambda zz, kk: flow_paths(flow, fp, zz, kk, s),
                                    in_axes=(0, None)), in_axes=(None, 0)))(anchors, jnp.arange(flow.num))
  frames = jax.jit(decode)(paths.reshape(-1, d)).reshape(paths.shape[:3] + ds.image_shape)
  grid = [viz.image_grid(np.asarray(frames[:, a])) for a in range(min(3, frames.shape[1]))]
  viz.save_png(np.concatenate(grid, axis=1), os.path.join(c.workdir, "flows.png"), scale=2)
  oracle = lm.grid_oracle(ds)
  fac, dist = oracle(frames.reshape((-1,) + ds.image_shape))
  fac = np.asarray(fac).reshape(frames.shape[:3] + (-1,))
  res = lm.dataset_dfa(ds, fac, np.arange(-s, s + 1), off_manifold=np.asarray(dist))
  out = {n: res[n] for n in ("disentanglement", "completeness", "direction_mig", "coverage",
                             "off_manifold", "matches")}
  out["train_steps_per_s"] = train_rate
  out["batch_size"] = int(c.train.batch_size)
  with open(os.path.join(c.workdir, "flows_dfa.json"), "w") as f:
    json.dump(out, f, indent=1)
  print(json.dumps({k2: v for k2, v in out.items() if k2 != "matches"}))
  print(f"wrote flows.png, flows_losses.png, flows_dfa.json in {c.workdir} "
        f"({time.perf_counter() - t0:.0f}s)")


def save_loss_plot(rows, path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 4, figsize=(13, 2.8))
  steps = [r["step"] for r in rows]
  for ax, key in zip(axes, ("pde", "ic", "jvp", "cls")):
    ax.plot(steps, [r[key] for r in rows])
    ax.set_title({"pde": "L_PDE (wave residual)", "ic": "L_IC", "jvp": "L_JVP (rewarded)",
                  "cls": "classifier CE"}[key])
    ax.set_xlabel("step")
    if key == "pde":
      ax.set_yscale("log")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
