"""One traversal-evaluation pipeline: decoder and oracle from a config, the method's sets
beside the reference sets, scores, report.

Every traversal lsx learns or fits (contrastive and closed-form directions, potential
flows, the claims' baselines, the objective probe's starts) is scored the same way:

  decoder_from_config(config)   the frozen generator of config.decoder (trained first when
                                its workdir holds no finished run), its codes of
                                config.eval.data images
  lsx.metrics.oracle_from_config(dataset, config.eval)
                                the factor oracle eval.oracle names
  lsx.directions.evaluate_sets(sets, oracle, config.eval)
                                DFA / VP / direction-MIG of every member in one oracle pass,
                                the papers' protocols with eval.protocol='reference'
  report(scored, workdir, ...)  scores.json / .csv / .png and the printed table

`discover`, `flows` and `hspace` (directions in a denoiser's h-space) are the whole
pipelines the experiments of the same names run; `lsx.measure_claims` and `lsx.objective_probe` build their own sets and use the
same pieces.
"""
from __future__ import annotations

import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lsx import directions as ld, metrics as lm, runs, viz
from lsx.diffusion import directions as hdirs, family as diffusion_family
from lsx.diffusion import process as diffusion_process, properties as h_properties
from lsx.directions import family as dfamily
from lsx.flows import family as ffamily
from lsx.metrics.sample_quality import sample_quality
from lsx.records import read_metrics
from lsx.train import config as config_lib, sweep, validate

FLOW_CURVES = {"pde": "L_PDE (wave residual)", "pde_rel": "relative wave residual",
               "ic": "L_IC", "jvp": "L_JVP (rewarded)", "cls": "classifier CE",
               "rec": "reconstruction (x_0)", "latent": "L_latent"}


def decoder_from_config(config, images: int | None = None) -> dfamily.Decoder:
  """The frozen decoder config.decoder names ({workdir, config}), trained first when its
  workdir holds no finished run, with the codes of `images` (default config.eval.data)
  data images."""
  workdir = runs.ensure_trained(config.decoder.workdir, config.decoder.config)
  return runs.load_decoder(workdir, int(images or config.eval.data))


def ordinal_names(dataset) -> list[str]:
  """The names of the dataset's ordinal factors: the columns of an attribution row R."""
  return [n for n, o in zip(dataset.factor_names, lm.ordinal_mask(dataset)) if o]


def direction_labels(scores: dict, dataset, prefix: str = "direction") -> list[str]:
  """A label per direction of one scored member: its index and the factor its attribution
  row R puts most weight on, with that weight's share ('direction 3: x (72%)'; 'moves no
  factor' when its row is empty). R's columns are the dataset's ordinal factors."""
  names = ordinal_names(dataset)
  r = np.asarray(scores["R"], np.float64)
  out = []
  for k, row in enumerate(r):
    total = row.sum()
    what = (f"{names[int(row.argmax())]} ({row.max() / total:.0%})" if total > 0
            else "moves no factor")
    out.append(f"{prefix} {k}: {what}")
  return out


def report(scored: dict, workdir: str, oracle, *, factor_names, log: Callable = viz.log,
           **info) -> dict:
  """scores.json / scores.csv / scores.png of `scored` in `workdir` (with the oracle's
  description and `info`), and the printed table. Returns the per-row summaries."""
  return ld.write_score_table(scored, workdir, oracle_info=lm.oracle_info(oracle),
                              factor_names=list(factor_names), log=log, **info)


