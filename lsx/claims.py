"""The direction and flow papers' own claims, measured over seeds (experiments.claims).

A claim is one row of `docs/results/claims.json`:

  {"claim", "dataset", "method", "value", "baseline", "baseline_value", "met", "seeds",
   "command"}

`value` and `baseline_value` are means over the seeds; each row also carries their spread
(`value_std`, `baseline_std`: sample standard deviations, ddof = 1), the per-seed numbers,
`per_baseline` ({baseline: {"mean", "std", "verdict"}} for every baseline its rule tests),
the `rule` that decides `met` from `per_baseline`, the training budget it was measured at
and `differs`: what still differs from the paper's setup. The rules are tested against
each baseline, decided on the seeds' spread so that a difference inside the noise of
three runs does not count, and can be recomputed from the row:

- `exceeds(a, b)`: mean(a) - mean(b) > std(a) + std(b) ("above by more than the seeds'
  spread": the two mean +- std intervals do not touch). A claim "above the baselines" is
  met when a exceeds each baseline.
- `non_inferior(a, b)`: mean(a) - mean(b) >= -(std(a) + std(b)) (not below b by more than
  the spread). A claim "comparable to the baselines" is met when a is non-inferior to each.
- A factor that no method moves above a stated resolution floor (`informative`) says
  nothing about the claim: it is listed as uninformative and counts neither way.

`per_seed_protocols` runs the papers' protocols (`lsx.directions.protocols`) for one seed at
a time: member i of every set against member i of the first set, whose mean image change
every scalable set is matched to.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import numpy as np
from lsx.directions.protocols import protocol_scores
from lsx.records import write_json

ROW_KEYS = ("claim", "dataset", "method", "value", "baseline", "baseline_value", "met", "seeds",
            "command")


def spread(values: Sequence[float]) -> dict:
  """{"mean", "std" (ddof = 1; 0 for one value), "per_seed"} of per-seed numbers."""
  v = np.asarray(values, np.float64)
  if v.ndim != 1 or v.size == 0:
    raise ValueError(f"spread needs a non-empty list of per-seed numbers, got shape {v.shape}.")
  if not np.all(np.isfinite(v)):
    raise ValueError(f"per-seed numbers must be finite, got {v.tolist()}.")
  return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
          "per_seed": [float(x) for x in v]}


def exceeds(a: dict, b: dict) -> bool:
  """mean(a) - mean(b) > std(a) + std(b) (module doc); `a`, `b` from `spread`."""
  return bool(a["mean"] - b["mean"] > a["std"] + b["std"])


def non_inferior(a: dict, b: dict) -> bool:
  """mean(a) - mean(b) >= -(std(a) + std(b)) (module doc); `a`, `b` from `spread`."""
  return bool(a["mean"] - b["mean"] >= -(a["std"] + b["std"]))


RULES = {"exceeds": exceeds, "non_inferior": non_inferior}
RULE_TEXT = {"exceeds": "mean - baseline mean > std + baseline std, against each baseline",
             "non_inferior": "mean - baseline mean >= -(std + baseline std), against each "
                             "baseline"}


def per_baseline(a: dict, baselines: dict, rule: str) -> dict:
  """{baseline: {"mean", "std", "verdict"}}: `rule` ('exceeds' | 'non_inferior') of `a`
  against each of `baselines` ({name: spread})."""
  if rule not in RULES:
    raise ValueError(f"rule must be one of {sorted(RULES)}, got {rule!r}.")
  if not baselines:
    raise ValueError("a claim's rule needs at least one baseline.")
  return {n: {"mean": b["mean"], "std": b["std"], "verdict": RULES[rule](a, b)}
          for n, b in baselines.items()}


def all_hold(verdicts: dict) -> bool:
  """True when every baseline's verdict in `per_baseline`'s output holds."""
  return bool(verdicts) and all(v["verdict"] for v in verdicts.values())


def comparable(a: dict, refs: Sequence[dict]) -> bool:
  """`a` non-inferior to each of `refs` (module doc)."""
  if not refs:
    raise ValueError("comparable needs at least one reference.")
  return all(non_inferior(a, r) for r in refs)


def informative(changes: dict, floor: float) -> bool:
  """Whether some method moves a factor: the largest mean change in `changes` ({method:
  spread}) is above `floor` (the protocol's resolution floor, module doc)."""
  return bool(max(c["mean"] for c in changes.values()) > float(floor))


def rejudge(row: dict, floor: float = 0.01, min_factors: int | None = None) -> dict:
  """A claims.json row with `per_baseline`, `met` and `rule` recomputed by this module's
  rules from the numbers the row stores (a row written before the rules were tested
  against each baseline: `all_methods` of a flows row, the baseline spread of a
  regularizer row, the per-factor changes of a LatentCLR row, whose uninformative factors
  — no method above `floor` — count neither way). The measurement itself is unchanged:
  the row keeps its `steps`, `command` and `differs`. Returns a new row."""
  r = dict(row)
  stats = lambda d: {"mean": d["mean"], "std": d["std"]}
  value = {"mean": r["value"], "std": r["value_std"]}
  if r["claim"] == "flows_posthoc":
    methods = r.pop("all_methods", None) or r["per_baseline"]
    base = {n: stats(v) for n, v in methods.items() if n != "potential flows"}
    r["per_baseline"] = per_baseline(value, base, "exceeds")
    r["met"] = all_hold(r["per_baseline"])
    r["rule"] = "exceeds each baseline: " + RULE_TEXT["exceeds"]
  elif r["claim"] == "flows_regularizer":
    base = {r["baseline"]: {"mean": r["baseline_value"], "std": r["baseline_std"]}}
    r["per_baseline"] = per_baseline(value, base, "exceeds")
    r["met"] = all_hold(r["per_baseline"])
    r["rule"] = "exceeds: " + RULE_TEXT["exceeds"]
  elif r["claim"] == "latentclr":
    need = int(min_factors if min_factors is not None else 3)
    factors, informative_, ok = {}, [], 0
    for fac, f in r["factors"].items():
      f = {k: v for k, v in f.items() if k not in ("comparable", "per_baseline")}
      f["informative"] = informative(f["change"], floor)
      if f["informative"]:
        informative_.append(fac)
        f["per_baseline"] = per_baseline(f["change"]["latentclr"],
                                         {m: c for m, c in f["change"].items() if m != "latentclr"},
                                         "non_inferior")
        f["comparable"] = all_hold(f["per_baseline"])
        ok += f["comparable"]
      factors[fac] = f
    facs = informative_ or list(factors)
    methods = list(next(iter(factors.values()))["change"])
    mean_over = {m: spread(np.mean([factors[f]["change"][m]["per_seed"] for f in facs], 0))
                 for m in methods}
    r["per_baseline"] = per_baseline(mean_over["latentclr"],
                                     {m: v for m, v in mean_over.items() if m != "latentclr"},
                                     "non_inferior")
    r.update(factors=factors, informative_factors=informative_, comparable_factors=int(ok),
             met=len(informative_) >= need and ok >= need,
             rule=(f"non-inferior to each baseline ({RULE_TEXT['non_inferior']}) on >= {need} "
                   f"informative factors; a factor is informative when some method changes "
                   f"it by more than {floor:g} of its range"))
  else:
    raise ValueError(f"no rule to rejudge a {r['claim']!r} row.")
  return r


def claim_row(claim: str, dataset: str, method: str, value: dict, baseline: str,
              baseline_value: dict, met: bool, seeds: Sequence[int], command: str,
              **extra) -> dict:
  """One claims.json row (module doc) from two `spread`s; `extra` keys are appended."""
  row = {"claim": claim, "dataset": dataset, "method": method, "value": value["mean"],
         "baseline": baseline, "baseline_value": baseline_value["mean"], "met": bool(met),
         "seeds": [int(s) for s in seeds], "command": command,
         "value_std": value["std"], "baseline_std": baseline_value["std"],
         "value_per_seed": value["per_seed"], "baseline_per_seed": baseline_value["per_seed"]}
  clash = sorted(set(extra) & set(row))
  if clash:
    raise ValueError(f"extra keys {clash} clash with the row's own keys.")
  row.update(extra)
  return row


def member(stacked, i: int):
  """Member i of a stacked parameter pytree (i modulo its size: a one-member set, e.g. a
  closed form or the latent axes, serves every seed), kept stacked [1, ...]."""
  m = jax.tree.leaves(stacked)[0].shape[0]
  return jax.tree.map(lambda a: a[i % m][None], stacked)


def per_seed_protocols(sets: dict, oracle: Callable, num_seeds: int, *, vp_pairs: int = 1000,
                       anchors: int = 64, vp: bool = True, rng_seed: int = 4321,
                       select_anchors: int = 0, log: Callable | None = None) -> dict:
  """`lsx.directions.protocols.protocol_scores` once per seed i: the sets' member i (module
  doc; the first set is the reference whose image change the others match), protocol key
  rng_seed + i, manipulation anchors z[i * anchors : (i + 1) * anchors] of the decoder
  (the first `select_anchors` of them choose each factor's direction, the rest score it).
  Returns {name: [protocol row of seed i]}."""
  out = {name: [] for name in sets}
  for i in range(int(num_seeds)):
    seeded = {n: (trav, member(stacked, i), dec) for n, (trav, stacked, dec) in sets.items()}
    rows = protocol_scores(seeded, oracle, rng=jax.random.key(int(rng_seed) + i),
                           pairs_per_direction=int(vp_pairs), manipulation_anchors=int(anchors),
                           vp=vp, anchor_start=i * int(anchors),
                           select_anchors=int(select_anchors))
    for n, r in rows.items():
      out[n].append(r[0])
    if log:
      log(f"seed {i}: " + ", ".join(
          f"{n} {r[0]['ref_vp']:.3f}" if "ref_vp" in r[0] else f"{n} {r[0]['manip_change']:.3f}"
          for n, r in rows.items()))
  return out


def markdown(rows: list[dict]) -> str:
  """The rows as a markdown table: claim, dataset, method and baseline with mean +- std
  over the seeds, met, budget."""
  out = ["| claim | dataset | method | value | baseline | baseline value | met | steps |",
         "| --- | --- | --- | --- | --- | --- | --- | --- |"]
  for r in rows:
    out.append(f"| {r['claim']} | {r['dataset']} | {r['method']} | {r['value']:.4g} ± "
               f"{r['value_std']:.2g} | {r['baseline']} | {r['baseline_value']:.4g} ± "
               f"{r['baseline_std']:.2g} | {'yes' if r['met'] else 'no'} | "
               f"{r.get('steps', '')} |")
  return "\n".join(out) + "\n"


def write_claims(rows: list[dict], path: str, *, replace: Sequence[str] = ()) -> list[dict]:
  """Write `rows` to the claims.json at `path` (atomically), keeping the rows already there
  whose claim is not in `replace` (a rerun of one claim keeps the others). Returns the
  written list."""
  import json
  import os
  for r in rows:
    missing = [k for k in ROW_KEYS if k not in r]
    if missing:
      raise ValueError(f"claims row for {r.get('claim')!r} lacks {missing}.")
  kept = []
  if os.path.exists(path):
    with open(path) as f:
      kept = [r for r in json.load(f) if r.get("claim") not in set(replace)]
  out = kept + list(rows)
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  write_json(path, out, indent=1)
  return out
