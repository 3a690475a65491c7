"""The direction and flow papers' claims measured on the built-in data over seeds: the
rows of claims.json (`run_claims(config)`; experiments.claims is its command line, the
config is configs/claims.py; lsx.claims holds the row format and the rules).

Each claim trains what it needs through lsx.train (resumable: a rerun reuses finished runs)
and writes one row per dataset to `config.out` (lsx.claims: the row format and the rules
that decide `met`; rows of claims not rerun are kept):

- flows_posthoc (Song et al. 2023: post-hoc potential flows are "more quantitatively
  disentangled" than linear baselines): each run of `flows_posthoc.runs` (the public
  setup, one member per seed) against the same decoder's latent axes, random directions
  and every method of `flows_posthoc.baselines` (fitted on the same decoder, one member per
  seed), by VP of the papers' protocol (lsx.directions.protocols.vp_protocol: pairs from
  z ~ N(0, I) along full paths, 10% to train) with every linear shift matched to the
  flows' mean image change; met when the flows exceed the best baseline by more than the
  seeds' spread.
- flows_regularizer (the same paper: flows as a VAE regularizer "improving model
  likelihood"): the joint run of `flows_regularizer.run` as one sweep of 2 x seeds members,
  hp.flow_terms = 1 (VAE + flows) and 0 (the same VAE, budget and frames, no flow term);
  the held-out importance-weighted log-likelihood (k = iw_k) of each, with the
  equivariance error ||G(z_{t+2}) - x_{t+1}|| and the flows' DFA disentanglement beside.
- latentclr (Yuksel et al. 2021: "comparable to GANSpace and SeFa"): the manipulation
  protocol's change of each named factor by LatentCLR's best direction (the run of
  `latentclr.run`, reference loss) and by GANSpace's and SeFa's on the same decoder, at
  LatentCLR's mean image change; met when comparable on >= min_factors factors.

Budgets: `steps` of each section (0: the run config's own, the papers' setups) are
recorded in every row with `differs`, what still differs from the paper.
"""
from __future__ import annotations

import os
import re

import jax
import numpy as np

from lsx import claims as lc, metrics as lm, records, runs
from lsx.directions import family as dfamily, reference_sets, take
from lsx.directions.family import Decoder
from lsx.flows import equivariance_error, family as ffamily, flow_traversal, sequence_batch
from lsx.models.objectives import importance_weighted_ll
from lsx.records import read_metrics
from lsx.train import config as config_lib, sweep as sweep_lib, validate
from lsx.traversal_eval import decoder_from_config

CLAIMS = ("flows_posthoc", "flows_regularizer", "latentclr")


def _command(c, claim: str) -> str:
  budget = {"flows_posthoc": ("steps", "baseline_steps"), "flows_regularizer": ("steps",),
            "latentclr": ("steps",)}[claim]
  sec = c[claim]
  extra = "".join(f" --config.{claim}.{k}={int(sec[k])}" for k in budget if int(sec[k]))
  return (f"python -m experiments.claims --config {c.config_file} --config.claims={claim}"
          + extra)


def _differs(sec, steps: int) -> str:
  """A section's `differs`, with the budget it ran at when not the run config's own."""
  text = str(sec.differs)
  if int(sec.steps) and sec.get("full_budget"):
    text += f"; budget: {steps} steps ({sec.full_budget})"
  return text


def _run_config(spec: str, c, **fields):
  """A run's config from its file, with the claims' seeds, `fields` (dotted names; 0 or
  None values skipped) and `c.run_overrides` (nested like a config, applied where the run
  has the field: e.g. {"decoder": {"workdir": ...}} for every run); with `c.run_root` its
  workdir moves there (same base name)."""
  rc = config_lib.load_config(spec)
  config_lib.set_fields(rc, **{"sweep.seed": tuple(int(s) for s in c.seeds)})
  config_lib.set_fields(rc, **{k: v for k, v in fields.items() if v not in (None, 0)})
  config_lib.set_fields(rc, strict=False, **config_lib.flatten(c.run_overrides.to_dict()))
  if c.run_root:
    config_lib.set_fields(rc, workdir=os.path.join(c.run_root,
                                                   os.path.basename(rc.workdir.rstrip("/"))))
  return rc


