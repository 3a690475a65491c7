"""Does an objective prefer the factor-aligned solution? (lsx.objective_probe)

  # contrastive directions (directions.method latentclr | noiseclr) on a trained decoder:
  python -m experiments.probe_objective --config configs/latentclr_sprites.py \\
      --config.decoder.workdir=workdirs/fjvae0 --config.workdir=workdirs/probe_clr
  # post-hoc potential flows, started from the flows of a finished joint run:
  python -m experiments.probe_objective --config configs/flows_joint_sprites.py \\
      --config.workdir=workdirs/fj_tanh

Writes probe_objective.json in config.workdir (rows: each start and each run trained from
it, with the objective's value, lower is better, and its DFA/VP) and prints the table.
"""
import json
import os

from absl import flags
from ml_collections import config_flags

from lsx import cli, objective_probe as probe, viz

_CONFIG = config_flags.DEFINE_config_file("config", None, "A directions or joint-flows config.",
                                          lock_config=True)
_STEPS = flags.DEFINE_integer("steps", 1000, "training steps from each start")
_EVAL = flags.DEFINE_integer("eval_batches", 20, "batches the objective is averaged over")
_CLF = flags.DEFINE_integer("classifier_steps", 300, "flows: classifier steps on frozen flows")
_PATH = flags.DEFINE_integer("path_len", 10, "flows: the post-hoc objective's path length")
_TERMS = flags.DEFINE_list("terms", list(probe.TERM_SETS), "flows: post-hoc term sets")


def main(argv):
  del argv
  c = _CONFIG.value
  if c.family == "flows":
    rows, info = probe.probe_flows(c.workdir, _STEPS.value, _EVAL.value, _CLF.value,
                                   _PATH.value, _TERMS.value, log=viz.log)
  else:
    rows, info = probe.probe_directions(c, _STEPS.value, _EVAL.value, log=viz.log)
  os.makedirs(c.workdir, exist_ok=True)
  with open(os.path.join(c.workdir, "probe_objective.json"), "w") as f:
    json.dump({**info, "rows": rows}, f, indent=1)
  print(f"{'start / run':36s} {'objective':>10s} " + " ".join(f"{s[:12]:>12s}" for s in probe.SCORES))
  for name, r in rows.items():
    print(f"{name:36s} {r['objective']:10.4f} " + " ".join(f"{r[s]:12.3f}" for s in probe.SCORES))


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  cli.run(main)
