"""Sparse autoencoders (dictionary learning on activations) as an lsx training family.

  SAE, BOTTLENECKS, make_objective, encode, decode, scores    lsx.sae.model
  ToySuperposition, ModelActivations, ArrayShards, make_source lsx.sae.sources
  the 'sae' family (lsx.train.train), save_frontier            lsx.sae.family

docs/sae.md has the bottlenecks, sources, scores and the measured figures.
"""
from lsx.sae.model import (BOTTLENECKS, SAE, decode, encode, geometric_median, init_params,
                           jumprelu, make_objective, mp_codes, scores, step_fn, topk_codes,
                           batchtopk_codes)
from lsx.sae.sources import ArrayShards, ModelActivations, ToySuperposition, make_source
from lsx.sae import family  # noqa: F401  (registers the 'sae' training family)

__all__ = ["BOTTLENECKS", "SAE", "decode", "encode", "geometric_median", "init_params",
           "jumprelu", "make_objective", "mp_codes", "scores", "step_fn", "topk_codes",
           "batchtopk_codes", "ArrayShards", "ModelActivations", "ToySuperposition",
           "make_source"]
