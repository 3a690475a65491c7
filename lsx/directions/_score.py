"""Traversal images, editing and scoring for any `Directions` (learned or closed form)."""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lsx import metrics as lm, records, viz
from lsx.directions._closed_form import factor_directions
from lsx.directions._param import Directions, make_directions, traverse, walk_path
from lsx.metrics.directions import ordinal_mask
from lsx.metrics.oracle import rotation_anisotropy
from lsx.train.sweep import take_member as take  # member i of a stacked tree


def traversal_images(directions: Directions, params, generate: Callable, anchors,
                     num_steps: int, step_size):
  """Images [K, N, 2*num_steps+1, H, W, C]: every direction traversed from every anchor."""
  return traversal_frames(linear_traversal(directions, num_steps, step_size), params,
                          generate, anchors)


def shift_pairs(directions: Directions, params, generate: Callable, anchors, rng,
                max_step, min_step):
  """(x' - x [K*N, H, W, C], labels [K*N]): each anchor moved along each direction by a
  random signed step with min_step <= |step| <= max_step (variation predictability)."""
  k, n = directions.num, anchors.shape[0]
  mag = jax.random.uniform(rng, (k, n), minval=min_step, maxval=max_step)
  eps = jnp.where(jax.random.bernoulli(jax.random.fold_in(rng, 1), 0.5, (k, n)), mag, -mag)
  z1 = jax.vmap(lambda kk, e: jax.vmap(
      lambda z, ee: directions.shift(params, z, kk, ee))(anchors, e))(jnp.arange(k), eps)
  x0 = generate(anchors)
  x1 = generate(z1.reshape(k * n, -1)).reshape((k, n) + x0.shape[1:])
  return (x1 - x0[None]).reshape((k * n,) + x0.shape[1:]), jnp.repeat(jnp.arange(k), n)


class Reading(NamedTuple):
  """What the oracle read from one set of images [..., H, W, C]."""
  factors: np.ndarray  # [..., F] factor indices
  distance: np.ndarray  # [...] the oracle's distance to the data manifold
  anisotropy: np.ndarray  # [...] `lsx.metrics.rotation_anisotropy` (is there an orientation)


_anisotropy = jax.jit(lambda x: jax.lax.map(
    lambda im: rotation_anisotropy(im[None])[0], x, batch_size=256))


def read_in_one_pass(oracle: Callable, image_sets) -> list[Reading]:
  """`oracle(images [n, H, W, C]) -> (factors [n, F], distance [n])` over several image
  arrays [..., H, W, C] in one call (a grid oracle renders its factor grid once, whatever
  the number of sets), and each image's rotation anisotropy (for `dataset_dfa`): a
  `Reading` per set, as numpy."""
  flat = [x.reshape((-1,) + x.shape[-3:]) for x in image_sets]
  images = jnp.concatenate(flat)
  f, d = oracle(images)
  f, d, a = np.asarray(f), np.asarray(d), np.asarray(_anisotropy(images))
  out, i = [], 0
  for x in image_sets:
    m = int(np.prod(x.shape[:-3]))
    lead = x.shape[:-3]
    out.append(Reading(f[i:i + m].reshape(lead + (-1,)), d[i:i + m].reshape(lead),
                       a[i:i + m].reshape(lead)))
    i += m
  return out


def active_latents(z, threshold: float = 0.1):
  """[d] bool: the latents whose std over the encoded data `z` [n, d] exceeds `threshold`
  times the largest (a VAE's collapsed dimensions are not). Traversals are measured in
  `z.std(0)[active_latents(z)].mean()`, so collapsed dimensions do not shorten them."""
  std = np.asarray(z).std(0)
  return std > threshold * std.max()


def score_directions(directions: Directions, params, generate: Callable, oracle: Callable,
                     anchors, vp_anchors, *, num_steps: int, step_size: float, dataset,
                     vp: bool = True, readable_orientation: bool = True) -> dict:
  """DFA (D, C, direction-MIG, coverage, off-manifold distance) of the traversals of every
  direction from `anchors`, read by `oracle(images) -> (factors, distance)` over the
  factors of `dataset` (`lsx.metrics.dataset_dfa`), and variation predictability on
  shifts of `vp_anchors`. Several sets: `score_direction_sets`; any traversal (flows,
  several decoders): `score_traversals`, which both call."""
  return score_direction_sets({"_": (directions, params)}, generate, oracle, anchors,
                              vp_anchors, num_steps=num_steps, step_size=step_size,
                              dataset=dataset, vp=vp,
                              readable_orientation=readable_orientation)["_"]