def discover(config, compare: bool = False, log: Callable = viz.log) -> dict:
  """Fit config.directions.method (or, with `compare`, every method of
  config.compare.methods, each in workdir/<method>, plus the reference rows: random
  directions, the latent axes of this decoder and of a plain AE decoder, the supervised
  factor directions) and score every member. Writes directions.png, scores.json/csv/png
  and readings.npz (the oracle's raw readings per row) in config.workdir; returns the
  scores {row: [per member]}."""
  c = config
  lm.check_oracle(c.eval.oracle)
  ld.protocols.check_protocol(c.eval)
  methods = tuple(c.compare.methods) if compare else (c.directions.method,)
  for m in methods:
    dfamily.method_kind(m)  # an unknown name fails before anything trains
  dec = decoder_from_config(c)
  oracle = lm.oracle_from_config(dec.dataset, c.eval, log=log)
  sub = lambda m: os.path.join(c.workdir, m) if compare else c.workdir
  sets = {m: (*dfamily.fit(c, m, dec, sub(m)), dec) for m in methods}
  if compare:
    span, s = float(c.eval.span), int(c.eval.steps)
    sets.update(ld.reference_sets(dec, c.directions.num, c.compare.random_seeds,
                                  span=span * dec.sd, num_steps=s, supervised=True,
                                  suffix=" (decoder)"))
    ae = runs.load_decoder(runs.ensure_trained(c.compare.ae_workdir, c.compare.ae_config),
                           int(c.eval.data))
    sets.update(ld.reference_sets(ae, c.directions.num, 0, span=span * ae.sd, num_steps=s,
                                  suffix=" (plain AE)"))
  scored, readings = ld.evaluate_sets(sets, oracle, c.eval)
  trav, params, _ = sets[methods[0]]
  frames = ld.traversal_frames(trav, ld.take(params, 0), dec.generate, dec.z[:3])
  viz.save_traversal_grid(frames, os.path.join(c.workdir, "directions.png"),
                          row_labels=direction_labels(scored[methods[0]][0], dec.dataset),
                          title=f"{methods[0]} directions (member 0), each row labelled by "
                                f"the factor it moves most")
  report(scored, c.workdir, oracle, factor_names=dec.dataset.factor_names, log=log)
  np.savez_compressed(os.path.join(c.workdir, "readings.npz"),
                      **{f"{n}/{f}": getattr(r, f) for n, r in zip(sets, readings)
                         for f in ("factors", "distance", "anisotropy")})
  return scored


def flows(config, log: Callable = viz.log) -> dict:
  """Train (or resume) the flows run of `config` (post hoc on a trained decoder, trained
  first, or jointly with its VAE) and score every member's flows next to the same VAE's
  latent axes and random directions. Writes flows_losses.png, flows.png (member 0) and
  scores.json/csv/png in config.workdir; returns the scores {row [member i]: [scores]}."""
  c = config
  lm.check_oracle(c.eval.oracle)
  if c.flows.mode == "posthoc":
    runs.ensure_trained(c.decoder.workdir, c.decoder.config)
  state, setup = runs.train(c, c.workdir)
  viz.save_metric_curves(read_metrics(c.workdir), setup.log_keys,
                         os.path.join(c.workdir, "flows_losses.png"), FLOW_CURVES)
  oracle = lm.oracle_from_config(setup.dataset, c.eval, seed=int(c.seed) + 7, log=log)
  members = sweep.plan(c, setup.hp)
  scored = {}
  for i in range(1 if members is None else members.size):
    params = state.params if members is None else ld.take(state.params, i)
    rows, frames = ffamily.score_run(setup, params, oracle)
    tag = "" if members is None else f" [member {i}]"
    scored.update({f"{n}{tag}": r for n, r in rows.items()})
    if i == 0:
      first = next(iter(rows.values()))[0]
      viz.save_traversal_grid(frames, os.path.join(c.workdir, "flows.png"),
                              row_labels=direction_labels(first, setup.dataset, "potential"),
                              title="potential flows (member 0), each row labelled by the "
                                    "factor it moves most")
  report(scored, c.workdir, oracle, factor_names=ordinal_names(setup.dataset), log=log,
         mode=c.flows.mode)
  return scored


H_METHODS = ("pca", "jacobian", "pullback", "random", "factors", "noiseclr", "latentclr")


def h_direction_config(config, method: str):
  """The run config ('h_directions' family) that learns `method`'s h directions for the
  h-space pipeline, in config.workdir/<method> (config.contrastive: its budget and hp)."""
  import ml_collections
  ct, hs = config.contrastive, config.hspace
  c = config_lib.run_config()
  c.family = "h_directions"
  c.seed = int(hs.seed)
  c.workdir = os.path.join(config.workdir, method)
  c.diffusion = ml_collections.ConfigDict(config.diffusion.to_dict())
  c.hdirections = ml_collections.ConfigDict(dict(method=method, num=int(hs.num),
                                                 t_min=int(ct.t_min)))
  c.hp = dict(temperature=float(ct.temperature), alpha=float(ct.alpha), lr=float(ct.lr))
  chunk = min(int(ct.steps), 50)
  c.train.update(steps=int(ct.steps), batch_size=int(ct.batch_size), chunk=chunk,
                 ckpt_every=chunk * 4, log_every_s=30.0)
  return c