def _last_metrics(workdir: str, members=None) -> dict:
  """The last row of a run's metrics.jsonl (means over its members, or over the member
  indices `members`), {} when it has none."""
  rows = read_metrics(workdir)
  pick = lambda v: np.asarray(v)[list(members)] if members is not None and np.ndim(v) else v
  return {k: float(np.mean(pick(v))) for k, v in rows[-1].items()} if rows else {}


def _baseline_sets(c, sec, dec, decoder_spec, dataset: str, num: int, log):
  """The linear baselines of `sec.baselines` fitted on `dec` (the flows' decoder, whose
  run `decoder_spec` their configs record), K = `num`."""
  sets = {}
  for m in sec.baselines:
    spec = f"{sec.baseline_config}:{m}"
    bc = _run_config(spec, c, **{"train.steps": int(sec.baseline_steps)})
    with bc.unlocked():
      bc.directions.num = num
      bc.decoder = decoder_spec
    log(f"[{dataset}] baseline {m}")
    trav, params = dfamily.fit(bc, m, dec, os.path.join(c.workdir, dataset, m), print_fn=log)
    sets[m] = (trav, params, dec)
  return sets


def _flows_configs(sec) -> dict:
  """{name: {dotted config field: value}}: the flows' configurations measured, one row each
  (`flows_posthoc.configurations`, fields nested like the run's config; {} is the run
  config's own and comes first, keeping the run's workdir; the others train beside it in
  `<workdir>_<name>`)."""
  confs = {str(k): config_lib.flatten(v) for k, v in sec.get("configurations", {}).items()}
  # the run config's own form ({}) first (a ConfigDict keeps its keys sorted)
  return dict(sorted(confs.items(), key=lambda kv: bool(kv[1]))) or {"public": {}}


def _slug(name: str) -> str:
  return re.sub(r"\W+", "_", name).strip("_").lower()


def flows_posthoc(c, log) -> list[dict]:
  sec, seeds, rows = c.flows_posthoc, tuple(c.seeds), []
  confs = _flows_configs(sec)
  budget = {"train.steps": int(sec.steps), "train.ckpt_every": int(sec.ckpt_every),
            "flows.classifier_width": int(sec.classifier_width)}
  plan = []  # every run's config first: a bad field is refused before anything trains
  for dataset, spec in sec.runs.items():
    for i, (name, fields) in enumerate(confs.items()):
      fc = _run_config(spec, c, **budget)
      try:
        config_lib.set_fields(fc, **fields)
        runs.check_family(fc)
        validate.check_run(fc)
        ffamily.check_flows(fc)
      except (KeyError, ValueError) as e:
        raise ValueError(f"flows_posthoc.configurations[{name!r}]: "
                         f"{e.args[0] if e.args else e}") from None
      if i:
        config_lib.set_fields(fc, workdir=f"{fc.workdir.rstrip('/')}_{_slug(name)}")
      plan.append((dataset, name, fc))
  baselines = {}
  for dataset, name, fc in plan:
    runs.ensure_trained(fc.decoder.workdir, fc.decoder.config)
    log(f"[{dataset}] flows ({name}): {sec.runs[dataset]} in {fc.workdir}")
    state, setup = runs.train(fc, fc.workdir, print_fn=log)
    flow, frozen = setup.objective.info["flow"], setup.objective.info["decoder"]
    dec = Decoder(frozen.model, frozen.params, frozen.dataset, 2000, data_seed=1234)
    e = fc.eval
    sets = {"potential flows": (flow_traversal(flow, int(e.steps)), state.params["flow"], dec)}
    sets.update(reference_sets(dec, flow.num, len(seeds), span=float(e.span) * dec.sd,
                               num_steps=int(e.steps)))
    if dataset not in baselines:  # fitted once per decoder, scored beside each configuration
      baselines[dataset] = _baseline_sets(c, sec, dec, fc.decoder.to_dict(), dataset,
                                          flow.num, log)
    sets.update(baselines[dataset])
    oracle = lm.oracle_from_config(dec.dataset, e, pool=int(sec.oracle_pool) or None, log=log)
    res = lc.per_seed_protocols(sets, oracle, len(seeds), vp_pairs=int(sec.vp_pairs),
                                anchors=int(sec.anchors), log=log)
    vp = {n: lc.spread([r["ref_vp"] for r in rs]) for n, rs in res.items()}
    flows = vp.pop("potential flows")
    verdicts = lc.per_baseline(flows, vp, "exceeds")
    best = max(vp, key=lambda n: vp[n]["mean"])
    option = f", {name}" if confs[name] else ""
    rows.append(lc.claim_row(
        "flows_posthoc", dataset, "potential flows (post hoc, convention "
        f"'{fc.flows.convention}'{option})", flows, best, vp[best], lc.all_hold(verdicts),
        seeds, _command(c, "flows_posthoc"),
        metric=f"VP (vp_protocol: {int(sec.vp_pairs)} pairs per direction from z ~ N(0, I) "
               "along full paths, 10% to train; linear shifts matched to the flows' mean "
               "image change)", rule="exceeds each baseline: " + lc.RULE_TEXT["exceeds"],
        per_baseline=verdicts, image_change=lc.spread([r["ref_change"] for r in res["potential flows"]]),
        manipulation_leakage={n: lc.spread([r["manip_leakage"] for r in rs])
                              for n, rs in res.items()},
        training_end=_flows_training_end(setup, state, seeds), configuration=name,
        configuration_fields=dict(confs[name]), training_codes=str(fc.flows.codes),
        steps=int(fc.train.steps), batch_size=int(fc.train.batch_size),
        differs=_differs(sec, int(fc.train.steps)) + (
            f"; {sec.configurations_differs[name]}"
            if name in sec.get("configurations_differs", {}) else "")))
  return rows


