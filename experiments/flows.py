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

  python -m experiments.flows --config configs/flows_sprites.py:reference,seeds --frame_probe=300

trains nothing and scores nothing: it asks whether the K flows of the run (each member, at
its latest checkpoint, and the flows at initialization) can be told apart from their
frames, with a fresh frame classifier trained on the frozen flows with mixed labels and
with one label per batch (lsx.flows.family.frame_probe; --probe_classifier=mlp puts lsx's
classifier, which reads x_b - x_a, in the run's place); writes frame_probe_<classifier>_<labels>.json.
"""
import json
import os

import jax
from absl import flags
from ml_collections import config_flags

from lsx import cli, runs, traversal_eval, viz
from lsx.flows import family
from lsx.train import sweep

_CONFIG = config_flags.DEFINE_config_file("config", None, "Flows config file.",
                                          lock_config=True)
_EXPORT = flags.DEFINE_string("export_vae", None, "Write a joint run's VAE as a training "
                              "workdir in this directory (and train nothing).")
_PROBE = flags.DEFINE_integer("frame_probe", 0, "Train a fresh frame classifier this many "
                              "steps on the run's frozen flows (module doc); 0: off.")
_PROBE_LR = flags.DEFINE_float("probe_lr", 1e-3, "The frame probe's Adam learning rate.")
_PROBE_BATCH = flags.DEFINE_integer("probe_batch", 64, "The frame probe's batch size.")
_PROBE_LABELS = flags.DEFINE_list("probe_labels", list(family.PROBE_LABELS),
                                  "The frame probe's label modes (mixed, batch).")
_PROBE_CLF = flags.DEFINE_string("probe_classifier", "", "The frame probe's classifier form "
                                 "(mlp | conv; empty: the run's).")
_PROBE_WIDTH = flags.DEFINE_integer("probe_width", -1, "Its width (-1: the run's; 0: the "
                                    "form's default).")
_PROBE_MEMBERS = flags.DEFINE_integer("probe_members", 0, "Probe the first this many members "
                                      "of a sweep (0: all).")


def frame_probe(c) -> dict:
  """{member: {"trained" | "init": {labels: frame_probe(...)}}} of the run in c.workdir."""
  setup, state = runs.load_run(c.workdir)
  members = sweep.plan(setup.config, setup.hp)
  count = 1 if members is None else len(members.seeds)
  count = min(count, _PROBE_MEMBERS.value or count)
  step = int(jax.device_get(state.step).reshape(-1)[0])
  out = {"step": step, "members": {}}
  kw = dict(steps=_PROBE.value, lr=_PROBE_LR.value, batch_size=_PROBE_BATCH.value,
            classifier=_PROBE_CLF.value or None,
            width=None if _PROBE_WIDTH.value < 0 else _PROBE_WIDTH.value)
  for i in range(count):
    params = state.params if members is None else sweep.take_member(state.params, i)
    init = setup.objective.init(jax.random.key(i))["flow"]
    row = {}
    for name, fp in (("trained", params["flow"]), ("init", init)):
      row[name] = {lab: family.frame_probe(setup, fp, labels=lab, seed=i, **kw)
                   for lab in _PROBE_LABELS.value}
      viz.log(f"member {i} flows {name} (step {step if name == 'trained' else 0}): held-out "
              + ", ".join(f"{lab} labels {r['accuracy']:.3f}" for lab, r in row[name].items())
              + f" (chance {1 / setup.objective.info['flow'].num:.3f})")
    out["members"][str(i)] = row
  out["classifier"] = kw["classifier"] or setup.config.flows.get("classifier", "mlp")
  name = f"frame_probe_{out['classifier']}_{'_'.join(_PROBE_LABELS.value)}.json"
  with open(os.path.join(c.workdir, name), "w") as f:
    json.dump(out, f, indent=1)
  return out


def main(argv):
  del argv
  c = _CONFIG.value
  if _EXPORT.value:
    out = runs.export_vae(c.workdir, _EXPORT.value)
    return print(f"wrote the joint run's VAE to {out}: python -m experiments.discover "
                 f"--config configs/latentclr_sprites.py --config.decoder.workdir={out}")
  if _PROBE.value:
    return frame_probe(c)
  traversal_eval.flows(c)
  print(f"flows scored; wrote flows.png, flows_losses.png, scores.json in {c.workdir}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  cli.run(main)
