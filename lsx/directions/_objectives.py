"""Objectives that learn directions: contrastive (LatentCLR, NoiseCLR form) and the
reconstructor baseline (Voynov & Babenko 2020). All are `loss(params, z, rng, hp)` with
every hyperparameter in `hp` traced, so `lsx.train.make_train_step` trains them and a
seed/hyperparameter sweep is a `vmap` over (state, hp).
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from lsx.directions._param import Directions, normalize
from lsx.nn.conv import Conv4S2

FORMS = ("latentclr", "noiseclr")
# 'lsx': lsx's forms (docs/directions.md); 'reference': the public code's computation
# (latentclr @f02a70d colat/loss.py + projector, NoiseCLR @f98e7c8 core/loss.py)
CONVENTIONS = ("lsx", "reference")


def make_feature_map(name, model, model_params) -> Callable:
  """phi o G as a function of latents: fn(z [n, d]) -> features [n, F].

  'pixels'          the decoded image, flattened;
  'encoder'         the model's representation (encoder mean) of the decoded image;
  'decoder:NAME'    the output of the decoder's submodule NAME (e.g. 'decoder:ConvT4S2_0',
                    the first transposed convolution: an intermediate generator layer);
  a callable        used as is.
  """
  if callable(name):
    return name
  gen = lambda z: model.generate(model_params, z)
  if name == "pixels":
    return lambda z: gen(z).reshape(z.shape[0], -1)
  if name == "encoder":
    return lambda z: model.represent(model_params, gen(z))
  if isinstance(name, str) and name.startswith("decoder:"):
    layer = name.split(":", 1)[1]
    net = getattr(model, "decoder_net", None)
    if net is None:
      raise ValueError("this model exposes no decoder module; use 'pixels' or 'encoder'.")
    known = sorted(model_params["decoder"])
    if layer not in known:
      raise ValueError(f"decoder has no submodule {layer!r}; known: {known}.")

    def feat(z):
      _, inter = net.apply({"params": model_params["decoder"]}, z,
                           capture_intermediates=lambda mdl, _: mdl.name == layer)
      out = inter["intermediates"][layer]["__call__"][0]
      return out.reshape(z.shape[0], -1)
    return feat
  raise ValueError(f"Unknown feature map {name!r}; use 'pixels', 'encoder', "
                   f"'decoder:<submodule>' or a callable.")


def contrastive_features(feature_fn: Callable, directions: Directions, params, z, alpha,
                         normalize_first: bool = False):
  """F [K, N, D]: n(phi(G(z_n + Delta_k(z_n))) - phi(G(z_n))) for every direction and sample
  (n: unit rows). `normalize_first`: n(n(phi(G(z + Delta))) - n(phi(G(z)))), as the public
  LatentCLR code's projector normalizes both features before the difference."""
  return contrastive_features_and_stats(feature_fn, directions, params, z, alpha,
                                        normalize_first)[0]


def contrastive_features_and_stats(feature_fn: Callable, directions: Directions, params, z,
                                   alpha, normalize_first: bool = False):
  """(`contrastive_features`, the directions' batch statistics [K, ...] or None): kinds
  with batch norm shift the batch in training mode (`Directions.batch_shift`)."""
  k = directions.num
  shifted, stats = jax.vmap(lambda kk: directions.batch_shift(params, z, kk, alpha))(
      jnp.arange(k))  # [K, N, d]
  h0 = feature_fn(z)
  h1 = feature_fn(shifted.reshape(-1, z.shape[-1])).reshape((k,) + h0.shape)
  if normalize_first:
    h0, h1 = normalize(h0), normalize(h1)
  return normalize(h1 - h0[None]), stats


def _log_mean_exp(logits, mask, axes):
  big = jnp.where(mask, logits, -jnp.inf)
  return jax.nn.logsumexp(big, axis=axes) - jnp.log(jnp.sum(mask, axis=axes))


def latentclr_loss(features, temperature):
  """LatentCLR (Yüksel et al. 2021; docs/directions.md): S = |F F^T|, E = exp(S / tau); for each (k, i) the positives are
  the same direction on the other samples, the negatives every other direction on all
  samples; L = -mean_(k,i) log(mean_pos E / mean_neg E). features: [K, N, D], unit rows."""
  k, n = features.shape[:2]
  if k < 2 or n < 2:
    raise ValueError(f"the contrastive loss needs >= 2 directions and >= 2 samples, got "
                     f"K={k}, N={n}.")
  s = jnp.abs(jnp.einsum("kid,ljd->kilj", features, features)) / temperature
  same_k = jnp.eye(k, dtype=bool)[:, None, :, None]
  other_i = ~jnp.eye(n, dtype=bool)[None, :, None, :]
  pos = _log_mean_exp(s, same_k & other_i, (2, 3))
  neg = _log_mean_exp(s, jnp.broadcast_to(~same_k, s.shape), (2, 3))
  return -jnp.mean(pos - neg)


