"""Direction discovery as a training family: methods by name, trained by `lsx.train`.

`config.family = 'directions'` (configs/latentclr_sprites.py) learns K directions in the
latent space of a trained decoder (`config.decoder.workdir`) with a method from
`METHODS`. Learned methods are `Objective`s over the direction parameters, trained,
checkpointed, resumed and swept (seeds and traced hyperparameters as one program) by
`lsx.train.train` like any autoencoder; closed-form methods are fitted by
`closed_form(method, decoder, k, seed)`. The decoder is frozen: its parameters are
constants of the compiled step.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lsx.data import require_render
from lsx.directions._objectives import CONVENTIONS
from lsx.directions._param import KINDS, make_directions
from lsx.directions._score import active_latents, linear_traversal
from lsx.objective import Objective
from lsx.registry import Registry
from lsx.train import validate
from lsx.train.loop import train
from lsx.train.setup import make_run_optimizer, resolve_hp, Setup
from lsx.directions._closed_form import (ganspace_directions, jacobian_svd, pca_directions,
                                         sefa_directions)
from lsx.directions._objectives import (make_contrastive_objective, make_feature_map,
                                        make_voynov_objective)

METHODS = Registry("direction method")
CONTRASTIVE_HP = {"temperature": 0.5, "alpha": 1.0, "alpha_max": 1.0}
VOYNOV_HP = {"shift_min": 0.5, "shift_max": 6.0, "shift_weight": 0.25}


CODES = ("encoder", "prior")  # a method's training codes: encoder means, or z ~ N(0, I)


@dataclasses.dataclass(eq=False)
class Decoder:
  """A trained autoencoder seen as a generator `generate(z) -> images`, with a sample of
  its encoded data `z` [n, d] (and their factors) and the latent scale `sd` traversals
  are measured in (the mean std of the active latents)."""
  model: Any
  params: Any
  dataset: Any
  num_data: int = 2000
  data_seed: int = 7

  def __post_init__(self):
    self.generate = jax.jit(lambda z: self.model.generate(self.params, z))
    images, self.factors = self.dataset.sample(jax.random.key(self.data_seed),
                                               int(self.num_data))
    self.z = jax.jit(self.model.represent)(self.params, images)
    self.sd = float(np.asarray(self.z).std(0)[active_latents(self.z)].mean())

  def sample(self, rng, n):
    """A training batch of codes: the encoder means of `n` fresh data images."""
    return self.model.represent(self.params, self.dataset.sample(rng, n)[0]), None

  def sample_prior(self, rng, n):
    """A training batch of codes z ~ N(0, I) [n, d] (the prior the generator samples)."""
    return jax.random.normal(rng, (n, self.model.latent_dim)), None

  def sampler(self, codes: str, where: str = "codes"):
    """`sample` ('encoder': encoder means of data images) or `sample_prior` ('prior')."""
    if codes not in CODES:
      raise ValueError(f"config.{where} must be one of {CODES} (the codes a method trains "
                       f"from: the encoder means of data images, or z ~ N(0, I)), got {codes!r}.")
    return self.sample if codes == "encoder" else self.sample_prior

  def first_layer_kernel(self):
    """The decoder's first dense kernel [d, width] (the layer SeFa factorizes)."""
    d = self.model.latent_dim
    for name, layer in self.params["decoder"].items():  # in the order layers were created
      k = layer.get("kernel") if isinstance(layer, dict) else None
      if k is not None and k.ndim == 2 and k.shape[0] == d:
        return k
    raise ValueError("the decoder has no dense first layer reading the latent code; SeFa "
                     "needs one.")


@METHODS.register("latentclr", kind="learned", hp=CONTRASTIVE_HP)
def _latentclr(directions, decoder, *, features="decoder:ConvT4S2_0", convention="lsx"):
  feat = make_feature_map(features, decoder.model, decoder.params)
  return make_contrastive_objective(directions, feat, "latentclr", convention)