def check_hspace(config) -> None:
  """config.hspace and config.eval refused by name before anything loads or compiles."""
  hs = config.hspace
  unknown = sorted(set(hs.methods) - set(H_METHODS))
  if unknown or not hs.methods:
    raise ValueError(f"config.hspace.methods has {unknown or 'nothing'}; known: "
                     f"{list(H_METHODS)}.")
  props = set(hs.get("properties", ()))
  if props - set(hs.methods) or (props and "random" not in hs.methods):
    raise ValueError(f"config.hspace.properties {sorted(props)} must name methods of "
                     f"config.hspace.methods {list(hs.methods)}, which must include "
                     f"'random' (robustness edits along random h-directions).")
  if hs.get("scale", "common") not in ("common", "direction"):
    raise ValueError(f"config.hspace.scale must be 'common' (one norm for every method) or "
                     f"'direction' (the std of h along each direction), got {hs.scale!r}.")
  validate.positive(config, "hspace.num", "hspace.samples", "hspace.sample_steps",
                    "hspace.iters", "eval.anchors", "eval.steps", "eval.vp_anchors")
  pb = config.get("pullback")
  if pb is not None and int(pb.anchors) > 0:
    validate.positive(config, "pullback.k", "pullback.iters")
    validate.number(config, "pullback.edit", 0.0, inclusive=False)
    if int(pb.anchors) < 2:
      raise ValueError(f"config.pullback.anchors={pb.anchors}: the tangent overlap needs "
                       f"pairs of samples, set >= 2 (or 0: not measured).")
    for key in ("early", "late"):
      if not 0.0 <= float(pb[key]) <= 1.0:
        raise ValueError(f"config.pullback.{key}={pb[key]} is a fraction of the schedule's "
                         f"T: set it in [0, 1].")
  man = config.get("manipulation")
  if man is not None and int(man.anchors) != 0:
    validate.positive(config, "manipulation.anchors")
    if not 0 <= int(man.select) < int(man.anchors):
      raise ValueError(f"config.manipulation.select={man.select}: the anchors that choose each "
                       f"factor's direction must be in [0, manipulation.anchors="
                       f"{man.anchors}) so that some anchors are left to score it.")
    if not 0.0 < float(man.target) <= 1.0:
      raise ValueError(f"config.manipulation.target={man.target} is a share of a factor's "
                       f"range: set it in (0, 1].")
  if wants_vae_rows(config):
    for m in config.vae.methods:
      dfamily.method_kind(m)  # an unknown name fails here, before anything trains
    validate.positive(config, "vae.steps")
  lm.check_oracle(config.eval.oracle)
  ld.protocols.check_protocol(config.eval)


SETTINGS = ("hspace", "contrastive", "pullback", "manipulation", "eval", "vae")


def hspace_settings(config) -> dict:
  """The config sections an h-space table's numbers depend on (scores.json `settings`):
  a table is read back only for the same settings (lsx.hspace_seeds)."""
  return {k: config[k].to_dict() for k in SETTINGS if config.get(k) is not None}


def manipulation_rows(sets: dict, oracle, dataset, man, anchors_of: Callable,
                      log: Callable = viz.log) -> dict:
  """The manipulation protocol (lsx.directions.protocols.manipulation) of every member of
  every set on the codes `anchors_of(name, generator)` [N, d]: for each ordinal factor,
  the direction that changes it most, chosen on the first `man.select` anchors and
  measured on the others at the ends of the scoring span, in units of the factor's range,
  with its leakage into the other factors. Returns {name: [{"manip_change",
  "manip_leakage", "manipulation": {factor: row}} per member]}."""
  out = {}
  for m, (trav, params, gen) in sets.items():
    z, rows = anchors_of(m, gen), []
    num = int(trav.paths(ld.take(params, 0), z[:1]).shape[0])
    for i in range(jax.tree.leaves(params)[0].shape[0]):
      r = ld.protocols.manipulation(trav, ld.take(params, i), gen.generate, oracle, dataset,
                                    z, num_directions=num, select=int(man.select))
      rows.append({"manip_change": r["change"], "manip_leakage": r["leakage"],
                   "manipulation": r["factors"]})
    log(f"manipulation: {m}: " + ", ".join(
        f"{f} {(v['change_pos'] + v['change_neg']) / 2:.2f} (leak {v['leakage']:.2f})"
        for f, v in rows[0]["manipulation"].items()))
    out[m] = rows
  return out


