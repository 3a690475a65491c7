"""Regenerate metrics_reference.json: reference values of InfoMEC, MIG and DCI.

The values come from lsx/metrics/reference.py, a direct numpy + scikit-learn transcription
of the public definitions (Hsu et al.'s InfoMEC code: per-pair `mutual_info_classif` with
k=10, `mutual_info_score`, unpenalized balanced lbfgs logistic regression; MIG and DCI as
in disentanglement_lib: numpy histogram + `mutual_info_score`, GradientBoostingClassifier
+ scipy entropies). Inputs are rebuilt from `cases()` with numpy's seeded generator.

  python tests/reference/make_reference.py   # scikit-learn 1.9.1, numpy 2.x
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from lsx.metrics import reference as R  # noqa: E402

SIZES = (3, 6, 10, 8)


def cases(n=2000, seed=0):
  rng = np.random.default_rng(seed)
  f = np.stack([rng.integers(0, k, n) for k in SIZES], 1)
  noisy = f + 0.3 * rng.normal(size=f.shape)
  return f, {
      "disentangled": np.concatenate([noisy, rng.normal(size=(n, 2))], 1),
      "entangled": noisy @ rng.normal(size=(4, 6)),
      "noise": rng.normal(size=(n, 5)),
      "fewer_latents": noisy[:, :2] * np.array([1.0, 5.0]),
      "discrete": np.round(np.concatenate([noisy, rng.integers(0, 3, (n, 2))], 1)),
  }


def dci_case(seed=1):
  f, c = cases(600, seed)
  z = c["disentangled"]
  return z[:400], f[:400], z[400:], f[400:]


def main():
  f, cs = cases()
  out = {}
  for name, z in cs.items():
    disc = name == "discrete"
    r = R.infomec_reference(z, f, discrete_latents=disc)
    out[name] = {"infom": r["infom"], "infoc": r["infoc"], "infoe": r["infoe"],
                 "nmi": r["nmi"].tolist(), "mig": R.mig_reference(z, f)}
  d = R.dci_reference(*dci_case())
  out["dci"] = {k: v for k, v in d.items() if k != "importance"}
  path = os.path.join(os.path.dirname(__file__), "metrics_reference.json")
  with open(path, "w") as fh:
    json.dump(out, fh, indent=1)
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
