"""A supervised factor classifier as the factor oracle: the alternative to `grid_oracle`.

`grid_oracle` reads a decoded image's factors by nearest neighbour over the whole rendered
factor grid: exact on the data manifold, but it renders the grid (737,280 sprites) at
every call and, off the manifold, returns whichever grid image happens to be closest in
pixels. `classifier_oracle` trains a small CNN once, on images rendered from random
factors inside the training step, to predict every factor (one softmax head per factor),
and reads a batch of images with one forward pass.

Decoded images are blurry and grey where renders are binary, so by default the training
images are degraded the way a decoder degrades them: a Gaussian blur of random width
(`blur` = the largest sigma, in pixels) and a random contrast/offset. The classifier's
held-out accuracy per factor (exact and within one index) is measured on fresh renders
and returned with the oracle: it says how far to trust the readings.

The oracle's off-manifold distance is the root-mean-square pixel distance between the
image and the rendering of the factors it read (for `grid_oracle` it is the distance to
the nearest grid image; here an upper bound of it).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable

import jax
import jax.numpy as jnp
import jax.scipy.ndimage
import numpy as np

from lsx.metrics.directions import grid_oracle, ordinal_mask
from lsx.nn.conv import Conv4S2


def _gaussian_blur(x, sigma, radius: int):
  """x [H, W, C] blurred by a separable Gaussian of width `sigma` (traced; 0 = identity)."""
  t = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  w = jnp.exp(-0.5 * (t / jnp.maximum(sigma, 1e-3)) ** 2)
  w = jnp.where(sigma > 1e-3, w, (t == 0).astype(jnp.float32))
  w = w / w.sum()
  pad = jnp.pad(x, ((radius, radius), (radius, radius), (0, 0)), mode="edge")
  h, wd = x.shape[0], x.shape[1]
  rows = sum(w[i] * pad[i:i + h] for i in range(2 * radius + 1))          # [H, W+2r, C]
  return sum(w[i] * rows[:, i:i + wd] for i in range(2 * radius + 1))     # [H, W, C]


def degrade(rng, images, blur: float):
  """Decoder-like corruption of clean renders [n, H, W, C]: a Gaussian blur with sigma ~
  U[0, blur] pixels, then contrast ~ U[0.6, 1] and an offset ~ U[0, 0.15] (1 - contrast)."""
  n = images.shape[0]
  k1, k2, k3 = jax.random.split(rng, 3)
  sigma = jax.random.uniform(k1, (n,), maxval=blur)
  radius = max(1, int(np.ceil(2.5 * blur)))
  x = jax.vmap(lambda im, s: _gaussian_blur(im, s, radius))(images, sigma) if blur > 0 else images
  contrast = jax.random.uniform(k2, (n, 1, 1, 1), minval=0.6, maxval=1.0)
  offset = jax.random.uniform(k3, (n, 1, 1, 1), maxval=0.15) * (1.0 - contrast)
  return offset + contrast * x


ROTATION_ANGLES = tuple(np.deg2rad([22.5, 45.0, 67.5, 90.0, 135.0, 180.0]).tolist())


def rotation_anisotropy(images, angles=ROTATION_ANGLES, presmooth: float = 1.0):
  """[n]: how much an image changes when turned about its centre of mass, the largest
  relative L2 change max_a ||rot_a(I) - I|| / ||I|| over `angles` (radians), with I the
  image (channels averaged) minus its median (the background), clipped at 0, after a
  Gaussian presmoothing of `presmooth` pixels (so a disc's staircase edge does not read as
  a shape). 0 for an image no turn changes (a round blob: it has no orientation), ~0.5 for
  a square, ~0.8 for a 2:1 ellipse (the defaults take a square's 45 degree turn and an
  ellipse's and a heart's half turn). Pure and jit-able; an empty image scores 0."""
  x = jnp.asarray(images, jnp.float32)
  if x.ndim != 4:
    raise ValueError(f"images must be [n, H, W, C], got shape {x.shape}.")
  x = x.mean(-1, keepdims=True)
  if presmooth > 0:
    radius = max(1, int(np.ceil(2.5 * presmooth)))
    x = jax.vmap(lambda im: _gaussian_blur(im, jnp.float32(presmooth), radius))(x)
  x = x[..., 0]
  h, w = x.shape[1:]
  yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                        indexing="ij")
  angles = jnp.asarray(angles, jnp.float32)

  def one(img):
    img = jnp.maximum(img - jnp.median(img), 0.0)
    mass = img.sum()
    safe = jnp.where(mass > 0, mass, 1.0)
    cy, cx = (img * yy).sum() / safe, (img * xx).sum() / safe
    norm = jnp.sqrt((img ** 2).sum())

    def change(a):
      c, s = jnp.cos(a), jnp.sin(a)
      dy, dx = yy - cy, xx - cx
      turned = jax.scipy.ndimage.map_coordinates(
          img, [cy + c * dy - s * dx, cx + s * dy + c * dx], order=1, mode="constant", cval=0.0)
      return jnp.sqrt(((turned - img) ** 2).sum())

    worst = jax.vmap(change)(angles).max()
    return jnp.where(norm > 0, worst / jnp.where(norm > 0, norm, 1.0), 0.0)

  return jax.vmap(one)(x)


def _net(sizes: tuple[int, ...], width: int):
  import flax.linen as nn


  class FactorNet(nn.Module):
    """Conv4S2 x 4 (width, width, 2w, 2w) -> Dense 256 -> one logit block per factor."""

    @nn.compact
    def __call__(self, x):
      for f in (width, width, 2 * width, 2 * width):
        x = nn.relu(Conv4S2(f)(x))
      x = nn.relu(nn.Dense(256)(x.reshape(x.shape[0], -1)))
      return nn.Dense(int(sum(sizes)))(x)

  return FactorNet()


def _split(logits, sizes):
  return jnp.split(logits, np.cumsum(sizes)[:-1], axis=-1)


@dataclasses.dataclass(frozen=True)
class ClassifierOracle:
  """A trained factor classifier. Calling it reads images like `grid_oracle`'s function:
  `oracle(images [n, H, W, C]) -> (factor indices [n, F] int32, RMS pixel distance [n])`.
  `accuracy` / `within_one`: held-out per-factor accuracy on degraded fresh renders
  (`within_one`: off by at most one index; exact for a categorical factor)."""
  read: Callable
  params: dict
  accuracy: dict
  within_one: dict
  train_seconds: float

  def __call__(self, images):
    return self.read(self.params, images)


def classifier_oracle(dataset, rng=None, *, steps: int = 3000, batch_size: int = 64,
                      width: int = 32, lr: float = 1e-3, blur: float = 1.5,
                      eval_size: int = 2048, log: Callable | None = None) -> ClassifierOracle:
  """Train a factor classifier on `dataset`'s renders (random factors, degraded by
  `degrade(.., blur)`; `blur=0` trains on clean renders) for `steps` Adam steps, and
  return it as an oracle. Deterministic given `rng` (default key 0)."""
  import optax

  for name in ("render", "sample_factors", "factor_sizes", "image_shape"):
    if not hasattr(dataset, name):
      raise TypeError(f"classifier_oracle needs a procedural dataset that renders factors; "
                      f"{type(dataset).__name__} has no {name!r}.")
  if steps < 1 or batch_size < 1:
    raise ValueError(f"steps={steps} and batch_size={batch_size} must be positive.")
  h, w = dataset.image_shape[:2]
  if h % 16 or w % 16:
    raise ValueError(f"classifier_oracle's four stride-2 convolutions need an image size "
                     f"divisible by 16, got {h}x{w}.")
  sizes = tuple(int(s) for s in dataset.factor_sizes)
  net = _net(sizes, int(width))
  opt = optax.adam(lr)
  rng = jax.random.key(0) if rng is None else rng
  k_init, k_train, k_eval = jax.random.split(rng, 3)

  def batch(key, n):
    kf, kd = jax.random.split(key)
    f = dataset.sample_factors(kf, n)
    return degrade(kd, dataset.render(f), blur), f

  def loss(p, x, f):
    logits = _split(net.apply(p, x), sizes)
    return sum(jnp.mean(optax.softmax_cross_entropy_with_integer_labels(l, f[:, j]))
               for j, l in enumerate(logits))

  @jax.jit
  def train(params, key):
    def body(carry, k):
      p, s = carry
      x, f = batch(k, batch_size)
      l, g = jax.value_and_grad(loss)(p, x, f)
      u, s = opt.update(g, s, p)
      return (optax.apply_updates(p, u), s), l
    (params, _), losses = jax.lax.scan(body, (params, opt.init(params)),
                                       jax.random.split(key, steps))
    return params, losses

  def predict(p, images):
    return jnp.stack([jnp.argmax(l, -1) for l in _split(net.apply(p, images), sizes)],
                     -1).astype(jnp.int32)

  @jax.jit
  def read(p, images):
    images = jnp.asarray(images, jnp.float32)
    f = predict(p, images)
    d = jnp.sqrt(jnp.mean((dataset.render(f) - images) ** 2, axis=(1, 2, 3)))
    return f, d

  t0 = time.perf_counter()
  params = jax.jit(net.init)(k_init, jnp.zeros((1,) + tuple(dataset.image_shape), jnp.float32))
  params, losses = train(params, k_train)
  losses = np.asarray(losses)
  if not np.all(np.isfinite(losses)):
    raise FloatingPointError("classifier_oracle: non-finite training loss; lower lr.")
  x, f = jax.jit(lambda k: batch(k, eval_size))(k_eval)
  pred = np.asarray(jax.jit(predict)(params, x))
  f = np.asarray(f)
  names = getattr(dataset, "factor_names", tuple(f"factor{j}" for j in range(len(sizes))))
  periods = np.asarray(dataset.factor_periods(f), np.float32) if hasattr(
      dataset, "factor_periods") else np.zeros(f.shape, np.float32)
  diff = np.abs(pred - f).astype(np.float32)
  circ = periods > 0  # equal modulo the period a symmetric shape repeats after
  diff = np.where(circ, np.abs(np.mod(diff + 0.5 * periods, np.where(circ, periods, 1.0))
                               - 0.5 * periods), diff)
  ordinal = ordinal_mask(dataset) if hasattr(dataset, "factor_names") else np.ones(len(sizes), bool)
  acc = {n: float(np.mean(diff[:, j] < 0.5)) for j, n in enumerate(names)}
  within = {n: float(np.mean(diff[:, j] <= (1.0 + 1e-6 if ordinal[j] else 0.5)))
            for j, n in enumerate(names)}
  took = time.perf_counter() - t0
  if log is not None:
    log(f"factor classifier: {steps} steps in {took:.0f}s, final loss {losses[-50:].mean():.3f}; "
        "held-out accuracy " + ", ".join(f"{n} {acc[n]:.2f} (+-1: {within[n]:.2f})"
                                           for n in names))
  return ClassifierOracle(read, params, acc, within, took)


ORACLES = ("grid", "classifier")


def check_oracle(kind: str) -> None:
  """Raise before any work when `kind` names no oracle (a config's eval.oracle)."""
  if kind not in ORACLES:
    raise ValueError(f"Unknown oracle {kind!r}; choose one of {ORACLES} (config eval.oracle).")


def make_oracle(dataset, kind: str = "grid", *, pool: int = 1, steps: int = 3000,
                rng=None, log: Callable | None = None) -> Callable:
  """The factor oracle an experiment's `eval.oracle` names: 'grid' (`grid_oracle`, images
  compared after `pool` x `pool` average pooling) or 'classifier' (`classifier_oracle`
  trained for `steps` steps). Both read `images -> (factor indices, distance)`."""
  if kind == "grid":
    return grid_oracle(dataset, pool=pool)
  if kind == "classifier":
    return classifier_oracle(dataset, rng, steps=steps, log=log)
  check_oracle(kind)
  raise AssertionError(kind)


def oracle_from_config(dataset, eval_config, *, pool: int | None = None, seed: int = 7,
                       log: Callable | None = None) -> Callable:
  """The oracle a run's `eval` section names (eval.oracle, eval.oracle_pool or `pool`,
  eval.oracle_steps; a classifier trained from key `seed`): every traversal score builds
  its oracle here."""
  return make_oracle(dataset, str(eval_config.oracle),
                     pool=int(pool or eval_config.get("oracle_pool", 1)),
                     steps=int(eval_config.get("oracle_steps", 3000)),
                     rng=jax.random.key(int(seed)), log=log)


def oracle_info(oracle) -> dict:
  """What an oracle is, for the reports: a classifier's accuracies, or the grid."""
  if isinstance(oracle, ClassifierOracle):
    return {"kind": "classifier", "accuracy": oracle.accuracy, "within_one": oracle.within_one}
  return {"kind": "grid"}