@METHODS.register("noiseclr", kind="learned", hp=CONTRASTIVE_HP)
def _noiseclr(directions, decoder, *, features="decoder:ConvT4S2_0", convention="lsx",
              negatives=0):
  feat = make_feature_map(features, decoder.model, decoder.params)
  return make_contrastive_objective(directions, feat, "noiseclr", convention, negatives)


@METHODS.register("voynov", kind="learned", hp=VOYNOV_HP)
def _voynov(directions, decoder, **_):
  return make_voynov_objective(directions, decoder.generate, decoder.model.image_shape)


@METHODS.register("pca", kind="closed_form")
def _pca(decoder, z, k, seed, **_):
  return pca_directions(z, k)[0]


@METHODS.register("ganspace", kind="closed_form")
def _ganspace(decoder, z, k, seed, *, features="decoder:ConvT4S2_0"):
  return ganspace_directions(make_feature_map(features, decoder.model, decoder.params), z, k)[0]


@METHODS.register("sefa", kind="closed_form")
def _sefa(decoder, z, k, seed, **_):
  return sefa_directions(decoder.first_layer_kernel(), k)[0]


@METHODS.register("jacobian", kind="closed_form")
def _jacobian(decoder, z, k, seed, **_):
  return jacobian_svd(lambda zz: decoder.generate(zz[None])[0], z[:64], k, iters=50,
                      rng=jax.random.key(seed))[0]


def method_kind(method: str) -> str:
  return METHODS.get(method).info["kind"]


def method_hp(method: str) -> dict:
  """The traced hyperparameters a learned method reads, with defaults."""
  return dict(METHODS.get(method).info.get("hp", {}))


def make_method_objective(method: str, directions, decoder: Decoder,
                          features="decoder:ConvT4S2_0", convention: str = "lsx",
                          negatives: int = 0) -> Objective:
  """A learned method's `Objective` over {"directions": ..., [its own networks]};
  `negatives`: NoiseCLR's reference estimator's negative directions a step (0: all)."""
  if method_kind(method) != "learned":
    raise ValueError(f"{method!r} is a closed-form method: nothing to train; fit it with "
                     f"lsx.directions.closed_form.")
  init, loss = METHODS.build(method, directions, decoder,
                             options={"features": features, "convention": convention,
                                      "negatives": int(negatives)},
                             strict=False)
  post = None
  if directions.update_stats is not None:  # batch norm: the running statistics
    if method not in ("latentclr", "noiseclr"):
      raise ValueError(f"'{directions.kind}' directions (batch norm) train with the batch's "
                       f"statistics in the contrastive methods only (latentclr, noiseclr), "
                       f"not {method!r}; use kind='nonlinear'.")
    post = lambda params, stats, hp: {
        **params, "directions": directions.update_stats(params["directions"],
                                                        stats["directions_stats"],
                                                        stats["running"])}
  return Objective(method, init, loss, method_hp(method), info={"directions": directions},
                   post_update=post)


