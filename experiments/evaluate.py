"""Score a trained run with every metric; writes metrics.json in the workdir.

  python -m experiments.evaluate --workdir workdirs/betavae_sprites
  python -m experiments.evaluate --workdir workdirs/qlae_scenes --num_samples=5000 \
      --metrics=infomec,mig,dci

Latents are the encoder mean (the quantized code for QLAE, scored as discrete latents).
For a sweep workdir every member is scored and its numbers added to sweep.csv.
Sizes default to disentanglement_lib's; shrink them for a quick look on a CPU.
"""
from __future__ import annotations

import logging
import os

from absl import flags

from lsx import cli, metrics as lm, runs

_WORKDIR = flags.DEFINE_string("workdir", None, "A workdir written by experiments.train.")
_METRICS = flags.DEFINE_list("metrics", list(lm.suite.ALL),
                             "Which metrics.")
_N = flags.DEFINE_integer("num_samples", 10000, "Samples for InfoMEC/MIG/DCI/SAP (train).")
_NTEST = flags.DEFINE_integer("num_test", 5000, "Test samples for DCI/SAP.")
_NINT = flags.DEFINE_integer("intervention_train", 10000, "Votes for BetaVAE/FactorVAE (train).")
_NINTE = flags.DEFINE_integer("intervention_eval", 5000, "Votes for BetaVAE/FactorVAE (eval).")
_DCI = flags.DEFINE_enum("dci_estimator", "gbt", ["gbt", "gbt_xla", "sklearn", "logistic"],
                         "DCI importance estimator.")
_JOBS = flags.DEFINE_integer("dci_jobs", os.cpu_count() or 1,
                             "Threads (gbt) or processes (sklearn) for the DCI tree fits.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the evaluation samples.")


def main(argv):
  del argv
  logging.getLogger("absl").setLevel(logging.WARNING)
  runs.evaluate_workdir(_WORKDIR.value, metrics=_METRICS.value, seed=_SEED.value,
                   num_samples=_N.value, num_test=_NTEST.value, dci_estimator=_DCI.value,
                   intervention_train=_NINT.value, intervention_eval=_NINTE.value, dci_jobs=_JOBS.value)


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  cli.run(main)