def latentclr_loss_reference(features, temperature):
  """The public LatentCLR loss (colat/loss.py with abs=True, reduce='mean'): E =
  exp(|S| * temperature) -- the public code multiplies by its `temperature` (0.5 in its
  configs: an effective tau of 2) --, per row (k, i) pos = mean over the same direction's
  other samples, neg = mean over every other direction's samples, L = -mean log(pos / neg).
  Equal to `latentclr_loss(features, 1 / temperature)`."""
  return latentclr_loss(features, 1.0 / temperature)


def _noiseclr_log_means(features, temperature, axes):
  """log-mean-exp of cos/temperature over NoiseCLR's positives (a direction on two
  different inputs) and negatives (two directions on one input), reduced over `axes`."""
  k, n = features.shape[:2]
  if k < 2 or n < 2:
    raise ValueError(f"the contrastive loss needs >= 2 directions and >= 2 samples, got "
                     f"K={k}, N={n}.")
  s = jnp.einsum("kid,ljd->kilj", features, features) / temperature
  same_k = jnp.eye(k, dtype=bool)[:, None, :, None]
  same_i = jnp.eye(n, dtype=bool)[None, :, None, :]
  return (_log_mean_exp(s, same_k & ~same_i, axes), _log_mean_exp(s, ~same_k & same_i, axes))


def noiseclr_loss_reference(features, temperature, anchor=None, negatives=None):
  """The public NoiseCLR loss (core/loss.py): exp(cos / temperature) summed over the
  positive and the negative pairs, L = -log(mean_pos / mean_neg): the log of a ratio of
  means, not a mean of per-row log ratios.

  With `anchor` (a direction index) the public trainer's estimator (core/trainer.py): the
  positives are the anchor direction on every pair of inputs i < j, the negatives the
  directions `negatives` ([M] indices, none the anchor; default every other one) on the
  same input as the anchor. Without it, every direction is an anchor and all pairs of the
  batch are pooled."""
  if anchor is None:
    pos, neg = _noiseclr_log_means(features, temperature, (0, 1, 2, 3))
    return -(pos - neg)
  k, n = features.shape[:2]
  if k < 2 or n < 2:
    raise ValueError(f"the contrastive loss needs >= 2 directions and >= 2 samples, got "
                     f"K={k}, N={n}.")
  if negatives is None:
    negatives = (anchor + 1 + jnp.arange(k - 1)) % k
  fa = features[anchor]  # [N, D]
  s_pos = fa @ fa.T / temperature
  pos = _log_mean_exp(s_pos, ~jnp.eye(n, dtype=bool), (0, 1))  # i != j: the i < j mean
  s_neg = jnp.einsum("id,mid->mi", fa, features[negatives]) / temperature
  neg = jax.nn.logsumexp(s_neg) - jnp.log(s_neg.size)
  return -(pos - neg)


def sample_negatives(rng, num: int, anchor, count: int):
  """`count` distinct directions other than `anchor` among `num`, uniformly (the public
  trainer's random.sample of `tokens_per_iter` other directions)."""
  return (anchor + 1 + jax.random.permutation(rng, num - 1)[:count]) % num


def noiseclr_loss(features, temperature):
  """NoiseCLR form (Dalva & Yanardag 2024; docs/directions.md): positives are the same direction on other inputs, negatives
  other directions on the same input; L = -mean log(mean_pos exp(cos/tau) / mean_neg
  exp(cos/tau)). features: [K, N, D], unit rows."""
  pos, neg = _noiseclr_log_means(features, temperature, (2, 3))
  return -jnp.mean(pos - neg)


