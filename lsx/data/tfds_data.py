"""TFDS-backed datasets through `tfds.data_source` (array_record; no TensorFlow).

The split is read once into a host array of uint8 images (and integer factors where
the dataset has them) and placed on device, so `sample` is a jittable gather, the
same contract as the procedural datasets.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# Known factor layouts of disentanglement datasets: name -> (feature keys, sizes).
_FACTORS = {
    "dsprites": (("label_shape", "label_scale", "label_orientation", "label_x_position",
                  "label_y_position"), (3, 6, 40, 32, 32)),
    "shapes3d": (("label_floor_hue", "label_wall_hue", "label_object_hue", "label_scale",
                  "label_shape", "label_orientation"), (10, 10, 10, 8, 4, 15)),
}


class DatasetNotPreparedError(RuntimeError):
  pass


def _open_source(name: str, split: str, data_dir: str | None):
  import tensorflow_datasets as tfds  # imported lazily: start-up stays fast
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir or None, download=False)
  except Exception as e:  # TFDS raises KeyError/AssertionError/DatasetNotFoundError/etc.
    msg = str(e).strip("'\"")
    said = f"(TFDS said: {msg.splitlines()[0] if msg else type(e).__name__})"
    if type(e).__name__ == "DatasetNotFoundError":
      import difflib
      import re
      known = re.findall(r"^\s*- (\S+)", str(e), flags=re.M)  # TFDS lists them
      close = difflib.get_close_matches(name, known, n=3)
      raise ValueError(f"TFDS knows no dataset {name!r}"
                       + (f"; did you mean {close}?" if close else ".")
                       + " config.data.name takes 'sprites', 'scenes' or a TFDS dataset name.") from e
    if ("not found" in msg.lower() or "download" in msg.lower() or "prepare" in msg.lower()
        or "not been generated" in msg or "is empty" in msg or isinstance(e, AssertionError)):
      where = data_dir or "TFDS's default data_dir (~/tensorflow_datasets)"
      raise DatasetNotPreparedError(
          f"TFDS dataset '{name}' (split '{split}') is not prepared in {where}. "
          f"Prepare it once on a machine with internet, in array_record format, e.g.\n"
          f"  tfds build {name} --file_format=array_record --data_dir=<dir>\n"
          f"then set config.data.data_dir=<dir>. lsx does not download at run time. "
          f"{said}") from e
    raise


@dataclasses.dataclass(frozen=True, eq=False)
class TFDSDataset:
  """An image dataset held on device. Factors are all-zero [n, 0] when unknown."""
  name: str
  images: Any  # uint8 [N,H,W,C]
  factors: Any  # int32 [N,F]
  factor_names: tuple[str, ...]
  factor_sizes: tuple[int, ...]

  @property
  def image_shape(self):
    return tuple(self.images.shape[1:])

  @property
  def num_examples(self) -> int:
    return int(self.images.shape[0])

  @property
  def has_render(self) -> bool:
    # full factor grid stored in row-major order (dsprites, shapes3d) => lookup by index
    return bool(self.factor_sizes) and int(np.prod(self.factor_sizes)) == self.num_examples

  def sample(self, rng, n: int):
    idx = jax.random.randint(rng, (n,), 0, self.num_examples)
    return self.images[idx].astype(jnp.float32) / 255.0, self.factors[idx]

  def render(self, factors):
    if not self.has_render:
      raise ValueError(f"Dataset '{self.name}' holds no complete factor grid; render() needs one.")
    factors = jnp.asarray(factors, jnp.int32)
    strides = np.cumprod((self.factor_sizes[1:] + (1,))[::-1])[::-1]
    idx = (factors * jnp.asarray(strides, jnp.int32)).sum(-1)
    return self.images[idx].astype(jnp.float32) / 255.0


def load_tfds(name: str, split: str = "train", data_dir: str | None = None,
              max_examples: int | None = None, image_key: str = "image") -> TFDSDataset:
  """Load a TFDS image dataset by name into memory (uint8) for jittable sampling."""
  source = _open_source(name, split, data_dir)
  n = len(source) if not max_examples else min(len(source), int(max_examples))
  if n == 0:
    raise ValueError(f"TFDS dataset '{name}' split '{split}' is empty.")
  keys, sizes = _FACTORS.get(name, ((), ()))
  try:  # batched read where the source supports it
    records = list(source.__getitems__(list(range(n))))
  except (AttributeError, TypeError):
    records = [source[i] for i in range(n)]
  first = records[0]
  if image_key not in first:
    raise ValueError(f"TFDS dataset '{name}' has no '{image_key}' feature (has {sorted(first)}); "
                     f"set config.data.image_key.")
  images = np.stack([np.asarray(r[image_key]) for r in records])
  if images.ndim == 3:
    images = images[..., None]
  if images.dtype != np.uint8:
    images = np.clip(np.asarray(images, np.float32) * (255.0 if images.max() <= 1 else 1.0), 0, 255).astype(np.uint8)
  if name == "dsprites":  # stored as {0,1}
    images = images * np.uint8(255) if images.max() <= 1 else images
  if keys:
    factors = np.stack([np.asarray([r[k] for r in records]) for k in keys], 1).astype(np.int32)
  elif "label" in first:
    factors = np.asarray([r["label"] for r in records], np.int32)[:, None]
    sizes = (int(factors.max()) + 1,)
    keys = ("label",)
  else:
    factors = np.zeros((n, 0), np.int32)
  names = tuple(k.removeprefix("label_") for k in keys)
  return TFDSDataset(name, jnp.asarray(images), jnp.asarray(factors), names, tuple(sizes))
