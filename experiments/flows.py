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
import os

import jax
from absl import flags
from ml_collections import config_flags

from lsx import cli, metrics as lm, runs, viz
from lsx import directions as ld
from lsx.directions import take
from lsx.flows import family
from lsx.train import ensure_trained, read_metrics, sweep, train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Flows config file.",
                                          lock_config=True)
_EXPORT = flags.DEFINE_string("export_vae", None, "Write a joint run's VAE as a training "
                              "workdir in this directory (and train nothing).")
TITLES = {"pde": "L_PDE (wave residual)", "pde_rel": "relative wave residual", "ic": "L_IC",
          "jvp": "L_JVP (rewarded)", "cls": "classifier CE", "rec": "reconstruction (x_0)",
          "latent": "L_latent"}


def main(argv):
  del argv
  c = _CONFIG.value
  if _EXPORT.value:
    out = runs.export_vae(c.workdir, _EXPORT.value)
    return print(f"wrote the joint run's VAE to {out}: python -m experiments.discover "
                 f"--config configs/latentclr_sprites.py --config.decoder.workdir={out}")
  lm.check_oracle(c.eval.oracle)
  if c.flows.mode == "posthoc":
    ensure_trained(c.decoder.workdir, c.decoder.config)
  state, setup = train(c, c.workdir)
  rows = read_metrics(c.workdir)
  viz.save_metric_curves(rows, setup.log_keys, os.path.join(c.workdir, "flows_losses.png"),
                         TITLES)
  oracle = lm.make_oracle(setup.dataset, c.eval.oracle, pool=int(c.eval.oracle_pool),
                          steps=int(c.eval.oracle_steps), rng=jax.random.key(c.seed + 7),
                          log=viz.log)
  members = sweep.plan(c, setup.hp)
  scored = {}
  for i in range(1 if members is None else members.size):
    params = state.params if members is None else take(state.params, i)
    rows_i, frames = family.score_run(setup, params, oracle)
    tag = "" if members is None else f" [member {i}]"
    scored.update({f"{n}{tag}": r for n, r in rows_i.items()})
    if i == 0:
      viz.save_traversal_grid(frames, os.path.join(c.workdir, "flows.png"))
  ld.write_score_table(scored, c.workdir, oracle_info=lm.oracle_info(oracle), mode=c.flows.mode,
                        factor_names=[n for n, o in zip(setup.dataset.factor_names,
                                                        lm.ordinal_mask(setup.dataset)) if o])
  print(f"flows scored; wrote flows.png, flows_losses.png, scores.json in {c.workdir}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  cli.run(main)