def closed_form(method: str, decoder: Decoder, k: int, seed: int,
                features="decoder:ConvT4S2_0"):
  """[min(k, d), d] directions of a closed-form method; `seed` picks the half of the
  encoded data it is fitted on (and a power iteration's start)."""
  if method_kind(method) != "closed_form":
    raise ValueError(f"{method!r} is learned: train it with lsx.train.train.")
  z = decoder.z
  idx = jax.random.permutation(jax.random.key(seed), z.shape[0])[: z.shape[0] // 2]
  k = min(int(k), decoder.model.latent_dim)
  return METHODS.build(method, decoder, z[idx], k, int(seed), options={"features": features},
                       strict=False)


def make_config_directions(config, decoder: Decoder):
  """The `Directions` of `config.directions` in the decoder's latent space."""
  d = config.directions
  return make_directions(d.kind, int(d.num), decoder.model.latent_dim,
                         hidden=int(d.get("hidden", 0)) or None)


def _init_keys(rng):
  return jax.random.fold_in(rng, 1), jax.random.fold_in(rng, 2)


def build_directions(config, runs=None, decoder: Decoder | None = None):
  """The `Setup` of a learned direction method on the decoder in config.decoder.workdir."""
  method = config.directions.method
  validate.positive(config, "directions.num", "eval.steps", "eval.anchors", "eval.vp_anchors",
                    "eval.data")
  d = config.directions
  if d.kind not in KINDS:
    raise ValueError(f"config.directions.kind must be one of {KINDS}, got {d.kind!r}.")
  if d.get("convention", "lsx") not in CONVENTIONS:
    raise ValueError(f"config.directions.convention must be one of {CONVENTIONS}, got "
                     f"{d.convention!r}.")
  feats = d.get("features", "pixels")
  if isinstance(feats, str) and not (feats in ("pixels", "encoder") or
                                     (feats.startswith("decoder:") and len(feats) > 8)):
    raise ValueError(f"config.directions.features must be 'pixels', 'encoder' or "
                     f"'decoder:<submodule>', got {feats!r}.")
  if method_kind(method) != "learned":
    raise ValueError(f"config.directions.method={method!r} is closed form: there is nothing "
                     f"to train (experiments.discover fits and scores it).")
  decoder = decoder or runs.load_decoder(config.decoder.workdir,
                                         int(config.eval.get("data", 2000)))
  require_render(decoder.dataset, "scoring directions")
  dirs = make_config_directions(config, decoder)
  objective = make_method_objective(method, dirs, decoder, config.directions.features,
                                    config.directions.get("convention", "lsx"),
                                    int(config.directions.get("negatives", 0)))
  return Setup(config, decoder.dataset, decoder.model, objective,
               make_run_optimizer(config, objective), resolve_hp(config, objective),
               sample=decoder.sampler(d.get("codes", "encoder"), "directions.codes"),
               init_keys=_init_keys, finish=None,
               log_keys=("cos_same_direction", "cos_other_directions", "ce", "accuracy"))


def method_config(config, method: str, workdir: str):
  """`config` for `method`: its hyperparameters (the config's values where it has them,
  the method's defaults otherwise) and `workdir`."""
  c = config.copy_and_resolve_references()
  keep = {k: v for k, v in config.hp.items() if k in method_hp(method) or k in ("lr", "weight_decay")}
  with c.unlocked():
    c.directions.method = method
    c.hp = {**method_hp(method), **keep}
    c.workdir = workdir
    c.sweep.hp = {k: v for k, v in dict(c.sweep.hp).items() if k in c.hp}
  c.lock()
  return c


def fit(config, method: str, decoder: Decoder, workdir: str, print_fn=None):
  """(Traversal, stacked params [members, ...]) of `method` on `decoder`: a learned
  method trained by `lsx.train.train` in `workdir` (resumed if it holds a checkpoint; its
  sweep's members are `config.sweep`'s), a closed form fitted once per `config.sweep.seed`
  (or `config.seed`)."""
  e = config.eval
  step = float(e.span) * decoder.sd / int(e.steps)
  if method_kind(method) == "closed_form":
    seeds = tuple(config.sweep.seed) or (int(config.seed),)
    mats = jnp.stack([closed_form(method, decoder, config.directions.num, s,
                                  config.directions.features) for s in seeds])
    dirs = make_directions("global", mats.shape[1], mats.shape[2])
    return linear_traversal(dirs, int(e.steps), step), {"d": mats}
  c = method_config(config, method, workdir)
  setup = build_directions(c, decoder=decoder)
  state, _ = train(c, workdir, setup=setup, print_fn=print_fn)
  params = state.params["directions"]
  if not c.sweep.seed and not c.sweep.hp:
    params = jax.tree.map(lambda a: a[None], params)
  return linear_traversal(setup.objective.directions, int(e.steps), step), params

