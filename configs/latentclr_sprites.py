"""Direction discovery on the decoder of a beta-VAE trained on built-in sprites.

  python -m experiments.discover --config configs/latentclr_sprites.py
  python -m experiments.discover --config configs/latentclr_sprites.py --config.method=voynov
  python -m experiments.discover --config configs/latentclr_sprites.py --compare

`method`: latentclr | noiseclr (contrastive), voynov (reconstructor), pca | ganspace |
sefa | jacobian (closed form). The learned methods train one member per seed in
`seeds` as one vectorized program (lsx.train.sweep). `--compare` runs every method in
`compare.methods` plus the references (random directions, the latent axes of this decoder
and of a plain AE decoder) and writes comparison.csv/png.
"""
import ml_collections


def get_config(arg: str = ""):
  c = ml_collections.ConfigDict()
  c.workdir = "workdirs/latentclr_sprites"
  c.vae_workdir = "workdirs/betavae_sprites"  # trained with vae_config when absent
  c.vae_config = "configs/betavae_sprites.py"
  c.method = "latentclr"
  c.seeds = (0, 1, 2)
  c.sweep_strategy = "auto"  # vmap | map | auto (lsx.train.sweep.resolve_strategy)
  # K directions and their parameterization: global | linear | nonlinear | householder | expm
  c.directions = dict(num=10, kind="global", hidden=0)
  # phi: 'pixels' | 'encoder' | 'decoder:<submodule>' (an intermediate generator layer)
  c.features = "decoder:ConvT4S2_0"
  c.optimizer = "adamw"
  # traced hyperparameters (DESIGN.md defaults; alpha in units of the latent prior's std)
  c.hp = dict(lr=1e-3, weight_decay=1e-3, temperature=0.5, alpha=1.0, alpha_max=1.0,
              shift_min=0.5, shift_max=6.0, shift_weight=0.25)
  c.train = dict(steps=1000, batch_size=32, chunk=50, log_every_s=5.0)
  # scoring: anchors traversed over -steps..steps, reaching +-span latent stds
  # oracle: 'grid' (nearest rendered image; oracle_pool: over 4x4-pooled images, 16x fewer
  # flops, 1 = exact) or 'classifier' (a factor CNN trained for oracle_steps steps)
  # readable_orientation: an orientation read from an image no turn changes (a round blob,
  # lsx.metrics.rotation_anisotropy) is not a change (False: every reading counts)
  c.eval = dict(anchors=8, steps=3, span=2.0, vp_anchors=300, data=2000, oracle="grid",
                oracle_pool=4, oracle_steps=3000, readable_orientation=True)
  c.compare = dict(methods=("latentclr", "noiseclr", "voynov", "pca", "ganspace", "sefa",
                            "jacobian"),
                   ae_workdir="workdirs/ae_sprites", ae_config="configs/ae_sprites.py",
                   random_seeds=3)
  if arg == "smoke":
    c.directions.num = 3
    c.seeds = (0, 1)
    c.train.steps, c.train.chunk, c.train.batch_size = 4, 2, 4
    c.eval.anchors, c.eval.steps, c.eval.vp_anchors, c.eval.data = 2, 1, 20, 64
    c.compare.random_seeds = 1
  elif arg:
    raise ValueError(f"Unknown config argument {arg!r}; known: 'smoke'.")
  c.lock()
  return c
