"""Per-program XLA compiler options for the training programs lsx compiles.

XLA:CPU hands some fusions to YNNPACK. By default that includes reductions with their
elementwise producers, and for the Bernoulli likelihood of a 64x64 batch that one fusion
took 5.5 of a 14 ms small-MLP training step on a 2-core CPU (XLA's own loop emitter does
it in well under 1 ms). lsx therefore compiles the training chunks of MLP models with
YNNPACK limited to matrix products (`INDIVIDUAL_DOT`, `DOT`): small MLP step 10.0 -> 5.4
ms. Enabling YNNPACK's elementwise fusions as well made the same step 37 ms.

The same reduction fusion helps the convolutional models, so their programs keep XLA's
defaults. Measured on a 2-core Xeon (chunks of 50 steps, steps/s, defaults vs
matrix products only): conv beta-VAE 21.6 vs 19.6, joint beta-VAE + flows 11.3 vs 9.4,
LatentCLR on a conv decoder 34.9 vs 33.5, post-hoc flows on it 29.1 vs 30.5; MLP 256-256
103 vs 127, MLP 64-64 187 vs 302 (/tmp bench of the one-path change, docs/sweeps.md).

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


def compiler_options(arch: str | None = "mlp") -> dict:
  """Options lsx compiles a training program of a model of architecture `arch` with on
  the default backend: matrix products only for 'mlp' (None: the same), XLA's defaults
  for convolutional models."""
  if jax.default_backend() != "cpu" or os.environ.get("LSX_XLA_DEFAULTS", "1") == "0":
    return {}
  if arch not in (None, "mlp"):
    return {}
  if _YNN in os.environ.get("XLA_FLAGS", ""):
    return {}
  return dict(_CPU) if _supported() else {}


def jit(fn, arch: str | None = "mlp", **kwargs):
  """`jax.jit(fn, **kwargs)` with lsx's compiler options for a model of `arch` on the
  default backend."""
  return jax.jit(fn, compiler_options=compiler_options(arch) or None, **kwargs)
