"""The direction and flow papers' claims on the built-in data, over seeds: claims.json.

  python -m experiments.claims --config configs/claims.py
  python -m experiments.claims --config configs/claims.py --config.claims=flows_regularizer
  python -m experiments.claims --config configs/claims.py:cpu    # the budget measured on CPU

What each claim trains and measures, and the rules that decide `met`: lsx.measure_claims
and lsx.claims; docs/claims.md reads the rows.
"""
from absl import flags
from ml_collections import config_flags

from lsx import claims as lc, cli, measure_claims, viz

_CONFIG = config_flags.DEFINE_config_file("config", None, "Claims config file.",
                                          lock_config=True)


def main(argv):
  del argv
  c = _CONFIG.value
  rows = measure_claims.run_claims(c, log=viz.log)
  print(lc.markdown(rows))
  print(f"wrote {c.out}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  cli.run(main)