def _flows_training_end(setup, state, seeds) -> dict:
  """The post-hoc flows' trajectory at its ends, per seed and as mean +- std: the frame
  classifier's accuracy and the image change of one flow step at the last step, the image
  change at step 0 (the same seeds' initial parameters), on the same 4 fresh batches."""
  start = sweep_lib.stack_init(setup.init_state, seeds).params
  end = [ffamily.training_diagnostics(setup, take(state.params, i)) for i in range(len(seeds))]
  begin = [ffamily.training_diagnostics(setup, take(start, i)) for i in range(len(seeds))]
  out = {"classifier_accuracy": lc.spread([e["cls_acc"] for e in end]),
         "image_change": lc.spread([e["image_change"] for e in end]),
         "image_change_start": lc.spread([b["image_change"] for b in begin])}
  for k in ("ic", "pde", "jvp", "cls", "speed"):
    if k in end[0]:
      out[k] = lc.spread([e[k] for e in end])
  return out


def _weights_configs(sec) -> dict:
  """{name: {hp: value}}: the joint run's loss weights of each configuration measured
  (`flows_regularizer.configurations`; {} is the run config's own)."""
  confs = {str(k): dict(v) for k, v in sec.configurations.items()}
  if not confs:
    raise ValueError("flows_regularizer.configurations must name at least one set of "
                     "weights ({'lsx': {}} measures the run config's own).")
  return confs


