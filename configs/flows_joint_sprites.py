"""A beta-VAE and potential flows trained together on one-factor sprite sequences.

  python -m experiments.flows --config configs/flows_joint_sprites.py

The paper's second use of the flows (Song et al. 2023): sequences in which one
ground-truth factor moves at a constant speed are rendered from factor indices; the
moving factor names the potential. Writes checkpoints/, flows.png, flows_losses.png and
flows_dfa.json (the flows scored next to the VAE's latent axes and random directions).
"""
import ml_collections


def get_config(arg: str = ""):
  c = ml_collections.ConfigDict()
  c.mode = "joint"
  c.seed = 0
  c.workdir = "workdirs/flows_joint_sprites"
  c.data = dict(name="sprites", size=64)
  c.model = dict(arch="conv", latent_dim=10, hidden=())  # hidden: MLP widths (arch "mlp")
  # the factors that move in the sequences (indices into the dataset's factors: sprites'
  # scale, orientation, x, y) and their speed in index units per frame; one potential each
  c.transforms = (1, 2, 3, 4)
  c.speeds = (1, 2, 3, 3)
  c.path_len = 5  # T: flow steps per sequence (frames 0..T-1)
  c.laplacian = "exact"
  c.num_probes = 8
  c.normalize_jvp = False
  # flow_output: 'tanh' bounds each potential to (-1, 1) (the paper's MLP) | 'linear';
  # jvp_reduction: the squared image change of L_JVP summed ('sum') or averaged ('mean',
  # the public code) over pixels
  c.flow_output = "tanh"
  c.jvp_reduction = "mean"
  # lambda_jvp: weight of the rewarded image change (the paper: = lambda_pde); 0 here, the
  # sequences set how far each step moves and the unbounded reward destabilized training
  c.hp = ml_collections.ConfigDict({"lr": 1e-3, "beta": 4.0, "lambda_latent": 1.0,
                                    "lambda_pde": 1.0, "lambda_jvp": 0.0})
  c.train = dict(steps=3000, batch_size=32, chunk=50, ckpt_every=500, log_every_s=10.0)
  # scoring as in configs/flows_sprites.py (flow steps each way; references over +-span std)
  c.eval = dict(anchors=8, steps=4, span=2.0, vp_anchors=100, random_seeds=2,
                null_permutations=200, oracle="grid", oracle_pool=1, oracle_steps=3000,
                readable_orientation=True)
  if arg == "smoke":
    c.model.latent_dim, c.path_len, c.speeds = 4, 3, (1, 1, 1, 1)
    c.model.arch, c.model.hidden, c.data.size = "mlp", (32,), 32
    c.train.steps, c.train.chunk, c.train.batch_size, c.train.ckpt_every = 4, 2, 4, 2
    c.eval.anchors, c.eval.steps, c.eval.vp_anchors, c.eval.random_seeds = 2, 2, 10, 1
    c.eval.oracle_pool = 2
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; known: 'smoke'.")
  c.lock()
  return c
