"""Pull one member out of a finished sweep as an ordinary single-run workdir.

  python -m experiments.extract_member --workdir workdirs/betavae_sprites_sweep --member 5 \
      --out workdirs/betavae_sprites_m5
Then evaluate or traverse it like any run (experiments.evaluate --workdir ...).
"""
from __future__ import annotations

from absl import flags

from lsx import cli

from lsx.train import extract_member, load_run, write_run_figures

_WORKDIR = flags.DEFINE_string("workdir", None, "The sweep's workdir.")
_MEMBER = flags.DEFINE_integer("member", None, "Member index (row of sweep.csv).")
_OUT = flags.DEFINE_string("out", None, "New single-run workdir.")


def main(argv):
  del argv
  out = extract_member(_WORKDIR.value, _MEMBER.value, _OUT.value)
  setup, state = load_run(out)
  write_run_figures(setup, state.params, out)
  print(f"member {_MEMBER.value} of {_WORKDIR.value} -> {out} (step {int(state.step)}), "
        f"with reconstructions.png and traversals.png")


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir", "member", "out"])
  cli.run(main)