def h_anchors(man, seed: int):
  """anchors_of for h-space sets: the same `man.anchors` noises x_T (key seed + 3) for
  every method, as codes [x_T, 0]."""
  def anchors_of(name, gen):
    del name
    x_T = jax.random.normal(jax.random.key(int(seed) + 3), (int(man.anchors), gen.x_dim))
    return jnp.concatenate([x_T, jnp.zeros((x_T.shape[0], gen.k))], 1)
  return anchors_of


VAE_ROW = "VAE decoder: "  # the prefix of the VAE decoder's rows in an h-space table


def wants_vae_rows(config) -> bool:
  v = config.get("vae")
  return bool(v is not None and v.workdir and tuple(v.get("methods", ())))


def vae_decoder_rows(config, image_size: int, log: Callable = viz.log) -> dict:
  """The VAE decoder of config.vae.workdir scored beside the h-space rows by the same
  protocol: the direction methods config.vae.methods (lsx.directions: closed forms, or
  learned for config.vae.steps steps per config.vae.directions_config's members, in
  <config.workdir>/vae_decoder/<method>), random directions, the decoder's latent axes and
  the supervised factor directions, with hspace.num directions each, traversed over
  ±eval.span stds of the codes in eval.steps steps from the codes of encoded data, DFA and
  VP as the h-space rows are scored, and the manipulation protocol on other encoded codes.
  The oracle reads the VAE's images at the h-space oracle's resolution (its pooling
  scaled by the ratio of the VAE's image size to the denoiser's `image_size`). Returns {"VAE decoder: <row>": [per member]}."""
  v, e = config.vae, config.eval
  sub = config_lib.load_config(str(v.directions_config))
  vae = runs.load_decoder(runs.ensure_trained(v.workdir, v.config), 16)
  den_size = int(image_size)
  ratio = int(vae.dataset.image_shape[0]) // den_size
  if ratio < 1 or ratio * den_size != int(vae.dataset.image_shape[0]):
    raise ValueError(f"The VAE in {v.workdir} renders {vae.dataset.image_shape[0]}-pixel "
                     f"images and the denoiser {den_size}: give a VAE at the denoiser's size "
                     f"or an integer multiple of it, so both are read at one resolution.")
  with sub.unlocked():
    sub.workdir = os.path.join(config.workdir, "vae_decoder")
    sub.decoder = {"workdir": str(v.workdir), "config": str(v.config)}
    sub.directions.num = int(config.hspace.num)
    sub.train.steps = int(v.steps)
    sub.train.ckpt_every = min(int(sub.train.ckpt_every), int(v.steps))
    for k in ("anchors", "steps", "span", "vp_anchors", "oracle", "readable_orientation"):
      sub.eval[k] = e[k]
    sub.eval.update(protocol="lsx", null_permutations=0,
                    oracle_pool=int(e.get("oracle_pool", 1)) * ratio)
  for m in v.methods:
    dfamily.method_kind(m)  # an unknown name fails before anything trains
  dec = decoder_from_config(sub)
  oracle = lm.oracle_from_config(dec.dataset, sub.eval, log=log)
  sets = {m: (*dfamily.fit(sub, m, dec, os.path.join(sub.workdir, m), print_fn=log), dec)
          for m in v.methods}
  sets.update(ld.reference_sets(dec, sub.directions.num, 1, span=float(e.span) * dec.sd,
                                num_steps=int(e.steps), supervised=True))
  scored, _ = ld.evaluate_sets(sets, oracle, sub.eval)
  man = config.get("manipulation")
  if man is not None and int(man.anchors) > 0:
    start = int(e.anchors)
    for m, rows in manipulation_rows(
        sets, oracle, dec.dataset, man, lambda name, d: d.z[start:start + int(man.anchors)],
        log).items():
      for row, extra in zip(scored[m], rows):
        row.update(extra)
  return {VAE_ROW + m: rows for m, rows in scored.items()}


