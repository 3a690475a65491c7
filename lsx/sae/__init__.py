"""Sparse autoencoders (dictionary learning on activations) as an lsx training family.

  SAE, BOTTLENECKS, make_objective, encode, decode, scores    lsx.sae.model
  jumprelu, step_fn, topk_codes, batchtopk_codes, mp_codes     lsx.sae.bottlenecks
  ToySuperposition, ModelActivations, ArrayShards, make_source lsx.sae.sources
  the 'sae' family (build_sae, in lsx.runs.FAMILIES), save_frontier  lsx.sae.family

docs/sae.md has the bottlenecks, sources, scores and the measured figures.
"""
from lsx.sae.bottlenecks import batchtopk_codes, jumprelu, mp_codes, step_fn, topk_codes
from lsx.sae.model import (BOTTLENECKS, SAE, decode, encode, geometric_median, init_params,
                           make_objective, scores)
from lsx.sae.sources import ArrayShards, ModelActivations, ToySuperposition, make_source

__all__ = ["BOTTLENECKS", "SAE", "decode", "encode", "geometric_median", "init_params",
           "jumprelu", "make_objective", "mp_codes", "scores", "step_fn", "topk_codes",
           "batchtopk_codes", "ArrayShards", "ModelActivations", "ToySuperposition",
           "make_source"]
