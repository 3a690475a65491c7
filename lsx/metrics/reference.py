"""Slow, straightforward numpy / scikit-learn implementations of the same definitions.

They follow the public reference code's definitions step by step (InfoMEC: Hsu et al.'s
`infomec.py`; MIG: disentanglement_lib) with per-pair scikit-learn estimators, and serve
as the independent check of the fast JAX versions (tests/) and as the baseline of
benchmarks/metrics_speed.py. scikit-learn 1.8 removed `penalty=None` and `multi_class`;
`C=inf` with the lbfgs solver is the same unpenalized multinomial model.
"""
from __future__ import annotations

import numpy as np


def _label_encode(x):
  return np.stack([np.unique(x[:, j], return_inverse=True)[1].reshape(-1)
                   for j in range(x.shape[1])], 1)


def nmi_reference(sources, latents, discrete_latents, random_state=0):
  from sklearn import feature_selection, metrics
  s = _label_encode(sources)
  if discrete_latents:
    z = _label_encode(latents)
  else:
    sd = latents.std(0)
    z = (latents - latents.mean(0)) / np.where(sd > 0, sd, 1.0)
  out = np.zeros((s.shape[1], z.shape[1]))
  for i in range(s.shape[1]):
    for j in range(z.shape[1]):
      if discrete_latents:
        out[i, j] = metrics.mutual_info_score(s[:, i], z[:, j])
      else:
        out[i, j] = feature_selection.mutual_info_classif(
            z[:, j:j + 1], s[:, i], discrete_features=False, n_neighbors=10,
            random_state=random_state)[0]
    out[i] /= metrics.mutual_info_score(s[:, i], s[:, i])
  return out


def _logreg_loss(x, y):
  from sklearn import linear_model, metrics
  model = linear_model.LogisticRegression(C=np.inf, tol=1e-4, class_weight="balanced",
                                          solver="lbfgs", max_iter=100)
  model.fit(x, y)
  return metrics.log_loss(y, model.predict_proba(x), labels=model.classes_)


def infomec_reference(latents, sources, discrete_latents=False, random_state=0):
  from sklearn import preprocessing
  latents = np.asarray(latents, np.float64)
  nmi = nmi_reference(sources, latents, discrete_latents, random_state)
  ranges = latents.max(0) - latents.min(0)
  active = ranges > 0 if discrete_latents else ranges > ranges.max() / 20
  f, da = sources.shape[1], active.sum()
  p = nmi[:, active]
  infom = (np.mean(p.max(0) / p.sum(0)) - 1 / f) / (1 - 1 / f)
  infoc = (np.mean(p.max(1) / p.sum(1)) - 1 / da) / (1 - 1 / da)
  s = _label_encode(sources)
  if discrete_latents:
    x = preprocessing.OneHotEncoder().fit_transform(latents).toarray()
  else:
    x = preprocessing.StandardScaler().fit_transform(latents)
  per = []
  for i in range(s.shape[1]):
    h = _logreg_loss(x, s[:, i])
    h0 = _logreg_loss(np.zeros_like(latents), s[:, i])
    per.append((h0 - h) / h0)
  return {"infom": float(infom), "infoc": float(infoc), "infoe": float(np.mean(per)),
          "nmi": nmi, "active_latents": active}


def mig_reference(latents, factors, num_bins=20):
  from sklearn import metrics
  z = np.asarray(latents)
  disc = np.zeros_like(z, dtype=np.int64)
  for j in range(z.shape[1]):
    disc[:, j] = np.digitize(z[:, j], np.histogram(z[:, j], num_bins)[1][:-1])
  m = np.array([[metrics.mutual_info_score(factors[:, f], disc[:, j])
                 for f in range(factors.shape[1])] for j in range(z.shape[1])])
  h = np.array([metrics.mutual_info_score(factors[:, f], factors[:, f])
                for f in range(factors.shape[1])])
  srt = np.sort(m, axis=0)[::-1]
  return float(np.mean((srt[0] - srt[1]) / h))


def dci_reference(zt, ft, ze, fe):
  """disentanglement_lib's DCI with scikit-learn gradient-boosted trees (scipy entropies)."""
  import scipy.stats
  from sklearn.ensemble import GradientBoostingClassifier
  d, f = zt.shape[1], ft.shape[1]
  imp = np.zeros((d, f))
  acc_t, acc_e = [], []
  for i in range(f):
    model = GradientBoostingClassifier().fit(zt, ft[:, i])
    imp[:, i] = np.abs(model.feature_importances_)
    acc_t.append(np.mean(model.predict(zt) == ft[:, i]))
    acc_e.append(np.mean(model.predict(ze) == fe[:, i]))
  per_code = 1. - scipy.stats.entropy(imp.T + 1e-11, base=f)
  per_factor = 1. - scipy.stats.entropy(imp + 1e-11, base=d)
  w = imp if imp.sum() > 0 else np.ones_like(imp)
  return {"disentanglement": float(np.sum(per_code * w.sum(1) / w.sum())),
          "completeness": float(np.sum(per_factor * w.sum(0) / w.sum())),
          "informativeness_train": float(np.mean(acc_t)),
          "informativeness_test": float(np.mean(acc_e)), "importance": imp}
