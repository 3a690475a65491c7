"""A beta-VAE and potential flows trained together on one-factor sprite sequences.

  python -m experiments.flows --config configs/flows_joint_sprites.py

The paper's second use of the flows (Song et al. 2023): sequences in which one
ground-truth factor moves at a constant speed are rendered from factor indices; the
moving factor names the potential. Writes checkpoints/, flows.png, flows_losses.png and
scores.json (the flows scored next to the VAE's latent axes and random directions).
"""
import ml_collections

from configs import common
from configs.flows_sprites import eval_options, flow_options


def get_config(arg: str = ""):
  parts = common.check_arg(arg, ("smoke", "sweep"))
  c = common.run_config()
  c.family = "flows"
  c.workdir = "workdirs/flows_joint_sprites"
  c.data = dict(name="sprites", size=64)
  c.model = dict(arch="conv", latent_dim=10, hidden=())  # hidden: MLP widths (arch "mlp")
  # transforms: the factors that move in the sequences (indices into the dataset's
  # factors: sprites' scale, orientation, x, y), speeds: index units per frame; one
  # potential each; path_len T: flow steps per sequence (frames 0..T-1)
  # potential_init 'stacked': the init REPRODUCTION.md sections 5 and 11 measured the joint
  # runs with (lsx's former; 'per_potential' is each potential's own fan-in)
  c.flows = flow_options(mode="joint", num_potentials=0, path_len=5, transforms=(1, 2, 3, 4),
                         speeds=(1, 2, 3, 3), potential_init="stacked")
  # lambda_jvp: weight of the rewarded image change (the paper: = lambda_pde); 0 here, the
  # sequences set how far each step moves and the unbounded reward destabilized training
  c.hp = ml_collections.ConfigDict({"lr": 1e-3, "beta": 4.0, "lambda_latent": 1.0,
                                    "lambda_pde": 1.0, "lambda_jvp": 0.0})
  c.train.update(steps=3000, batch_size=32, chunk=50, ckpt_every=500, keep=2, log_every_s=10.0)
  c.eval = eval_options(anchors=8, steps=4)
  if "sweep" in parts:
    c.workdir += "_sweep"
    c.sweep.seed = (0, 1, 2)
  if "smoke" in parts:
    c.model.update(latent_dim=4, arch="mlp", hidden=(32,))
    c.data.size = 32
    c.flows.update(path_len=3, speeds=(1, 1, 1, 1))
    c.train.update(steps=4, chunk=2, batch_size=4, ckpt_every=2)
    c.eval.update(anchors=2, steps=2, vp_anchors=10, random_seeds=1, oracle_pool=2)
  c.lock()
  return c
