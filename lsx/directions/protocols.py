"""The papers' evaluation protocols for any `Traversal` (linear directions or flows).

- `vp_protocol`: variation predictability as the potential-flow paper's public code
  measures it (PDETraversal gen_pairs.py): codes z ~ N(0, I), each moved along its
  direction's full positive path (not a random signed step from encoded data, as
  `score_traversals`' VP), `pairs_per_direction` pairs per direction (the public code makes
  40,000 in all), the VP classifier trained on `train_fraction` = 10% of them and tested
  on the rest. lsx's classifier reads x' - x (the public VP network reads the pair).
- `match_scale`: the shift multiplier that gives a method's paths a target mean image
  change E||G(z') - G(z)|| (bisection in log scale), so methods are compared at the same
  amount of change.
- `manipulation`: for each factor, the direction of a method that changes it most (read
  by an oracle from the images at both ends of each path) with the target factor's change
  in each sign and the leakage into the other factors, in units of each factor's range
  (a circular factor's in half its period).

Pure functions of the traversal's parameters; `generate` runs in chunks of `chunk` codes.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lsx.directions._score import score_traversals, take, Traversal
from lsx.metrics import variation_predictability
from lsx.metrics.directions import factor_periods, ordinal_mask


def _check(traversal: Traversal):
  if traversal.ends is None:
    raise ValueError("this Traversal has no `ends` (the end of a full path); build it with "
                     "lsx.directions.linear_traversal or lsx.flows.flow_traversal.")


@functools.cache
def _jitted(fn: Callable) -> Callable:
  return jax.jit(fn)


def _generate(generate: Callable, z, chunk: int):
  fn = _jitted(generate)
  return jnp.concatenate([fn(z[i:i + chunk]) for i in range(0, z.shape[0], chunk)])


def path_ends(traversal: Traversal, params, z, k, *, sign: float = 1.0, scale: float = 1.0,
              chunk: int = 1024):
  """The ends [n, d] of each code's full path along its direction k [n] (one compiled
  program per traversal: params, sign and scale are traced)."""
  _check(traversal)
  fn = _jitted(traversal.ends)
  sign, scale = jnp.float32(sign), jnp.float32(scale)
  return jnp.concatenate([fn(params, z[i:i + chunk], k[i:i + chunk], sign, scale)
                          for i in range(0, z.shape[0], chunk)])


def image_change(traversal: Traversal, params, generate: Callable, z, k, *, scale: float = 1.0,
                 chunk: int = 1024, x0=None):
  """||G(z') - G(z)|| [n] for each code z moved to the end of its direction k's path
  (`x0`: G(z) when already rendered)."""
  z1 = path_ends(traversal, params, z, k, scale=scale, chunk=chunk)
  x0 = _generate(generate, z, chunk) if x0 is None else x0
  x1 = _generate(generate, z1, chunk)
  return jnp.sqrt(jnp.sum((x1 - x0).reshape(z.shape[0], -1) ** 2, -1))


def _codes(rng, num_directions: int, per_direction: int, dim: int):
  z = jax.random.normal(rng, (num_directions * per_direction, dim))
  return z, jnp.repeat(jnp.arange(num_directions), per_direction)


def match_scale(traversal: Traversal, params, generate: Callable, dim: int, target: float, rng,
                *, num_directions: int, probes_per_direction: int = 32, iters: int = 30,
                bounds=(1e-3, 1e3), chunk: int = 1024) -> float:
  """The scale s for which the mean image change of the paths' ends is `target`, by
  bisection of log s within `bounds` on fixed codes z ~ N(0, I)."""
  if not target > 0:
    raise ValueError(f"target image change must be > 0, got {target}.")
  z, k = _codes(rng, num_directions, probes_per_direction, dim)
  x0 = _generate(generate, z, chunk)  # the codes' own images: rendered once, not per step
  mean_change = lambda s: float(jnp.mean(image_change(traversal, params, generate, z, k,
                                                      scale=s, chunk=chunk, x0=x0)))
  lo, hi = np.log(bounds[0]), np.log(bounds[1])
  c_lo, c_hi = mean_change(np.exp(lo)), mean_change(np.exp(hi))
  if not c_lo <= target <= c_hi:
    raise ValueError(f"no scale in {bounds} gives a mean image change of {target:.4g} "
                     f"(the range reaches {c_lo:.4g} .. {c_hi:.4g}).")
  for _ in range(int(iters)):
    mid = 0.5 * (lo + hi)
    if mean_change(np.exp(mid)) < target:
      lo = mid
    else:
      hi = mid
  return float(np.exp(0.5 * (lo + hi)))


def vp_protocol(traversal: Traversal, params, generate: Callable, dim: int, rng, *,
                num_directions: int, pairs_per_direction: int = 1000, train_fraction: float = 0.1,
                scale: float = 1.0, chunk: int = 1024, **vp_kwargs) -> dict:
  """VP on (G(z), G(end of z's path)) pairs from z ~ N(0, I): `pairs_per_direction` per
  direction, the classifier trained on `train_fraction` of them (module doc). Returns
  {"vp", "chance", "num_train", "num_test", "change" (mean ||x' - x||), "scale"}."""
  if int(pairs_per_direction) < 1:
    raise ValueError(f"pairs_per_direction must be >= 1, got {pairs_per_direction}.")
  k_z, k_vp = jax.random.split(rng)
  z, labels = _codes(k_z, int(num_directions), int(pairs_per_direction), int(dim))
  z1 = path_ends(traversal, params, z, labels, scale=scale, chunk=chunk)
  diffs = _generate(generate, z1, chunk) - _generate(generate, z, chunk)
  out = variation_predictability(diffs, labels, k_vp, num_classes=int(num_directions),
                                 train_fraction=float(train_fraction), **vp_kwargs)
  out["change"] = float(jnp.mean(jnp.sqrt(jnp.sum(diffs.reshape(diffs.shape[0], -1) ** 2, -1))))
  out["scale"] = float(scale)
  return out


def factor_change(dataset, before, after) -> np.ndarray:
  """|after - before| [..., F] of read factor indices in units of each factor's range:
  (size - 1) for an ordinal factor, half the period for a circular one (the shorter way
  round)."""
  before, after = np.asarray(before, np.float64), np.asarray(after, np.float64)
  sizes = np.asarray(dataset.factor_sizes, np.float64)
  period = np.asarray(factor_periods(dataset, before), np.float64)
  d = np.abs(after - before)
  circ = period > 0
  d = np.where(circ, np.minimum(d, np.where(circ, period, 1.0) - d), d)
  unit = np.where(circ, np.maximum(period / 2, 1.0), np.maximum(sizes - 1, 1.0))
  return d / unit


def manipulation(traversal: Traversal, params, generate: Callable, oracle: Callable, dataset,
                 anchors, *, num_directions: int, scale: float = 1.0, ordinal_only: bool = True,
                 chunk: int = 1024, select: int = 0) -> dict:
  """For each factor, the direction that changes it most and by how much, in both signs,
  and how much it changes the other factors (module doc). `anchors` [N, d]; `oracle`
  (lsx.metrics.make_oracle) reads factor indices from images. `select` > 0: the best
  direction is chosen on the first `select` anchors and its changes are measured on the
  other N - select (held out, so the choice does not inflate the score); 0: both on all
  N (the papers' protocol). Returns {"factors": {name: {"direction", "change_pos",
  "change_neg", "leakage"}}, "change", "leakage"} (the last two: means over the factors)."""
  if not 0 <= int(select) < anchors.shape[0]:
    raise ValueError(f"select must be in [0, {anchors.shape[0]}) anchors (the rest score the "
                     f"chosen direction), got {select}.")
  anchors = jnp.asarray(anchors, jnp.float32)
  n, kdir = anchors.shape[0], int(num_directions)
  z = jnp.tile(anchors, (kdir, 1))
  k = jnp.repeat(jnp.arange(kdir), n)
  ends = [path_ends(traversal, params, z, k, sign=s, scale=scale, chunk=chunk) for s in (1.0, -1.0)]
  images = [_generate(generate, anchors, chunk)] + [_generate(generate, e, chunk) for e in ends]
  # one oracle pass over all three image sets (a grid oracle renders its grid once per call)
  read = np.asarray(oracle(jnp.concatenate(images))[0])
  f0, fp, fn = np.split(read, np.cumsum([x.shape[0] for x in images])[:-1])
  f0 = np.tile(f0, (kdir, 1))
  per_anchor = np.stack([factor_change(dataset, f0, fp), factor_change(dataset, f0, fn)])
  per_anchor = per_anchor.reshape(2, kdir, n, -1)  # [sign, K, N, F]
  keep = np.asarray(ordinal_mask(dataset)) if ordinal_only else np.ones(per_anchor.shape[-1], bool)
  names = [nm for nm, kp in zip(dataset.factor_names, keep) if kp]
  per_anchor = per_anchor[..., keep]
  s = int(select)
  choose = per_anchor[:, :, :s].mean(2).mean(0) if s else None  # [K, F] on the held-out picks
  change = per_anchor[:, :, s:].mean(2)  # [sign, K, F]
  both = change.mean(0)  # [K, F]
  choose = both if choose is None else choose
  rows = {}
  for j, name in enumerate(names):
    best = int(np.argmax(choose[:, j]))
    others = [g for g in range(len(names)) if g != j]
    rows[name] = {"direction": best, "change_pos": float(change[0, best, j]),
                  "change_neg": float(change[1, best, j]),
                  "leakage": float(both[best, others].mean()) if others else 0.0}
  return {"factors": rows,
          "change": float(np.mean([r["change_pos"] + r["change_neg"] for r in rows.values()]) / 2),
          "leakage": float(np.mean([r["leakage"] for r in rows.values()]))}


def protocol_scores(sets: dict, oracle: Callable, *, rng, pairs_per_direction: int = 1000,
                    train_fraction: float = 0.1, manipulation_anchors: int = 64,
                    target_change: float | None = None, vp: bool = True, anchor_start: int = 0,
                    select_anchors: int = 0, **vp_kwargs) -> dict:
  """The protocols for every member of every set of `score_traversals`' form ({name:
  (traversal, stacked params [M, ...], Decoder)}), at matched image change: the target is
  `target_change`, else the mean image change of the first set's first member at scale 1
  (e.g. the flows); every scalable set's shift (linear directions) is scaled to it
  (`match_scale`), a set without a scale (flows) keeps its own paths. The manipulation
  anchors are the decoder's codes z[anchor_start : anchor_start + manipulation_anchors];
  `vp=False` skips VP; `select_anchors` of them choose each factor's direction and the rest
  score it (`manipulation`'s `select`). Returns {name: [{"ref_vp", "ref_change", "ref_scale",
  "manip_change", "manip_leakage", "manipulation": {factor: row}} per member]} (without
  "ref_vp" and "ref_change" when `vp` is False)."""
  out, target = {}, target_change
  k_probe, k_vp = jax.random.split(rng)
  for si, (name, (trav, stacked, dec)) in enumerate(sets.items()):
    rows = []
    members = jax.tree.leaves(stacked)[0].shape[0]
    num, dim = int(trav.paths(take(stacked, 0), dec.z[:1]).shape[0]), int(dec.z.shape[1])
    for i in range(members):
      params = take(stacked, i)
      if target is None:  # the first set's first member at scale 1 sets the target
        z, k = _codes(k_probe, num, 32, dim)
        target = float(jnp.mean(image_change(trav, params, dec.generate, z, k)))
        scale = 1.0
      elif (si == 0 and target_change is None) or not trav.scalable:
        scale = 1.0  # the reference set's own members, and flows: their own paths
      else:
        scale = match_scale(trav, params, dec.generate, dim, target, k_probe, num_directions=num)
      row = {"ref_scale": scale}
      if vp:
        res = vp_protocol(trav, params, dec.generate, dim,
                          jax.random.fold_in(k_vp, 1000 * si + i), num_directions=num,
                          pairs_per_direction=pairs_per_direction,
                          train_fraction=train_fraction, scale=scale, **vp_kwargs)
        row.update(ref_vp=res["vp"], ref_change=res["change"])
      start = int(anchor_start)
      man = manipulation(trav, params, dec.generate, oracle, dec.dataset,
                         dec.z[start:start + int(manipulation_anchors)], num_directions=num,
                         scale=scale, select=int(select_anchors))
      row.update(manip_change=man["change"], manip_leakage=man["leakage"],
                 manipulation=man["factors"])
      rows.append(row)
    out[name] = rows
  return out


def check_protocol(eval_config) -> str:
  """`eval.protocol` ('lsx' or 'reference') and `eval.vp_pairs` (>= 1), checked."""
  protocol = eval_config.get("protocol", "lsx")
  if protocol not in ("lsx", "reference"):
    raise ValueError(f"config.eval.protocol must be 'lsx' or 'reference', got {protocol!r}.")
  pairs = eval_config.get("vp_pairs", 1000)
  if isinstance(pairs, bool) or not isinstance(pairs, int) or pairs < 1:
    raise ValueError(f"config.eval.vp_pairs must be an integer >= 1, got {pairs!r}.")
  return protocol


def add_protocol_scores(scored: dict, sets: dict, oracle: Callable, eval_config) -> dict:
  """With `eval_config.protocol == 'reference'`, `protocol_scores` of `sets` merged into
  the rows of `scored` (score_traversals' output; `eval_config.vp_pairs` pairs per
  direction, `eval_config.anchors` manipulation anchors); else `scored` unchanged."""
  if check_protocol(eval_config) == "reference":
    prot = protocol_scores(sets, oracle, rng=jax.random.key(4321),
                           pairs_per_direction=int(eval_config.get("vp_pairs", 1000)),
                           manipulation_anchors=int(eval_config.anchors))
    for name, rows in prot.items():
      for row, extra in zip(scored[name], rows):
        row.update(extra)
  return scored


def evaluate_sets(sets: dict, oracle: Callable, eval_config) -> tuple[dict, list]:
  """Every traversal set scored as `eval_config` says: `score_traversals` (DFA, VP; the
  chance-corrected scores with eval.null_permutations > 0) and, with
  eval.protocol='reference', the papers' protocols (`add_protocol_scores`) merged into the
  rows. Returns ({name: [scores of each member]}, the oracle's readings)."""
  e = eval_config
  scored, readings = score_traversals(
      sets, oracle, anchors=int(e.anchors), vp_anchors=int(e.vp_anchors),
      readable_orientation=bool(e.get("readable_orientation", True)),
      null_permutations=int(e.get("null_permutations", 0)))
  return add_protocol_scores(scored, sets, oracle, e), readings