def hspace_directions(config, den, dataset, oracle, log: Callable = viz.log):
  """({method: h-directions [K, D], unit rows times the edit unit of hspace.scale},
  the DDIM samples h was collected from, as images):
  the methods of config.hspace.methods (module doc of lsx.diffusion.directions; 'random':
  random unit directions; 'factors': h regressed on the oracle's reading of the samples),
  from h collected along the DDIM paths of config.hspace.samples draws of x_T."""
  hs = config.hspace
  check_hspace(config)
  k, rng = int(hs.num), jax.random.key(int(hs.seed))
  x_T = jax.random.normal(rng, (int(hs.samples),) + den.image_shape)
  x0, h = jax.jit(lambda x: diffusion_process.ddim_sample(
      den.eps_fn, den.schedule, x, int(hs.sample_steps), record_h=True))(x_T)
  flat = h.reshape(h.shape[0] * h.shape[1], -1)  # [steps x samples, D]
  x_t = diffusion_process.q_sample(den.schedule, x0[:1], jnp.full((1,), int(hs.t)),
                                   jax.random.normal(jax.random.fold_in(rng, 1), x0[:1].shape))
  out = {}
  for m in hs.methods:
    if m == "pca":
      u = hdirs.pca_directions(flat, k)[0]
    elif m == "jacobian":
      u = hdirs.jacobian_directions(den, x_t, int(hs.t), k, int(hs.iters))[0]
    elif m == "pullback":
      u = hdirs.pullback_directions(den, x_t, int(hs.t), k, int(hs.iters))[2]
    elif m in hdirs.CONTRASTIVE:
      state, _ = runs.train(h_direction_config(config, m), print_fn=log)
      u = state.params["d"] / jnp.linalg.norm(state.params["d"], axis=1, keepdims=True)
    elif m == "random":
      r = jax.random.normal(jax.random.fold_in(rng, 2), (k, flat.shape[1]))
      u = r / jnp.linalg.norm(r, axis=1, keepdims=True)
    else:
      factors, _ = oracle(diffusion_process.to_image(x0))
      u = hdirs.factor_h_directions(h.mean(0), factors, lm.ordinal_mask(dataset))
    out[m] = u
    log(f"h directions: {m} ({u.shape[0]})")
  # the unit of an edit: 'common' (default) one norm for every method's directions, the
  # RMS std of h along its K principal directions, so an off-manifold direction moves h
  # as far as a principal one; 'direction': the std of h along each direction itself
  if hs.get("scale", "common") == "direction":
    out = {m: u * hdirs.projection_std(flat, u)[:, None] for m, u in out.items()}
  else:
    common = jnp.sqrt(jnp.mean(hdirs.pca_directions(flat, k)[1]))
    out = {m: u * common for m, u in out.items()}
  return out, diffusion_process.to_image(x0)


def vae_prior(workdir: str, config_spec: str, image_shape):
  """(row name, generate(rng, n) -> images at `image_shape`) of the prior samples of the
  VAE run in `workdir` (trained first with `config_spec` when absent). A VAE rendering k
  times the denoiser's size is averaged over k x k blocks (the row says so); another size
  or channel count is refused."""
  dec = runs.load_decoder(runs.ensure_trained(workdir, config_spec), 16)
  vs, ds = tuple(dec.dataset.image_shape), tuple(image_shape)
  k = vs[0] // ds[0]
  if vs[2] != ds[2] or k < 1 or vs[0] != k * ds[0] or vs[1] != k * ds[1]:
    raise ValueError(f"The VAE in {workdir} renders {vs[0]}x{vs[1]}x{vs[2]} images and the "
                     f"denoiser {ds[0]}x{ds[1]}x{ds[2]}: the VAE's prior samples are scored at "
                     f"the denoiser's size, so give a VAE of the same data at that size or "
                     f"an integer multiple of it.")

  def generate(rng, n):
    x = dec.generate(jax.random.normal(rng, (n, dec.model.latent_dim)))
    return x.reshape(n, ds[0], k, ds[1], k, ds[2]).mean((2, 4)) if k > 1 else x
  name = "VAE prior samples" + (f" ({vs[0]}x{vs[1]}, averaged to {ds[0]}x{ds[1]})" if k > 1 else "")
  return name, generate


def load_denoiser(workdir: str, reader: str, step: int | None = None):
  """(setup, state, denoiser with EMA weights) of the single denoiser run in `workdir` (its
  checkpoint `step`, default the latest); another family or a sweep is refused by name,
  `reader` naming what asked."""
  setup, state = runs.load_run(workdir, step)
  if setup.config.get("family") != "diffusion":
    raise ValueError(f"{workdir} holds a {setup.config.get('family')!r} run; {reader} reads "
                     f"a denoiser run (configs/diffusion_sprites.py).")
  if sweep.plan(setup.config, setup.hp) is not None:
    raise ValueError(f"{workdir} is a sweep: extract one member first "
                     f"(python -m experiments.extract_member).")
  return setup, state, diffusion_family.denoiser(setup, state.params)


