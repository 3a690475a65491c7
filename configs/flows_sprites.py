"""Potential-flow traversals (Song et al. 2023) on a beta-VAE trained on built-in sprites.

  python -m experiments.flows --config configs/flows_sprites.py

Loads the beta-VAE in `vae_workdir` (trains it with configs/betavae_sprites.py first if
absent), learns K potentials on its latent space with the decoder frozen, and writes
flows.png, flows_losses.png and flows_dfa.json in `workdir`.
"""
import ml_collections


def get_config(arg: str = ""):
  c = ml_collections.ConfigDict()
  c.mode = "posthoc"  # flows on a frozen, trained VAE ('joint': configs/flows_joint_sprites.py)
  c.seed = 0
  c.workdir = "workdirs/flows_sprites"
  c.vae_workdir = "workdirs/betavae_sprites"
  c.num_potentials = 8  # K (the paper's default is 16)
  c.path_len = 10  # T
  c.laplacian = "exact"  # or 'hutchinson' (num_probes) for large latent spaces
  c.num_probes = 8
  c.normalize_jvp = False  # True: reward image change per unit latent motion (lsx option)
  # flow_output: 'tanh' bounds each potential to (-1, 1) (the paper's MLP) | 'linear';
  # jvp_reduction: the squared image change of L_JVP summed ('sum') or averaged ('mean',
  # the public code) over pixels
  c.flow_output = "tanh"
  c.jvp_reduction = "mean"
  c.hp = ml_collections.ConfigDict({"lr": 1e-3, "lambda_cls": 1.0, "lambda_pde": 1.0})
  c.train = dict(steps=600, batch_size=32, chunk=20, ckpt_every=200, log_every_s=5.0)
  # scoring: anchors traversed -steps..steps flow steps (linear references: +-span latent
  # stds of the active latents); vp_anchors per direction for variation predictability;
  # null_permutations: also score chance-corrected attribution (0: off); oracle_pool > 1:
  # the grid oracle compares pooled images (faster, coarser); oracle: 'grid' (nearest
  # rendered image) or 'classifier' (a factor CNN trained for oracle_steps steps);
  # readable_orientation: an orientation read from an image no turn changes (a round blob,
  # lsx.metrics.rotation_anisotropy) is not a change (False: every reading counts)
  c.eval = dict(anchors=6, steps=5, span=2.0, vp_anchors=100, random_seeds=2,
                null_permutations=200, oracle="grid", oracle_pool=1, oracle_steps=3000,
                readable_orientation=True)
  if arg == "smoke":
    c.num_potentials, c.path_len = 3, 4
    c.train.steps, c.train.chunk, c.train.batch_size, c.train.ckpt_every = 4, 2, 4, 2
    c.eval.anchors, c.eval.steps, c.eval.vp_anchors, c.eval.random_seeds = 2, 2, 10, 1
    c.eval.oracle_pool = 2
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; known: 'smoke'.")
  c.lock()
  return c