def score_direction_sets(sets: dict, generate: Callable, oracle: Callable, anchors,
                         vp_anchors, *, num_steps: int, step_size: float, dataset,
                         vp: bool = True, readable_orientation: bool = True) -> dict:
  """`score_directions` for {name: (directions, params)} on one generator, read in one
  oracle pass (`score_traversals` with linear traversals). Returns {name: scores}."""
  import types
  source = types.SimpleNamespace(generate=generate, dataset=dataset,
                                 z=jnp.concatenate([jnp.asarray(anchors), jnp.asarray(vp_anchors)]))
  stacked = {name: (linear_traversal(d, num_steps, step_size),
                    jax.tree.map(lambda a: jnp.asarray(a)[None], p), source)
             for name, (d, p) in sets.items()}
  scored, _ = score_traversals(stacked, oracle, anchors=len(anchors), vp_anchors=len(vp_anchors),
                               readable_orientation=readable_orientation, vp=vp)
  return {name: rows[0] for name, rows in scored.items()}


def make_edit(model, model_params, directions: Directions) -> Callable:
  """`edit(params, x [n, H, W, C], k, alpha) -> images`: encode x (encoder mean), move
  along direction k by alpha, decode. Pure; jit/vmap over k and alpha as needed."""
  def edit(params, x, k, alpha):
    if x.shape[1:] != tuple(model.image_shape):
      raise ValueError(f"edit: images of shape {x.shape[1:]} for a model of "
                       f"{tuple(model.image_shape)}.")
    z = model.represent(model_params, x)
    z1 = jax.vmap(lambda zz: directions.shift(params, zz, k, alpha))(z)
    return model.generate(model_params, z1)
  return edit


class Traversal(NamedTuple):
  """How a family moves codes, for scoring any traversal the same way.

  `paths(params, anchors [N, d]) -> [K, N, S, d]` (the anchor at the centre step),
  `pairs(params, generate, anchors, rng) -> (x' - x, labels)` for variation
  predictability, `steps` [S] the step coordinate of each path point, `ends(params, z
  [n, d], k [n], sign, scale) -> [n, d]`: the end of each code's full path along its
  direction k in direction `sign` (+1 / -1), a linear shift multiplied by `scale` (the
  evaluation protocols of lsx.directions.protocols); `scalable`: whether `scale` changes
  the paths (False for flows, whose paths are what their potentials make them)."""
  paths: Callable
  pairs: Callable
  steps: np.ndarray
  ends: Callable | None = None
  scalable: bool = True


def linear_traversal(directions: Directions, num_steps: int, step_size: float) -> Traversal:
  """Directions (global, conditional or orthogonal) walked `num_steps` steps of
  `step_size` each way; VP moves a code by a random signed step in [span/4, span]."""
  span = num_steps * step_size

  def paths(params, anchors):
    return jax.vmap(lambda kk: jax.vmap(
        lambda z: traverse(directions, params, z, kk, num_steps, step_size))(anchors))(
            jnp.arange(directions.num))

  def pairs(params, generate, anchors, rng):
    return shift_pairs(directions, params, generate, anchors, rng, span, span / 4)

  def ends(params, z, k, sign=1.0, scale=1.0):
    return jax.vmap(lambda zz, kk: walk_path(directions, params, zz, kk, num_steps,
                                             sign * scale * step_size)[-1])(z, k)

  return Traversal(paths, pairs, np.arange(-num_steps, num_steps + 1), ends)


def traversal_frames(traversal: Traversal, params, generate: Callable, anchors):
  """Decoded paths [K, N, S, H, W, C] of `traversal` from `anchors` [N, d]."""
  paths = traversal.paths(params, anchors)
  x = generate(paths.reshape(-1, paths.shape[-1]))
  return x.reshape(paths.shape[:3] + x.shape[1:])


SCORES = ("disentanglement", "completeness", "direction_mig", "coverage", "vp", "off_manifold")
CC_SCORES = ("disentanglement", "completeness", "coverage")


def score_traversals(sets: dict, oracle: Callable, *, anchors: int, vp_anchors: int,
                     readable_orientation: bool = True, null_permutations: int = 0,
                     vp: bool = True) -> tuple[dict, list]:
  """Score every traversal set with direction-factor attribution (and VP).

  `sets`: {name: (traversal, stacked params [M, ...], decoder)} with a `Decoder`
  (`lsx.directions.family`: its `generate`, encoded data `z`, `dataset`). Each member's
  paths from the decoder's first `anchors` codes are decoded, and every image of every
  set is read by `oracle` in one pass; VP pairs move the last `vp_anchors` codes (member
  i with rng key(11 + i)). With `null_permutations` the chance-corrected D, C and
  coverage are added as `*_cc`. Returns ({name: [scores of each member]}, readings)."""

  images = [jnp.stack([traversal_frames(trav, take(stacked, i), dec.generate,
                                        dec.z[:int(anchors)])
                        for i in range(jax.tree.leaves(stacked)[0].shape[0])])
            for trav, stacked, dec in sets.values()]  # [members, K, N, S, H, W, C] each
  readings = read_in_one_pass(oracle, images)
  out = {}
  for (name, (trav, stacked, dec)), reading, x in zip(sets.items(), readings, images):
    rows = []
    for i in range(x.shape[0]):
      aniso = reading.anisotropy[i] if readable_orientation else None
      res = lm.dataset_dfa(dec.dataset, reading.factors[i], trav.steps,
                           off_manifold=reading.distance[i], anisotropy=aniso)
      if null_permutations:
        cc = lm.dataset_dfa(dec.dataset, reading.factors[i], trav.steps, anisotropy=aniso,
                            null_permutations=int(null_permutations))
        res.update({f"{s}_cc": cc[s] for s in CC_SCORES} | {"matches_cc": cc["matches"]})
      if vp:
        rng = jax.random.key(11 + i)
        diffs, labels = trav.pairs(take(stacked, i), dec.generate, dec.z[-int(vp_anchors):], rng)
        res["vp"] = lm.variation_predictability(diffs, labels, jax.random.fold_in(rng, 2),
                                                num_classes=x.shape[1])["vp"]
      rows.append(res)
    out[name] = rows
  return out, readings