def make_contrastive_objective(directions: Directions, feature_fn: Callable,
                               form: str = "latentclr", convention: str = "lsx",
                               negatives: int = 0) -> tuple[Callable, Callable]:
  """(init(rng) -> params, loss(params, z [N, d], rng, hp) -> (loss, aux)).

  hp: temperature, alpha (the shift length), alpha_max (alpha is drawn per batch from
  U[alpha, alpha_max] when alpha_max > alpha; an lsx option: a per-batch alpha).
  `convention`: 'lsx' (exp(S / temperature), the raw feature difference, NoiseCLR's
  per-row log ratios) or 'reference' (the public code: LatentCLR's exp(S * temperature)
  on differences of unit features, NoiseCLR's log of a ratio of means with one random
  anchor direction per step against `negatives` random other directions, 0: all K - 1;
  `noiseclr_loss_reference`)."""
  if form not in FORMS:
    raise ValueError(f"Unknown contrastive form {form!r}; choose one of {FORMS}.")
  if convention not in CONVENTIONS:
    raise ValueError(f"Unknown convention {convention!r}; choose one of {CONVENTIONS}.")
  if int(negatives) < 0:
    raise ValueError(f"negatives must be >= 0 (0: every other direction), got {negatives}.")
  ref = convention == "reference"
  loss_of = {("latentclr", False): latentclr_loss, ("noiseclr", False): noiseclr_loss,
             ("latentclr", True): latentclr_loss_reference,
             ("noiseclr", True): noiseclr_loss_reference}[(form, ref)]

  def init(rng):
    return {"directions": directions.init(rng)}

  def loss(params, z, rng, hp):
    hi = jnp.maximum(hp["alpha_max"], hp["alpha"]) if "alpha_max" in hp else hp["alpha"]
    alpha = hp["alpha"] + (hi - hp["alpha"]) * jax.random.uniform(rng)
    f, stats = contrastive_features_and_stats(feature_fn, directions, params["directions"],
                                              z, alpha,
                                              normalize_first=ref and form == "latentclr")
    if ref and form == "noiseclr":  # one anchor a step, sampled negatives
      k_a, k_n = jax.random.split(jax.random.fold_in(rng, 1))
      num = directions.num
      anchor = jax.random.randint(k_a, (), 0, num)
      count = min(int(negatives) or num - 1, num - 1)
      value = loss_of(f, hp["temperature"], anchor, sample_negatives(k_n, num, anchor, count))
    else:
      value = loss_of(f, hp["temperature"])
    # diagnostics: mean |cos| between the same direction on different samples, and
    # between different directions on the same sample
    c = jnp.abs(jnp.einsum("kid,ljd->kilj", f, f))
    kk, n = f.shape[:2]
    same_k = jnp.eye(kk)[:, None, :, None]
    same_i = jnp.eye(n)[None, :, None, :]
    pos = jnp.sum(c * same_k * (1 - same_i)) / (kk * n * (n - 1))
    neg = jnp.sum(c * (1 - same_k) * same_i) / (kk * (kk - 1) * n)
    aux = {"cos_same_direction": pos, "cos_other_directions": neg}
    if stats is not None:  # batch-norm directions: running statistics (post_update)
      # the running statistics as the step read them: the optimizer's update of params
      # (coupled weight decay moves every leaf) never reaches them
      aux["_post"] = {"directions_stats": stats,
                      "running": jax.lax.stop_gradient(params["directions"]["stats"])}
    return value, aux

  return init, loss


class Reconstructor(nn.Module):
  """Voynov & Babenko's reconstructor: from the image pair (G(z), G(z + eps u_k)) stacked
  on channels, logits over the K directions and the shift eps."""
  num: int
  width: int = 32

  @nn.compact
  def __call__(self, x0, x1):
    x = jnp.concatenate([x0, x1], -1)
    for w in (self.width, self.width * 2, self.width * 2):
      x = nn.relu(Conv4S2(w)(x))
    x = nn.relu(nn.Dense(128)(x.reshape(x.shape[0], -1)))
    return nn.Dense(self.num)(x), nn.Dense(1)(x)[:, 0]


def sample_shifts(rng, n, num, shift_min, shift_max):
  """Voynov & Babenko's sampling: k ~ U{0..K-1}, eps = sign * U[shift_min, shift_max]."""
  k_dir, k_mag, k_sign = jax.random.split(rng, 3)
  k = jax.random.randint(k_dir, (n,), 0, num)
  mag = jax.random.uniform(k_mag, (n,), minval=shift_min, maxval=shift_max)
  return k, jnp.where(jax.random.bernoulli(k_sign, 0.5, (n,)), mag, -mag)


def make_voynov_objective(directions: Directions, generate: Callable, image_shape,
                          width: int = 32) -> tuple[Callable, Callable]:
  """(init, loss) of Voynov & Babenko: L = CE(k_hat, k) + shift_weight * |eps_hat - eps|,
  eps = sign * U[shift_min, shift_max] (paper: eps ~ U[-6, 6], |eps| >= 0.5, weight 0.25).
  `generate(z [n, d]) -> images [n, H, W, C]` is the frozen generator. hp: shift_min,
  shift_max, shift_weight."""
  recon = Reconstructor(directions.num, width)
  image_shape = tuple(int(s) for s in image_shape)

  def init(rng):
    k1, k2 = jax.random.split(rng)
    x = jnp.zeros((1,) + image_shape, jnp.float32)
    return {"directions": directions.init(k1), "reconstructor": recon.init(k2, x, x)["params"]}

  def terms(params, z, k, eps, hp):
    """The loss for given directions k [n] and shifts eps [n] (sampling left out)."""
    n = z.shape[0]
    z1 = jax.vmap(lambda zz, kk, ee: directions.shift(params["directions"], zz, kk, ee))(z, k, eps)
    x = generate(jnp.concatenate([z, z1], 0))
    logits, eps_hat = recon.apply({"params": params["reconstructor"]}, x[:n], x[n:])
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, k).mean()
    shift_err = jnp.abs(eps_hat - eps).mean()
    acc = jnp.mean(jnp.argmax(logits, -1) == k)
    return ce + hp["shift_weight"] * shift_err, {"ce": ce, "shift_err": shift_err,
                                                 "accuracy": acc}

  def loss(params, z, rng, hp):
    k, eps = sample_shifts(rng, z.shape[0], directions.num, hp["shift_min"], hp["shift_max"])
    return terms(params, z, k, eps, hp)

  loss.terms = terms
  loss.reconstructor = recon
  return init, loss
