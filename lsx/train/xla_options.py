"""Per-program XLA compiler options for the training programs lsx compiles.

XLA:CPU hands some fusions to YNNPACK. By default that includes reductions with their
elementwise producers, and for the Bernoulli likelihood of a 64x64 batch that one fusion
took 5.5 of a 14 ms small-MLP training step on a 2-core CPU (XLA's own loop emitter does
it in well under 1 ms). lsx therefore compiles its training chunks with YNNPACK limited to
matrix products (`INDIVIDUAL_DOT`, `DOT`): small MLP step 10.0 -> 5.4 ms, conv beta-VAE
unchanged within noise (benchmarks/sweep_throughput.py measures both). Enabling
YNNPACK's elementwise fusions as well made the same step 37 ms.

The options are passed per compiled program (`jax.jit(..., compiler_options=...)`), not
through `XLA_FLAGS`, so nothing else in the process changes, and an XLA that does not know
the option leaves the program as it was instead of aborting the process. They apply only
on CPU, and not when the user's `XLA_FLAGS` already sets YNNPACK fusions (theirs wins),
or when `LSX_XLA_DEFAULTS=0`.
"""
from __future__ import annotations

import functools
import logging
import os

import jax
import jax.numpy as jnp

_YNN = "xla_cpu_experimental_ynn_fusion_type"
_CPU = {_YNN: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_DOT"}


@functools.lru_cache(maxsize=None)
def _supported() -> bool:
  try:
    jax.jit(lambda x: x + 1, compiler_options=_CPU).lower(jnp.float32(0)).compile()
    return True
  except Exception as e:  # an XLA without the option: keep its defaults
    logging.getLogger("lsx").info("XLA option %s not supported here (%s)", _YNN, e)
    return False


def compiler_options() -> dict:
  """Options lsx compiles its training programs with on the default backend."""
  if jax.default_backend() != "cpu" or os.environ.get("LSX_XLA_DEFAULTS", "1") == "0":
    return {}
  if _YNN in os.environ.get("XLA_FLAGS", ""):
    return {}
  return dict(_CPU) if _supported() else {}


def jit(fn, **kwargs):
  """`jax.jit(fn, **kwargs)` with lsx's compiler options for the default backend."""
  return jax.jit(fn, compiler_options=compiler_options() or None, **kwargs)