def hspace(config, log: Callable = viz.log) -> dict:
  """Directions in the h-space of the denoiser run config.diffusion.workdir (trained first
  from config.diffusion.config when absent), each method's K directions edited into
  DDIM sampling (lsx.diffusion.directions.EditGenerator: Asyrp's asymmetric edit for
  t >= hspace.t_edit) and scored by the traversal scorer over ±eval.span stds. Writes
  hspace_<method>.png, scores.json/csv/png in config.workdir; returns the scores."""
  c = config
  check_hspace(c)
  runs.ensure_trained(c.diffusion.workdir, c.diffusion.config)
  setup, state, den = load_denoiser(c.diffusion.workdir, "hspace")
  oracle = lm.oracle_from_config(setup.dataset, c.eval, log=log)
  os.makedirs(c.workdir, exist_ok=True)
  hs, span, steps = c.hspace, float(c.eval.span), int(c.eval.steps)
  # the VAE's prior samples beside, refused (wrong size) before anything is computed
  vae = (vae_prior(c.vae.workdir, c.vae.config, den.image_shape)
         if c.get("vae") and c.vae.workdir else None)
  directions, samples = hspace_directions(c, den, setup.dataset, oracle, log)
  data, _ = setup.dataset.sample(jax.random.key(int(hs.seed) + 2), samples.shape[0])
  # fresh data at the same number of images: the TV a perfect generator would reach
  quality = {"data (the floor at this number of samples)":
             sample_quality(data, oracle, setup.dataset),
             f"denoiser (DDIM, {int(hs.sample_steps)} steps)":
             sample_quality(samples, oracle, setup.dataset)}
  if vae is not None:  # the VAE's prior samples of the same data, beside
    name, generate = vae
    quality[name] = sample_quality(generate(jax.random.key(int(hs.seed) + 1), samples.shape[0]),
                                   oracle, setup.dataset)
  for name, q in quality.items():
    log(f"{name}: validity {q['validity']:.3f}, factor TV {q['tv_mean']:.3f}")
  sets = {}
  for m, u in directions.items():
    gen = hdirs.EditGenerator(den, u, setup.dataset, steps=int(hs.sample_steps),
                              num_anchors=int(c.eval.anchors) + int(c.eval.vp_anchors),
                              t_edit=int(hs.t_edit), asymmetric=bool(hs.asymmetric))
    sets[m] = hdirs.coefficient_traversal(gen, steps, span)
  scored, _ = ld.evaluate_sets(sets, oracle, c.eval)
  man = c.get("manipulation")
  if man is not None and int(man.anchors) > 0:  # each factor's best direction, held out
    for m, rows in manipulation_rows(sets, oracle, setup.dataset, man,
                                     h_anchors(man, int(hs.seed)), log).items():
      scored[m][0].update(rows[0])
  props = {}
  for m in hs.get("properties", ()):  # Asyrp's properties of the named methods' directions
    props[m] = h_properties.measure(sets[m][2], sets["random"][2], oracle, setup.dataset,
                                    den, scale=span, anchors=int(c.eval.vp_anchors),
                                    inversion_steps=int(hs.sample_steps), log=log)
  geometry = None
  pb = c.get("pullback")
  if pb is not None and int(pb.anchors) > 0:  # Park et al.'s claims on the pullback geometry
    geometry = h_properties.pullback_geometry(
        den, oracle, setup.dataset.factor_sizes, list(setup.dataset.factor_names),
        anchors=int(pb.anchors), steps=int(hs.sample_steps),
        k=int(pb.k), iters=int(pb.iters), early=float(pb.early), late=float(pb.late),
        edit=float(pb.edit), seed=int(hs.seed), log=log)
  for m, (trav, params, gen) in sets.items():
    frames = ld.traversal_frames(trav, ld.take(params, 0), gen.generate, gen.z[:3])
    viz.save_traversal_grid(frames, os.path.join(c.workdir, f"hspace_{m}.png"),
                            row_labels=direction_labels(scored[m][0], setup.dataset, m),
                            title=f"h-space directions: {m} (edits t >= {int(hs.t_edit)})")
  if wants_vae_rows(c):  # the same methods on the VAE decoder of the same data, beside
    scored.update(vae_decoder_rows(c, int(den.image_shape[0]), log))
  report(scored, c.workdir, oracle, factor_names=ordinal_names(setup.dataset), log=log,
         denoiser=c.diffusion.workdir, settings=hspace_settings(c),
         sample_quality=quality, properties=props,
         **({"pullback_geometry": geometry} if geometry is not None else {}))
  return scored