def reference_sets(decoder, num: int | None, random_seeds: int, *, span: float, num_steps: int,
                   supervised: bool = False, suffix: str = "") -> dict:
  """The rows every traversal method is compared with, as `score_traversals` sets:
  the decoder's latent axes (the `num` most active, or every active one when None),
  random directions (one member per seed, keys 100 + seed) and, with `supervised`, the
  factor directions fitted on the labels (`factor_directions`)."""

  z = np.asarray(decoder.z)
  d = z.shape[1]
  if num is None:
    axes = np.eye(d)[active_latents(z)]
  else:
    axes = np.eye(d)[np.argsort(-z.std(0))[:min(int(num), d)]]
  k = axes.shape[0]
  trav = lambda kk: linear_traversal(make_directions("global", kk, d), num_steps,
                                     span / num_steps)
  out = {f"latent axes{suffix}": (trav(k), {"d": jnp.asarray(axes, jnp.float32)[None]}, decoder)}
  if random_seeds:
    mats = jnp.stack([jax.random.normal(jax.random.key(100 + s), (k, d))
                      for s in range(int(random_seeds))])
    out["random"] = (trav(k), {"d": mats}, decoder)
  if supervised:
    u, _ = factor_directions(decoder.z, decoder.factors, decoder.dataset.factor_sizes,
                             ordinal_mask(decoder.dataset))
    out["factor directions (supervised)"] = (trav(u.shape[0]), {"d": u[None]}, decoder)
  return out


def summarize(rows: list[dict], keys=SCORES) -> dict:
  """{score: {"mean", "std"}} over members."""
  return {k: {"mean": float(np.mean([r[k] for r in rows])),
              "std": float(np.std([r[k] for r in rows]))} for k in keys if k in rows[0]}


def write_score_table(scored: dict, workdir: str, log=None, **info) -> dict:
  """The traversal scores of every row (`lsx.directions.score_traversals`: {name: [per
  member]}) as scores.json (per member, R matrices included, plus `info`), scores.csv
  and scores.png (mean and spread per row), and a printed table. Returns the summaries."""
  import csv
  import io
  import os

  log = log or viz.log
  first = next(iter(scored.values()))[0]
  cols = SCORES + tuple(k for k in ("disentanglement_cc", "completeness_cc", "coverage_cc",
                                    "ref_vp", "ref_change", "ref_scale", "manip_change",
                                    "manip_leakage") if k in first)
  table = {name: summarize(rows, cols) for name, rows in scored.items()}
  plain = lambda r: {k: (np.asarray(v).round(4).tolist() if k in ("R", "P") else
                         float(v) if k in cols else v)
                     for k, v in r.items()
                     if k in cols or k in ("R", "matches", "matches_cc", "manipulation")}
  records.write_json(os.path.join(workdir, "scores.json"),
                     {**info, "rows": {n: {"members": [plain(r) for r in rows],
                                           "summary": table[n]}
                                       for n, rows in scored.items()}}, indent=1)
  buf = io.StringIO()
  w = csv.writer(buf)
  w.writerow(["row", "members"] + [f"{k}_{s}" for k in cols for s in ("mean", "std")])
  for name, rows in scored.items():
    w.writerow([name, len(rows)] + [f"{table[name][k][s]:.4f}" for k in cols
                                    for s in ("mean", "std")])
  records.atomic_write(os.path.join(workdir, "scores.csv"), buf.getvalue())
  viz.save_score_plot(scored, table, os.path.join(workdir, "scores.png"))
  log(f"{'row':32s} " + " ".join(f"{k[:15]:>15s}" for k in cols))
  for name, t in table.items():
    log(f"{name:32s} " + " ".join(f"{t[k]['mean']:8.3f}±{t[k]['std']:.3f}"[:15].rjust(15)
                                  for k in cols))
  return table
