"""Datasets: `sample(rng, n) -> (images [n,H,W,C] in [0,1], factors int32 [n,F])`.

Every dataset satisfies `Dataset`; the procedural ones (and TFDS datasets that hold a
complete factor grid) also render images from factor indices (`RenderedDataset`), which
the interventional metrics, the direction oracle and sequence training need:
`require_render(ds, purpose)` says so clearly when a dataset cannot.

Datasets are found by name in `REGISTRY` (built in: 'sprites', 'scenes'); any other
name is loaded through TFDS. Options reach the dataset's factory as keyword arguments.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from lsx.data.procedural import Scenes, Sprites, make_sequence_factors
from lsx.data.tfds_data import DatasetNotPreparedError, TFDSDataset, load_tfds
from lsx.registry import Entry, Registry


@runtime_checkable
class Dataset(Protocol):
  image_shape: tuple
  factor_names: tuple
  factor_sizes: tuple

  @property
  def num_examples(self) -> int: ...

  def sample(self, rng, n: int): ...


@runtime_checkable
class RenderedDataset(Dataset, Protocol):
  def render(self, factors): ...

  def sample_factors(self, rng, n: int): ...


def renders(dataset) -> bool:
  """Whether `dataset` renders images from factor indices (a complete factor grid)."""
  return isinstance(dataset, RenderedDataset) and bool(getattr(dataset, "has_render", True))


def require_render(dataset, purpose: str) -> None:
  if not renders(dataset):
    raise ValueError(f"{purpose} needs a dataset that renders images from factor indices "
                     f"(the procedural 'sprites' or 'scenes', or a TFDS dataset holding its "
                     f"whole factor grid); {getattr(dataset, 'name', type(dataset).__name__)!r} "
                     f"does not.")


REGISTRY = Registry("dataset")
REGISTRY.register("sprites", procedural=True)(Sprites)
REGISTRY.register("scenes", procedural=True)(Scenes)
PROCEDURAL = {name: REGISTRY.get(name).factory for name in REGISTRY}


def get_dataset(name: str, **options):
  """A registered dataset by name (options it does not take are left out: `config.data`
  is shared by every dataset), anything else through TFDS by name (`split`, `data_dir`,
  `max_examples`, `image_key`). Names may be prefixed 'tfds:' to force TFDS."""
  known = Entry("tfds", load_tfds, {}).options()
  every = set(known).union(*(REGISTRY.get(n).options() for n in REGISTRY))
  unknown = sorted(set(options) - every)
  if unknown:
    raise ValueError(f"no dataset takes the option(s) {unknown}; the options are "
                     f"{sorted(every)} (config.data).")
  if name in REGISTRY:
    return REGISTRY.build(name, options=options, strict=False)
  return load_tfds(name.removeprefix("tfds:"), **{k: v for k, v in options.items() if k in known})


__all__ = ["Dataset", "RenderedDataset", "renders", "require_render", "REGISTRY", "Sprites",
           "Scenes", "TFDSDataset", "load_tfds", "get_dataset", "DatasetNotPreparedError",
           "make_sequence_factors", "PROCEDURAL"]
