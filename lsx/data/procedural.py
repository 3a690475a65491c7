"""Procedural datasets rendered from ground-truth factor indices by pure JAX.

Both datasets follow the factor grids of their real counterparts (dSprites and
Shapes3D) so metrics computed on them mean the same thing. Rendering is a pure,
jittable function of integer factor indices: training batches are drawn on device
inside the scanned training loop, with no input pipeline.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np


def _grid(size: int) -> tuple[jax.Array, jax.Array]:
  """Pixel-centre coordinates in [0, 1]: (x [H,W], y [H,W]), y grows downwards."""
  c = (jnp.arange(size, dtype=jnp.float32) + 0.5) / size
  return jnp.meshgrid(c, c, indexing="xy")


def _sample_factors(rng, n, sizes) -> jax.Array:
  keys = jax.random.split(rng, len(sizes))
  cols = [jax.random.randint(k, (n,), 0, s) for k, s in zip(keys, sizes)]
  return jnp.stack(cols, axis=1).astype(jnp.int32)


class _Procedural:
  """Shared behaviour: factor bookkeeping, sampling, validation."""
  factor_names: tuple[str, ...]
  factor_sizes: tuple[int, ...]
  image_shape: tuple[int, int, int]
  has_render = True
  # factors whose index is a label, not a quantity (no order: direction scores skip them)
  categorical: tuple[str, ...] = ("shape",)

  def __post_init__(self):
    if not isinstance(self.size, (int, np.integer)) or isinstance(self.size, bool) or self.size < 8:
      raise ValueError(f"{type(self).__name__}: size must be an integer >= 8 (pixels per "
                       f"side), got {self.size!r}; set config.data.size (default 64).")

  @property
  def num_examples(self) -> int:
    return int(np.prod(self.factor_sizes))

  def sample_factors(self, rng, n: int) -> jax.Array:
    return _sample_factors(rng, n, self.factor_sizes)

  def factor_periods(self, factors) -> np.ndarray:
    """Float [..., F]: the period, in index units, after which each factor's value shows
    the same image again given the other factors (0: not circular). Scoring a traversal
    compares circular readings modulo this period."""
    factors = np.asarray(factors)
    return np.zeros(factors.shape, np.float32)

  def sample(self, rng, n: int):
    """Draw `n` images with uniformly random factors: (images [n,H,W,C], factors [n,F])."""
    factors = self.sample_factors(rng, n)
    return self.render(factors), factors

  def render(self, factors) -> jax.Array:
    factors = jnp.asarray(factors)
    if factors.ndim != 2 or factors.shape[1] != len(self.factor_sizes):
      raise ValueError(
          f"{type(self).__name__}.render expects factors of shape [n, {len(self.factor_sizes)}] "
          f"({', '.join(self.factor_names)}), got {factors.shape}.")
    return jax.vmap(self._render_one)(factors.astype(jnp.int32))

  def index_to_factors(self, index) -> jax.Array:
    """Row-major index into the full factor grid -> factor indices [..., F]."""
    index = jnp.asarray(index)
    out = []
    for s in reversed(self.factor_sizes):
      out.append(index % s)
      index = index // s
    return jnp.stack(out[::-1], axis=-1).astype(jnp.int32)

  def _render_one(self, f):  # pragma: no cover - abstract
    raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Sprites(_Procedural):
  """dSprites-like binary sprites, 64x64x1.

  Factors (dSprites grid): shape {square, ellipse, heart} x scale 6 (0.5..1) x
  orientation 40 (0..2pi) x position x 32 x position y 32 -> 737,280 images.
  """
  size: int = 64
  factor_names: tuple[str, ...] = ("shape", "scale", "orientation", "x", "y")
  factor_sizes: tuple[int, ...] = (3, 6, 40, 32, 32)

  @property
  def image_shape(self):
    return (self.size, self.size, 1)

  def factor_values(self):
    return dict(
        shape=np.arange(3), scale=np.linspace(0.5, 1.0, 6),
        orientation=np.linspace(0.0, 2 * np.pi, 40), x=np.linspace(0, 1, 32),
        y=np.linspace(0, 1, 32))

  # rotational symmetry order of square, ellipse, heart: a square turned by a quarter
  # turn is the same image, so its orientation is only defined modulo 2pi/4.
  symmetry_order = (4, 2, 1)  # class constant, not a dataclass field

  # below this `lsx.metrics.rotation_anisotropy` an image has no orientation to read: a
  # round blob (<= 0.08 for discs of every sprite size) rather than a shape (>= 0.13 for
  # every render blurred by up to 1.5 pixels; measured in tests/test_dfa.py).
  min_anisotropy = 0.1

  def factor_periods(self, factors, anisotropy=None) -> np.ndarray:
    """Orientation indices 0..39 span 0..2pi inclusive (index 39 = index 0), so a full turn
    is 39 index steps, divided by the shape's rotational symmetry order. With the read
    images' `anisotropy` (`lsx.metrics.rotation_anisotropy`), an image below
    `min_anisotropy` gets period `lsx.metrics.directions.UNREADABLE` (-1): whatever
    orientation an oracle reads from a round blob is not a change of orientation."""
    factors = np.asarray(factors)
    out = np.zeros(factors.shape, np.float32)
    order = np.asarray(self.symmetry_order, np.float32)[np.clip(factors[..., 0], 0, 2).astype(np.int64)]
    out[..., 2] = (self.factor_sizes[2] - 1) / order
    if anisotropy is not None:
      out[..., 2] = np.where(np.asarray(anisotropy) < self.min_anisotropy, -1.0, out[..., 2])
    return out

  def _render_one(self, f):
    shape, scale_i, ori_i, x_i, y_i = f[0], f[1], f[2], f[3], f[4]
    scale = 0.5 + 0.5 * scale_i / 5.0
    theta = 2.0 * jnp.pi * ori_i / 39.0
    # centres span [0.2, 0.8] so the largest sprite stays inside the frame.
    cx = 0.2 + 0.6 * x_i / 31.0
    cy = 0.2 + 0.6 * y_i / 31.0
    gx, gy = _grid(self.size)
    dx, dy = gx - cx, gy - cy
    c, s = jnp.cos(theta), jnp.sin(theta)
    # rotate the pixel grid by -theta, then normalise by the sprite radius.
    r = 0.2 * scale
    u = (c * dx + s * dy) / r
    v = (-s * dx + c * dy) / r
    square = jnp.maximum(jnp.abs(u), jnp.abs(v)) <= 0.8
    ellipse = (u / 1.0) ** 2 + (v / 0.5) ** 2 <= 1.0
    # the classic implicit heart, tip pointing down in the sprite's own frame.
    hu, hv = 1.1 * u, -1.1 * v + 0.15
    heart = (hu ** 2 + hv ** 2 - 1.0) ** 3 - hu ** 2 * hv ** 3 <= 0.0
    mask = jnp.select([shape == 0, shape == 1], [square, ellipse], heart)
    return mask.astype(jnp.float32)[..., None]


def _hsv_to_rgb(h, s, v):
  """Hue in [0,1): standard HSV -> RGB, elementwise."""
  i = jnp.floor(h * 6.0)
  f = h * 6.0 - i
  p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
  i = i.astype(jnp.int32) % 6
  r = jnp.select([i == 0, i == 1, i == 2, i == 3, i == 4], [v, q, p, p, t], v)
  g = jnp.select([i == 0, i == 1, i == 2, i == 3, i == 4], [t, v, v, q, p], p)
  b = jnp.select([i == 0, i == 1, i == 2, i == 3, i == 4], [p, p, t, v, v], q)
  return jnp.stack([r, g, b], axis=-1)


@dataclasses.dataclass(frozen=True)
class Scenes(_Procedural):
  """Shapes3D-like scenes, 64x64x3: a floor, a wall and a shaded object.

  Factors (Shapes3D grid): floor hue 10 x wall hue 10 x object hue 10 x scale 8
  (0.75..1.25) x shape 4 {cube, cylinder, sphere, capsule} x orientation 15
  (-30..30 degrees) -> 480,000 images.
  """
  size: int = 64
  factor_names: tuple[str, ...] = ("floor_hue", "wall_hue", "object_hue", "scale", "shape",
                                   "orientation")
  factor_sizes: tuple[int, ...] = (10, 10, 10, 8, 4, 15)

  @property
  def image_shape(self):
    return (self.size, self.size, 3)

  def factor_values(self):
    return dict(
        floor_hue=np.linspace(0, 0.9, 10), wall_hue=np.linspace(0, 0.9, 10),
        object_hue=np.linspace(0, 0.9, 10), scale=np.linspace(0.75, 1.25, 8),
        shape=np.arange(4), orientation=np.linspace(-30, 30, 15))

  def _render_one(self, f):
    floor_h, wall_h, obj_h = f[0] / 10.0, f[1] / 10.0, f[2] / 10.0
    scale = 0.75 + 0.5 * f[3] / 7.0
    shape = f[4]
    theta = jnp.deg2rad(-30.0 + 60.0 * f[5] / 14.0)
    gx, gy = _grid(self.size)
    horizon = 0.62
    # floor: darker towards the horizon; wall: lit from the left.
    floor_v = 0.55 + 0.45 * jnp.clip((gy - horizon) / (1 - horizon), 0, 1)
    wall_v = 0.75 + 0.25 * (1 - gx)
    floor = _hsv_to_rgb(floor_h, 0.9, 1.0) * floor_v[..., None]
    wall = _hsv_to_rgb(wall_h, 0.9, 1.0) * wall_v[..., None]
    bg = jnp.where((gy >= horizon)[..., None], floor, wall)
    # the object stands on the floor; its height grows with scale.
    r = 0.13 * scale
    cx, base = 0.5, 0.8
    cy = base - r
    dx, dy = gx - cx, gy - cy
    c, s = jnp.cos(theta), jnp.sin(theta)
    u = (c * dx + s * dy) / r
    v = (-s * dx + c * dy) / r
    cube = jnp.maximum(jnp.abs(u), jnp.abs(v)) <= 1.0
    cylinder = (jnp.abs(u) <= 0.8) & (jnp.abs(v) <= 1.0) | (
        (u / 0.8) ** 2 + ((v + 1.0) / 0.3) ** 2 <= 1.0)
    sphere = u ** 2 + v ** 2 <= 1.0
    capsule = (jnp.abs(u) <= 0.55) & (jnp.abs(v) <= 0.45) | (
        u ** 2 + (jnp.abs(v) - 0.45) ** 2 <= 0.55 ** 2)
    mask = jnp.select([shape == 0, shape == 1, shape == 2], [cube, cylinder, sphere], capsule)
    # Lambertian-ish shading from a light that turns with the object, so that every
    # orientation (even of the sphere) changes the image.
    light = 0.65 + 0.35 * jnp.clip(-0.7 * u * jnp.cos(3 * theta) - 0.5 * v + 0.3 * jnp.sin(3 * theta), -1, 1)
    obj = _hsv_to_rgb(obj_h, 0.9, 1.0) * light[..., None]
    return jnp.where(mask[..., None], obj, bg).astype(jnp.float32)


def make_sequence_factors(dataset: _Procedural, start, factor: int, length: int) -> jax.Array:
  """Factors [length, F] that move one factor by +1 per frame (wrapping), from `start`."""
  start = jnp.asarray(start, jnp.int32)
  steps = jnp.arange(length, dtype=jnp.int32)
  size = jnp.asarray(dataset.factor_sizes, jnp.int32)[factor]
  col = (start[factor] + steps) % size
  return jnp.tile(start[None], (length, 1)).at[:, factor].set(col)


SPRITES_NUM_IMAGES = math.prod(Sprites.factor_sizes)