def flows_regularizer(c, log) -> list[dict]:
  sec, seeds = c.flows_regularizer, tuple(c.seeds)
  confs = _weights_configs(sec)
  jc = _run_config(sec.run, c, **{"train.steps": int(sec.steps)})
  unknown = sorted({k for w in confs.values() for k in w} - set(jc.hp))
  if unknown:
    raise ValueError(f"flows_regularizer.configurations set {unknown}, which are not "
                     f"hyperparameters of {sec.run}: {sorted(jc.hp)}.")
  # one sweep: for each configuration, the seeds with flow terms, then the seeds without
  members = [(name, ft, s) for name in confs for ft in (1.0, 0.0) for s in seeds]
  with jc.unlocked():
    jc.workdir = os.path.join(c.workdir, "flows_regularizer")
    jc.sweep.mode = "zip"
    jc.sweep.seed = tuple(s for _, _, s in members)
    sweep_hp = {"flow_terms": tuple(ft for _, ft, _ in members)}
    for key in sorted({k for w in confs.values() for k in w}):
      sweep_hp[key] = tuple(float(confs[name].get(key, jc.hp[key])) for name, _, _ in members)
    jc.sweep.hp = sweep_hp
  log(f"flows_regularizer: {sec.run}, configurations {list(confs)}, as {len(members)} "
      f"members in {jc.workdir}")
  state, setup = runs.train(jc, jc.workdir, print_fn=log)
  failed = records.read_failed(jc.workdir)
  f = jc.flows
  model, flow, ds = setup.model, setup.objective.info["flow"], setup.dataset
  images, _ = ds.sample(jax.random.key(int(sec.heldout_seed)), int(sec.images))
  batch = sequence_batch(ds, jax.random.key(int(sec.heldout_seed) + 1), int(sec.images),
                         tuple(f.transforms), tuple(f.speeds), int(f.path_len))
  eq_fn = jax.jit(lambda vp, fp: equivariance_error(model, vp, flow, fp, batch, int(f.path_len)))
  oracle = lm.oracle_from_config(ds, jc.eval, log=log)
  ll, eq, dfa = [], [], []
  for i, (name, ft, s) in enumerate(members):
    p = take(state.params, i)
    ll.append(float(np.mean(importance_weighted_ll(model, p["vae"], images,
                                                   jax.random.key(99), int(sec.iw_k)))))
    eq.append(float(np.mean(np.asarray(eq_fn(p["vae"], p["flow"])))))
    scored, _ = ffamily.score_run(setup, p, oracle, references=False)
    dfa.append(float(scored["flows"][0]["disentanglement"]))
    log(f"member {i} ({name}, flow_terms {ft}, seed {s}): log p(x) >= {ll[-1]:.2f}, "
        f"equivariance {eq[-1]:.3f}, DFA {dfa[-1]:.3f}")
  rows, base = [], "the same VAE without flow terms (hp.flow_terms = 0)"
  for name, weights in confs.items():
    on = [i for i, m in enumerate(members) if m[0] == name and m[1] == 1.0]
    off = [i for i, m in enumerate(members) if m[0] == name and m[1] == 0.0]
    pick = lambda xs, idx: [xs[i] for i in idx]
    joint, plain = lc.spread(pick(ll, on)), lc.spread(pick(ll, off))
    verdicts = lc.per_baseline(joint, {base: plain}, "exceeds")
    hp_of = lambda key: float(weights.get(key, jc.hp[key]))
    stopped = {members[i][2]: failed[i] for i in on + off if i in failed}
    rows.append(lc.claim_row(
        "flows_regularizer", str(jc.data.name), f"VAE + potential flows (joint, {name} weights)",
        joint, base, plain, lc.all_hold(verdicts), seeds, _command(c, "flows_regularizer"),
        metric=f"held-out importance-weighted log-likelihood (nats per image, k = "
               f"{int(sec.iw_k)}, {int(sec.images)} fresh images)",
        rule="exceeds: " + lc.RULE_TEXT["exceeds"], per_baseline=verdicts,
        configuration=name, weights={k: hp_of(k) for k in ("beta", "lambda_latent",
                                                             "lambda_pde", "lambda_jvp")
                                     if k in jc.hp},
        nonfinite_at_step=stopped,
        equivariance_error={"joint": lc.spread(pick(eq, on)),
                            "without flow terms": lc.spread(pick(eq, off))},
        dfa={"joint": lc.spread(pick(dfa, on)),
             "without flow terms (untrained flows)": lc.spread(pick(dfa, off))},
        training_end={"joint": _last_metrics(jc.workdir, on),
                      "without flow terms": _last_metrics(jc.workdir, off)},
        beta=hp_of("beta"), lambda_jvp=hp_of("lambda_jvp") if "lambda_jvp" in jc.hp else 0.0,
        steps=int(jc.train.steps), batch_size=int(jc.train.batch_size),
        differs=_differs(sec, int(jc.train.steps)) + (
            f"; {sec.configurations_differs[name]}" if name in sec.configurations_differs
            else "")))
  return rows


