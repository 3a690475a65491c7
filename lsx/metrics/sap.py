"""SAP score (Kumar et al. 2018), as computed by disentanglement_lib.

Score matrix S [d, F]: for discrete factors (the default, as in disentanglement_lib's
configs) the test accuracy of a scikit-learn `LinearSVC(C=0.01, class_weight="balanced")`
trained on one latent to predict one factor; for continuous factors the squared
correlation cov(z_j, y_f)^2 / (var z_j var y_f) (0 when var z_j <= 1e-12), in pure JAX.
SAP = mean over factors of (largest - second largest score in the factor's column).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lsx.metrics import _info


@jax.jit
def sap_continuous(latents, factors):
  """Pure-JAX SAP with the squared-correlation score matrix; returns (sap, S [d, F])."""
  z = jnp.asarray(latents, jnp.float32)
  y = jnp.asarray(factors, jnp.float32)
  zc, yc = z - z.mean(0), y - y.mean(0)
  n = z.shape[0]
  cov = zc.T @ yc / (n - 1)
  vz = jnp.sum(zc ** 2, 0) / (n - 1)
  vy = jnp.sum(yc ** 2, 0) / (n - 1)
  s = jnp.where(vz[:, None] > 1e-12, cov ** 2 / (vz[:, None] * jnp.where(vy > 0, vy, 1.0)), 0.0)
  return _top_two_gap(s), s


def _top_two_gap(s):
  srt = jnp.sort(s, axis=0)
  second = srt[-2] if s.shape[0] > 1 else jnp.zeros_like(srt[-1])
  return jnp.mean(srt[-1] - second)


def sap(latents_train, factors_train, latents_test=None, factors_test=None, *,
        continuous_factors: bool = False) -> dict:
  """SAP score; returns dict(sap, score_matrix [d, F])."""
  zt, ft = _info.validate(latents_train, factors_train, "latents_train",
                          integer_factors=not continuous_factors)
  if continuous_factors:
    gap, s = sap_continuous(zt, ft)
    return {"sap": float(gap), "score_matrix": np.asarray(s)}
  if latents_test is None or factors_test is None:
    raise ValueError("SAP with discrete factors needs a test split: pass latents_test and "
                     "factors_test (disentanglement_lib uses 10000 train / 5000 test).")
  ze, fe = _info.validate(latents_test, factors_test, "latents_test")
  from sklearn.svm import LinearSVC

  s = np.zeros((zt.shape[1], ft.shape[1]))
  for i in range(zt.shape[1]):
    for j in range(ft.shape[1]):
      if np.unique(ft[:, j]).size < 2:
        continue  # a constant factor: every latent predicts it; the gap is 0
      clf = LinearSVC(C=0.01, class_weight="balanced").fit(zt[:, i:i + 1], ft[:, j])
      s[i, j] = np.mean(clf.predict(ze[:, i:i + 1]) == fe[:, j])
  return {"sap": float(_top_two_gap(jnp.asarray(s))), "score_matrix": s}
