"""Potential-flow traversals (Song et al. 2023): learn them and score them.

  python -m experiments.flows --config configs/flows_sprites.py        # on a trained VAE
  python -m experiments.flows --config configs/flows_joint_sprites.py  # VAE + flows jointly
  python -m experiments.flows --config configs/flows_joint_sprites.py --export_vae=DIR

Trains through lsx.train in config.workdir (checkpoints, exact resume, a sweep's members
as one program), then scores every member's flows next to the same VAE's active latent
axes and random directions: flows_losses.png, flows.png (rows: potentials; for each
anchor the path over -S..S steps), scores.json/csv/png (D, C, direction-MIG, coverage,
VP, off-manifold; chance-corrected `*_cc` with eval.null_permutations > 0). Rerunning a
finished run only scores it again. --export_vae writes a joint run's VAE as an ordinary
autoencoder workdir (experiments.discover and experiments.evaluate load it).
"""
from absl import flags
from ml_collections import config_flags

from lsx import cli, runs, traversal_eval

_CONFIG = config_flags.DEFINE_config_file("config", None, "Flows config file.",
                                          lock_config=True)
_EXPORT = flags.DEFINE_string("export_vae", None, "Write a joint run's VAE as a training "
                              "workdir in this directory (and train nothing).")


def main(argv):
  del argv
  c = _CONFIG.value
  if _EXPORT.value:
    out = runs.export_vae(c.workdir, _EXPORT.value)
    return print(f"wrote the joint run's VAE to {out}: python -m experiments.discover "
                 f"--config configs/latentclr_sprites.py --config.decoder.workdir={out}")
  traversal_eval.flows(c)
  print(f"flows scored; wrote flows.png, flows_losses.png, scores.json in {c.workdir}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  cli.run(main)