def latentclr(c, log) -> list[dict]:
  sec, seeds = c.latentclr, tuple(c.seeds)
  rc = _run_config(sec.run, c, **{"train.steps": int(sec.steps),
                                   "decoder.workdir": sec.decoder_workdir or None,
                                   "decoder.config": sec.decoder_config or None})
  if sec.decoder_workdir:  # another generator: its own run, not the config's workdir
    with rc.unlocked():
      rc.workdir = f"{rc.workdir}_on_{os.path.basename(sec.decoder_workdir.rstrip('/'))}"
  dec = decoder_from_config(rc)
  log(f"latentclr: {sec.run} in {rc.workdir}")
  sets = {"latentclr": (*dfamily.fit(rc, "latentclr", dec, rc.workdir, print_fn=log), dec)}
  for m in sec.baselines:
    sets[m] = (*dfamily.fit(rc, m, dec, os.path.join(c.workdir, "latentclr", m)), dec)
  e, dataset_name = rc.eval, type(dec.dataset).__name__.lower()
  oracle = lm.oracle_from_config(dec.dataset, e, log=log)
  select = int(sec.select_anchors)
  res = lc.per_seed_protocols(sets, oracle, len(seeds), anchors=int(sec.anchors), vp=False,
                              select_anchors=select, log=log)
  unknown = [f for f in sec.factors if f not in res["latentclr"][0]["manipulation"]]
  if unknown:
    raise ValueError(f"latentclr.factors {unknown} are not ordinal factors of "
                     f"{dataset_name}: {sorted(res['latentclr'][0]['manipulation'])}.")
  change = lambda rs, fac: lc.spread([(r["manipulation"][fac]["change_pos"]
                                       + r["manipulation"][fac]["change_neg"]) / 2 for r in rs])
  leak = lambda rs, fac: lc.spread([r["manipulation"][fac]["leakage"] for r in rs])
  floor = float(sec.informative_floor)
  factors, informative, ok = {}, [], 0
  for fac in sec.factors:
    ch = {m: change(rs, fac) for m, rs in res.items()}
    row = {"change": ch, "leakage": {m: leak(rs, fac) for m, rs in res.items()},
           "informative": lc.informative(ch, floor)}
    if row["informative"]:
      informative.append(fac)
      row["per_baseline"] = lc.per_baseline(ch["latentclr"], {m: ch[m] for m in sec.baselines},
                                            "non_inferior")
      row["comparable"] = lc.all_hold(row["per_baseline"])
      ok += row["comparable"]
    factors[fac] = row
  mean_change = lambda rs, facs: lc.spread([np.mean([(r["manipulation"][fac]["change_pos"]
                                                      + r["manipulation"][fac]["change_neg"]) / 2
                                                     for fac in facs]) for r in rs])
  facs = informative or list(sec.factors)
  clr = mean_change(res["latentclr"], facs)
  means = {m: mean_change(res[m], facs) for m in sec.baselines}
  best = max(sec.baselines, key=lambda m: means[m]["mean"])
  need = int(sec.min_factors)
  return [lc.claim_row(
      "latentclr", dataset_name, f"LatentCLR (convention '{rc.directions.convention}', "
      f"{rc.directions.kind} directions)", clr, best, means[best],
      len(informative) >= need and ok >= need, seeds, _command(c, "latentclr"),
      metric="manipulation protocol: the target factor's change by each method's best "
             "direction (both signs, in units of the factor's range; the direction chosen on "
             f"{select} anchors, the change measured on {int(sec.anchors) - select} others), "
             f"mean over the informative factors of {list(sec.factors)}; shifts matched to "
             "LatentCLR's mean image change",
      rule=(f"non-inferior to each baseline ({lc.RULE_TEXT['non_inferior']}) on >= {need} "
            f"informative factors; a factor is informative when some method changes it by "
            f"more than {floor:g} of its range (below: uninformative, counted neither way)"),
      per_baseline=lc.per_baseline(clr, means, "non_inferior"),
      informative_factors=informative, comparable_factors=int(ok), factors=factors,
      training_end=_last_metrics(rc.workdir),
      steps=int(rc.train.steps), batch_size=int(rc.train.batch_size),
      differs=_differs(sec, int(rc.train.steps)))]


def run_claims(c, log=print) -> list[dict]:
  """Measure `c.claims` and write their rows to `c.out` (returns every row written)."""
  unknown = [k for k in c.claims if k not in CLAIMS]
  if unknown:
    raise ValueError(f"config.claims has {unknown}; known: {list(CLAIMS)}.")
  if len(set(int(s) for s in c.seeds)) != len(c.seeds) or len(c.seeds) < 1:
    raise ValueError(f"config.seeds must be distinct seeds, got {tuple(c.seeds)}.")
  fns = {"flows_posthoc": flows_posthoc, "flows_regularizer": flows_regularizer,
         "latentclr": latentclr}
  rows = []
  for name in c.claims:
    rows += fns[name](c, log)
    lc.write_claims(rows, c.out, replace=tuple(c.claims))  # after each claim: nothing lost
  for r in rows:
    log(f"{r['claim']} [{r['dataset']}]: {r['method']} {r['value']:.4g} +- {r['value_std']:.2g} "
        f"vs {r['baseline']} {r['baseline_value']:.4g} +- {r['baseline_std']:.2g}: "
        f"{'met' if r['met'] else 'not met'}")
  return lc.write_claims(rows, c.out, replace=tuple(c.claims))
