"""Comparing the latent spaces of a sweep's members (or several runs), as one program.

`encode_members` encodes the same samples with every member (stacked parameters, one
vmapped program); `similarity_table` compares every pair of members on absolute and on
relative representations (`lsx.similarity`) for several anchor draws; `stitching_table`
decodes every member's codes with every other member's decoder — absolute, through a
Procrustes translation fitted on anchors, and relative (decoders trained on relative
representations: the 'relative_decoder' family). See docs/similarity.md.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from lsx import data as lsx_data, models, similarity as ls, viz
from lsx.models.objectives import neg_log_likelihood
from lsx.objective import Objective
from lsx.train import validate
from lsx.train.config import run_config
from lsx.train.setup import make_run_optimizer, resolve_hp, Setup

MEASURES = ("jaccard@10", "mrr", "cosine", "linear_cka")


def encode_members(model, stacked_params, images, batch: int = 1000):
  """Codes [M, n, d] of `images` [n, ...] under every member of `stacked_params`."""
  enc = jax.jit(jax.vmap(model.represent, in_axes=(0, None)))
  return jnp.concatenate([enc(stacked_params, images[i:i + batch])
                          for i in range(0, images.shape[0], batch)], axis=1)


def member_stats(x, retrieval: int, k: int = 10) -> dict:
  """What every pair measure needs of one member's codes x [n, d], computed once per
  member: unit codes, each retrieval sample's k nearest neighbours, centred codes and
  the norm of their Gram matrix (CKA)."""
  xc = x - x.mean(0)
  return {"unit": ls._unit(x), "nn": ls._neighbours(x[:retrieval], k), "xc": xc,
          "gram": jnp.linalg.norm(xc.T @ xc)}


def pair_measures(a: dict, b: dict, retrieval: int, k: int = 10):
  """[len(MEASURES)] for two members' `member_stats`: k-NN Jaccard, MRR (on the first
  `retrieval` samples), matched cosine and linear CKA (equal to `lsx.similarity`'s)."""
  inter = jnp.sum(jnp.any(a["nn"][:, :, None] == b["nn"][:, None, :], -1), -1)
  jac = jnp.mean(inter / (2 * k - inter))
  s = a["unit"][:retrieval] @ b["unit"][:retrieval].T
  diag = jnp.diagonal(s)[:, None]
  mrr = jnp.mean(1.0 / (1 + jnp.sum((s > diag) & ~jnp.eye(s.shape[0], dtype=bool), 1)))
  cos = jnp.mean(jnp.sum(a["unit"] * b["unit"], -1))
  cka = jnp.sum((b["xc"].T @ a["xc"]) ** 2) / jnp.maximum(a["gram"] * b["gram"], 1e-8)
  return jnp.stack([jac, mrr, cos, cka])


def relative_member_stats(x, anchors, retrieval: int, k: int = 10) -> dict:
  """`member_stats` of the relative representation R = unit(x) unit(anchors)^T [n, A],
  computed from its factors without forming it. R has rank <= d (the code width), so
  with U = unit(x) [n, d], B = unit(anchors) [A, d] and G = B^T B [d, d]: unit rows of R
  are D U B^T (D = 1 / ||R_i|| = 1 / sqrt(u_i^T G u_i)), their cosines D U G U^T D, and
  the centred R is (U - mean U) B^T. Every pair measure then costs O(n d^2) or O(r^2 d)
  instead of O(n A^2) or O(r^2 A): exact, not an approximation (tested equal to the dense
  form)."""
  u, b = ls._unit(x), ls._unit(anchors)
  g = b.T @ b
  norm = jnp.sqrt(jnp.maximum(jnp.sum((u @ g) * u, -1), 0.0))
  un = u / jnp.maximum(norm, ls._EPS)[:, None]  # unit(R) = un @ b.T
  ur = un[:retrieval]
  s = ur @ g @ ur.T - 3.0 * jnp.eye(ur.shape[0])  # never oneself
  uc = u - u.mean(0)
  cg = (uc.T @ uc) @ g
  return {"un": un, "b": b, "g": g, "nn": jax.lax.top_k(s, k)[1], "uc": uc,
          "gram": jnp.sqrt(jnp.maximum(jnp.sum(cg * cg.T), 0.0))}


def relative_pair_measures(a: dict, b: dict, retrieval: int, k: int = 10):
  """`pair_measures` of two members' relative representations from
  `relative_member_stats` (same anchors' indices, each in its own space)."""
  inter = jnp.sum(jnp.any(a["nn"][:, :, None] == b["nn"][:, None, :], -1), -1)
  jac = jnp.mean(inter / (2 * k - inter))
  cross = a["b"].T @ b["b"]  # [d_a, d_b]: unit(R_a) unit(R_b)^T = un_a cross un_b^T
  left = a["un"] @ cross
  s = left[:retrieval] @ b["un"][:retrieval].T
  diag = jnp.diagonal(s)[:, None]
  mrr = jnp.mean(1.0 / (1 + jnp.sum((s > diag) & ~jnp.eye(s.shape[0], dtype=bool), 1)))
  cos = jnp.mean(jnp.sum(left * b["un"], -1))
  m = b["uc"].T @ a["uc"]  # [d_b, d_a]; ||R_bc^T R_ac||_F^2 = tr(M^T G_b M G_a)
  num = jnp.sum((m.T @ b["g"] @ m) * a["g"])
  cka = num / jnp.maximum(a["gram"] * b["gram"], 1e-8)
  return jnp.stack([jac, mrr, cos, cka])


def relative_pair_table(codes, anchor_idx, retrieval: int):
  """`pair_table` of the relative representations of codes [M, n, d] on the anchors
  codes[:, anchor_idx], from their factors (`relative_member_stats`): one program."""
  stats = jax.vmap(lambda x: relative_member_stats(x, x[anchor_idx], retrieval))(codes)
  row = lambda a: jax.vmap(lambda b: relative_pair_measures(a, b, retrieval))(stats)
  return jax.lax.map(row, stats)


def pair_table(codes, retrieval: int):
  """[M, M, len(MEASURES)] for codes [M, n, d]: the per-member statistics once (vmap),
  then every pair from them (lax.map over i, vmap over j): one program."""
  stats = jax.vmap(lambda x: member_stats(x, retrieval))(codes)
  row = lambda a: jax.vmap(lambda b: pair_measures(a, b, retrieval))(stats)
  return jax.lax.map(row, stats)


def similarity_table(codes, *, num_anchors: int = 300, repetitions: int = 3,
                     anchor_method: str = "random", retrieval: int = 2000, seed: int = 0):
  """{"absolute": [M, M, measures], "relative": [reps, M, M, measures]} for codes
  [M, n, d]: every pair of members compared on the same samples (k-NN Jaccard and MRR on
  the first `retrieval` samples, which need an n x n similarity; cosine and CKA on all).
  Relative representations use `num_anchors` anchors drawn `repetitions` times (the
  same samples for every member)."""
  codes = jnp.asarray(codes)
  m, n, _ = codes.shape
  if num_anchors > n:
    raise ValueError(f"num_anchors={num_anchors} exceeds the {n} samples.")
  retrieval = min(retrieval, n)
  table = jax.jit(lambda s: pair_table(s, retrieval))
  rel_table = jax.jit(lambda s, idx: relative_pair_table(s, idx, retrieval))
  absolute = np.asarray(table(codes))
  rel = []
  for r in range(repetitions):
    idx = ls.choose_anchors(num_anchors, anchor_method, n=n, rng=jax.random.key(seed + r),
                            space=codes[0])
    rel.append(np.asarray(rel_table(codes, idx)))
  return {"absolute": absolute, "relative": np.stack(rel)}


def off_diagonal_mean(mat):
  """Mean over i != j of [M, M, ...] (the cross-member similarity)."""
  mat = np.asarray(mat)
  m = mat.shape[0]
  mask = ~np.eye(m, dtype=bool)
  return mat[mask].mean(0)


def stitch_errors(model, abs_params, images, anchor_images, *, rel_decode=None,
                  rel_params=None, absolute: bool = True):
  """Per-pixel reconstruction error (Bernoulli NLL / pixels) [M, M] of `images` encoded by
  member i and decoded by member j: 'absolute' (the codes as they are), 'translation'
  (the codes mapped by a Procrustes translation fitted on the anchors' codes of i and j)
  and, given relative decoders `rel_decode(params_j, relative codes)`, 'relative' (member
  i's relative representation w.r.t. the anchors, decoded by j's relative decoder)."""
  codes = encode_members(model, abs_params, images)  # [M, n, d]
  anchors = encode_members(model, abs_params, anchor_images)  # [M, A, d]
  npix = float(np.prod(images.shape[1:]))
  err = lambda logits: neg_log_likelihood(logits, images).mean() / npix
  every_pair = lambda f, a, b: jax.jit(jax.vmap(lambda ai: jax.vmap(lambda bj: f(ai, bj))(b)))(a)
  out = {}
  if absolute:  # `model` decodes absolute codes (not a relative autoencoder)
    out["absolute"] = every_pair(lambda zi, pj: err(model.decode(pj, zi)), codes, abs_params)

    def translated(i_side, j_side):
      (zi, ai), (aj, pj) = i_side, j_side
      return err(model.decode(pj, ls.translate(ls.fit_procrustes(ai, aj), zi)))
    out["translation"] = every_pair(translated, (codes, anchors), (anchors, abs_params))
  if rel_decode is not None:
    rel = jax.vmap(ls.relative_projection)(codes, anchors)
    out["relative"] = every_pair(lambda ri, pj: err(rel_decode(pj, ri)), rel, rel_params)
  return {k: np.asarray(v) for k, v in out.items()}


def _relative_objective(name, model, rel_model, anchor_images, *, frozen: bool):
  """Reconstruction through the relative representation: encoder (`model`'s encoder and
  latent head) -> cosines to the anchors' codes under the same encoder -> `rel_model`'s
  decoder. `frozen`: the encoder is held fixed (stop_gradient; a post-hoc decoder)."""
  enc_keys = ("encoder", "latent")

  def init(rng):
    p = model.init(rng)
    return {**{k: p[k] for k in enc_keys if k in p}, "decoder": rel_model.init(rng)["decoder"]}

  def rel_codes(params, x):
    enc = {k: params[k] for k in enc_keys if k in params}
    enc = jax.lax.stop_gradient(enc) if frozen else enc
    return ls.relative_projection(model.represent(enc, x), model.represent(enc, anchor_images))

  rel_decode = lambda params, r: rel_model.decode({"decoder": params["decoder"]}, r)

  def loss(params, x, rng, hp):
    del rng, hp
    rec = neg_log_likelihood(rel_decode(params, rel_codes(params, x)), x).mean()
    return rec, {"rec": rec}

  return Objective(name, init, loss, {}, info={"rel_decode": rel_decode,
                                               "anchor_images": anchor_images,
                                               "rel_codes": rel_codes})


def _rel_model(ds, num, m):
  """A deterministic autoencoder of config.model `m` with a `num`-wide code."""
  return models.make_autoencoder(ds.image_shape, num, m.arch, "deterministic",
                                 m.get("conv_impl", "gemm"), tuple(m.get("hidden", ())) or None)


def build_relative_decoder(config, runs=None):
  """The 'relative_decoder' family: for every member of the run in
  config.source.workdir, a decoder that reads the member's relative representation (its
  codes' cosines to the codes of `relative.num_anchors` anchor images drawn with
  `relative.anchor_seed`), trained with the member's encoder frozen. A fresh run's
  encoders come from `source_params` (passed to `lsx.train.train` as `init_params`)."""
  validate.positive(config, "relative.num_anchors")
  src, _ = runs.load_run(config.source.workdir)
  model, ds = src.model, src.dataset
  num = int(config.relative.num_anchors)
  anchor_images = ds.sample(jax.random.key(int(config.relative.anchor_seed)), num)[0]
  rel_model = _rel_model(ds, num, src.config.model)
  objective = _relative_objective("relative_decoder", model, rel_model, anchor_images,
                                  frozen=True)
  return Setup(config, ds, rel_model, objective, make_run_optimizer(config, objective),
               resolve_hp(config, objective), log_keys=("rec",))


def build_relative_ae(config, runs=None):
  """The 'relative_ae' family: an autoencoder whose decoder reads only the relative
  representation of its code (cosines to the codes of `relative.num_anchors` fixed anchor
  images under the same encoder), trained end to end as in Moschella et al. (ICLR 2023;
  relreps' `rel_ae` with l2-normalized similarities as values). `config.data`/`model` as
  for an autoencoder; the run's `model` is the encoder's (represent = absolute codes)."""
  validate.positive(config, "relative.num_anchors", "data.size", "model.latent_dim")
  d, m = config.data, config.model
  ds = lsx_data.get_dataset(d.name, **{k: v for k, v in d.items()
                                       if k != "name" and v not in ("", None)})
  num = int(config.relative.num_anchors)
  model = _rel_model(ds, int(m.latent_dim), m)  # the encoder side: a d-wide code
  anchor_images = ds.sample(jax.random.key(int(config.relative.anchor_seed)), num)[0]
  objective = _relative_objective("relative_ae", model, _rel_model(ds, num, m),
                                  anchor_images, frozen=False)
  return Setup(config, ds, model, objective, make_run_optimizer(config, objective),
               resolve_hp(config, objective), log_keys=("rec",))


def source_params(setup, stacked_source_params):
  """Stacked initial params of a relative-decoder run: the source members' encoders
  (frozen; stacked [M, ...]) and fresh relative decoders (member i from key(i))."""
  members = jax.tree.leaves(stacked_source_params)[0].shape[0]
  fresh = jax.vmap(lambda s: setup.objective.init(jax.random.key(s)))(jnp.arange(members))
  return {**fresh, **{k: stacked_source_params[k] for k in fresh if k != "decoder"}}


def write_similarity(table: dict, workdir: str, log=print) -> dict:
  """similarity.csv (every measure of every pair, space and anchor draw), similarity.png
  (member x member matrices, absolute and relative side by side); returns the
  cross-member means {"absolute": [...], "relative": [...]} per measure."""
  rows = [{"space": space, "repetition": r, "i": i, "j": j,
           **{m: float(v[i, j, k]) for k, m in enumerate(MEASURES)}}
          for space, reps in (("absolute", table["absolute"][None]), ("relative", table["relative"]))
          for r, v in enumerate(reps) for i in range(v.shape[0]) for j in range(v.shape[1])]
  _write_csv(os.path.join(workdir, "similarity.csv"), rows)
  mean_rel = table["relative"].mean(0)
  viz.save_matrices({f"{m} ({s})": (table["absolute"] if s == "absolute" else mean_rel)[..., k]
                     for k, m in enumerate(MEASURES) for s in ("absolute", "relative")},
                    os.path.join(workdir, "similarity.png"), cols=2)
  ab = off_diagonal_mean(table["absolute"])
  rel = np.mean([off_diagonal_mean(r) for r in table["relative"]], 0)
  for k, m in enumerate(MEASURES):
    log(f"cross-member {m:11s} absolute {ab[k]:.3f}  relative {rel[k]:.3f}  "
        f"gap {rel[k] - ab[k]:+.3f}")
  return {"absolute": ab.tolist(), "relative": rel.tolist()}


def relative_decoder_config(source_workdir: str, members: int, *, num_anchors: int = 300,
                            steps: int = 2000, strategy: str = "auto"):
  """The config of a relative-decoder run over the `members` members of a source run
  (written in source_workdir/relative)."""
  c = run_config()
  c.family, c.seed = "relative_decoder", 0
  c.workdir = os.path.join(source_workdir, "relative")
  c.source = dict(workdir=source_workdir)
  c.relative = dict(num_anchors=int(num_anchors), anchor_seed=1234)
  c.hp = {"lr": 1e-3}
  c.train.update(steps=int(steps), batch_size=64)
  c.sweep.seed = tuple(range(members)) if members > 1 else ()
  c.sweep_strategy = strategy
  return c


def write_stitching(errs: dict, workdir: str, log=print) -> None:
  """stitching.csv / stitching.png: the error of every (encoder i, decoder j) pair."""
  _write_csv(os.path.join(workdir, "stitching.csv"),
             [{"kind": k, "i": i, "j": j, "error": float(v[i, j])}
              for k, v in errs.items() for i in range(v.shape[0]) for j in range(v.shape[1])])
  viz.save_matrices({f"{k} stitching": v for k, v in errs.items()},
                    os.path.join(workdir, "stitching.png"), cols=3)
  for k, v in errs.items():
    same, cross = np.diag(v).mean(), off_diagonal_mean(v)
    log(f"{k:11s} stitching error: i = j {same:.4f}, i != j {cross:.4f} (x{cross / same:.2f})")


def _write_csv(path, rows):
  import csv
  with open(path, "w", newline="") as f:
    w = csv.DictWriter(f, list(rows[0]))
    w.writeheader()
    w.writerows(rows)

