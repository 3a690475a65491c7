"""The 'sae' training family: sparse autoencoders on a source's activations, one run or a
sweep (k x sparsity coefficient x width x seed) as one program reading each batch once.

Config sections (configs/sae_toy.py, sae_sprites.py, sae_arrays.py; docs/sae.md):
  source  kind 'toy' | 'model' | 'arrays' and its options (lsx.sae.sources.make_source)
  sae     bottleneck, max_width, k_max, aux_k, dead_tokens, median_samples; JumpReLU's
          bandwidth, threshold_init, jump_grad, sparsity, init_rate
  eval    samples, seed, disentanglement (InfoMEC/MIG/DCI of the codes vs the factors,
          'model' sources)
  hp      lr, k, width and the bottleneck's coefficient (l1_coeff / aux_coeff / l0_coeff)

At the end: metrics.json (a single run) or per-member columns in sweep.csv plus
metrics.json {"members": [...]} and sae_frontier.png (a sweep).
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from lsx import metrics as lm, records
from lsx.metrics.suite import _merge_sweep_csv
from lsx.sae import model as sae_model
from lsx.sae.sources import make_source
from lsx.train import validate
from lsx.train.setup import make_run_optimizer, resolve_hp, Setup
from lsx.viz.labelled import save_figure


def sae_of(config, dim: int) -> sae_model.SAE:
  s = config.sae
  return sae_model.check(sae_model.SAE(
      dim=int(dim), max_width=int(s.max_width), bottleneck=s.bottleneck, k_max=int(s.k_max),
      aux_k=int(s.get("aux_k", 256)), dead_tokens=int(s.get("dead_tokens", 100_000)),
      bandwidth=float(s.get("bandwidth", 0.001)),
      threshold_rate=float(s.get("threshold_rate", 0.01)),
      threshold_init=float(s.get("threshold_init", 0.001)),
      jump_grad=str(s.get("jump_grad", "threshold")), sparsity=str(s.get("sparsity", "l0")),
      init_rate=float(s.get("init_rate", 0.0))))


def _check_bounds(config):
  s = config.sae
  for name, bound in (("k", int(s.k_max)), ("width", int(s.max_width))):
    values = list(dict(config.sweep.hp).get(name, ())) + ([config.hp[name]] if name in config.hp else [])
    for v in values:
      if not 1 <= float(v) <= bound or float(v) != int(v):
        raise ValueError(f"hp.{name}={v}: must be an integer in [1, sae.{'k_max' if name == 'k' else 'max_width'}"
                         f"={bound}] (the static bound a sweep's members share).")


def build_sae(config, runs=None):
  validate.positive(config, "sae.max_width", "sae.k_max", "sae.aux_k", "sae.dead_tokens",
                    "sae.median_samples", "eval.samples")
  if config.sae.bottleneck not in sae_model.BOTTLENECKS:
    raise ValueError(f"config.sae.bottleneck must be one of {sae_model.BOTTLENECKS}, got "
                     f"{config.sae.bottleneck!r}.")
  _check_bounds(config)
  src = make_source(config.source, runs)
  sae = sae_of(config, src.dim)
  objective = sae_model.make_objective(sae, src.sample,
                                       median_samples=int(config.sae.median_samples))
  objective.info["source"] = src
  return Setup(config, src, sae, objective, make_run_optimizer(config, objective),
               resolve_hp(config, objective), sample=src.sample, sample_at=src.sample_at,
               init_keys=lambda rng: (rng, jax.random.fold_in(rng, 1)), finish=finish_run,
               finish_sweep=finish_sweep, log_keys=("mse", "l0", "dead"))


def eval_batch(setup):
  e = setup.config.eval
  return setup.dataset.sample(jax.random.key(int(e.get("seed", 4321))), int(e.samples))


def member_scores(setup, stacked_params, stacked_hp) -> list[dict]:
  """Scores of every member (stacked params and hp), one vmapped program, plus the
  disentanglement metrics of the codes for a source with factors."""
  sae, src = setup.model, setup.dataset
  x, extra = eval_batch(setup)
  truth = getattr(src, "true_features", None)
  fn = jax.jit(jax.vmap(lambda p, h: sae_model.scores(sae, p, h, x, truth)))
  out = jax.device_get(fn(stacked_params, stacked_hp))
  m = int(jax.tree.leaves(stacked_params)[0].shape[0])
  rows = [{k: float(v[i]) for k, v in out.items()} for i in range(m)]
  if extra is not None and bool(setup.config.eval.get("disentanglement", False)) and \
      np.issubdtype(np.asarray(extra).dtype, np.integer):
    codes = jax.jit(jax.vmap(lambda p, h: sae_model.encode(sae, p, x, h)))(stacked_params,
                                                                        stacked_hp)
    half = x.shape[0] // 2
    f = np.asarray(extra)
    for i, row in enumerate(rows):
      c = np.asarray(codes[i])
      used = c.std(0) > 0  # latents that vary (dead ones carry nothing)
      if used.sum() == 0:
        row["disentanglement_error"] = "no latent fires"
        continue
      c = c[:, used]
      try:
        r = lm.infomec(c, f)
        row.update(infom=r["infom"], infoc=r["infoc"], infoe=r["infoe"], mig=lm.mig(c, f))
        d = lm.dci(c[:half], f[:half], c[half:], f[half:], estimator="logistic")
        row.update(dci_disentanglement=d["disentanglement"], dci_completeness=d["completeness"])
      except ValueError as err:  # named, the other scores kept
        row["disentanglement_error"] = str(err)
  return rows


def _stack1(tree):
  return jax.tree.map(lambda a: jnp.asarray(a)[None], tree)


def finish_run(setup, params, workdir: str) -> None:
  row = member_scores(setup, _stack1(params), _stack1(setup.hp))[0]
  _write_json(os.path.join(workdir, "metrics.json"), row)
  print(" | ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float)))


def finish_sweep(setup, params, workdir: str, members) -> None:
  rows = member_scores(setup, params, members.hp)
  _write_json(os.path.join(workdir, "metrics.json"), {"members": rows})
  _merge_sweep_csv(os.path.join(workdir, "sweep.csv"), rows)
  save_frontier(rows, members, os.path.join(workdir, "sae_frontier.png"))


def _write_json(path, obj):
  records.write_json(path, obj, indent=1)


def save_frontier(rows, members, path: str) -> None:
  """L0 against FVU, one point per member; members that differ only in seed share a
  colour and are joined by their mean (the seeds' spread as error bars)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  groups = {}
  for row, lab in zip(rows, members.labels):
    key = tuple((k, v) for k, v in lab.items() if k != "seed")
    groups.setdefault(key, []).append(row)
  fig, ax = plt.subplots(figsize=(5.5, 4))
  for key, rs in sorted(groups.items()):
    l0 = np.array([r["l0"] for r in rs])
    fvu = np.array([r["fvu"] for r in rs])
    name = ", ".join(f"{k.removeprefix('hp.')}={v:g}" for k, v in key) or "run"
    ax.scatter(l0, fvu, s=14, alpha=0.5)
    ax.errorbar(l0.mean(), fvu.mean(), xerr=l0.std(), yerr=fvu.std(), fmt="o", label=name,
                capsize=2)
  ax.set_xlabel("L0 (active latents per sample)")
  ax.set_ylabel("fraction of variance unexplained")
  ax.set_yscale("log")
  ax.set_title("SAE sparsity / reconstruction frontier")
  if len(groups) <= 12:
    ax.legend(fontsize=7)
  fig.tight_layout()
  save_figure(fig, path, dpi=120)

