"""Datasets: `sample(rng, n) -> (images [n,H,W,C] in [0,1], factors int32 [n,F])`."""
from lsx.data.procedural import Scenes, Sprites, make_sequence_factors
from lsx.data.tfds_data import DatasetNotPreparedError, TFDSDataset, load_tfds

PROCEDURAL = {"sprites": Sprites, "scenes": Scenes}


def get_dataset(name: str, **kwargs):
  """Built-in procedural data by short name, anything else through TFDS by name.

  `kwargs` go to the dataset (procedural: `size`; TFDS: split, data_dir, max_examples,
  image_key). Names may be prefixed 'tfds:' to force TFDS.
  """
  if name in PROCEDURAL:
    return PROCEDURAL[name](**{k: v for k, v in kwargs.items() if k in ("size",)})
  return load_tfds(name.removeprefix("tfds:"), **{k: v for k, v in kwargs.items() if k != "size"})


__all__ = ["Sprites", "Scenes", "TFDSDataset", "load_tfds", "get_dataset",
           "DatasetNotPreparedError", "make_sequence_factors", "PROCEDURAL"]
