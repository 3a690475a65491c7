"""Direction discovery on the decoder of a beta-VAE trained on built-in sprites.

  python -m experiments.discover --config configs/latentclr_sprites.py
  python -m experiments.discover --config configs/latentclr_sprites.py:voynov
  python -m experiments.discover --config configs/latentclr_sprites.py --compare
  python -m experiments.discover --config configs/latentclr_sprites.py:sweep  # tau x seed

`directions.method`: latentclr | noiseclr (contrastive), voynov (reconstructor), pca |
ganspace | sefa | jacobian (closed form); a config argument of a method's name selects it
with its hyperparameters. Learned methods train through lsx.train (checkpointed,
resumable; `sweep.seed` and `sweep.hp` members as one program). `--compare` runs every
method in `compare.methods` plus the references (random directions, the latent axes of
this decoder and of a plain AE decoder, the supervised factor directions).
"""
from configs import common
from lsx.directions import family


def get_config(arg: str = ""):
  parts = common.check_arg(arg, ("smoke", "sweep") + tuple(family.METHODS))
  method = next((p for p in parts if p in family.METHODS), "latentclr")
  c = common.run_config()
  c.family = "directions"
  c.workdir = "workdirs/latentclr_sprites" if method == "latentclr" else f"workdirs/{method}_sprites"
  # the decoder studied (trained with `config` first when the workdir has no run)
  c.decoder = dict(workdir="workdirs/betavae_sprites", config="configs/betavae_sprites.py")
  # method; K directions and their parameterization: global | linear | nonlinear |
  # householder | expm; features (phi): 'pixels' | 'encoder' | 'decoder:<submodule>';
  # convention: 'lsx' or 'reference' (the public code's loss: LatentCLR multiplies by its
  # temperature and differences unit features; NoiseCLR takes the log of a ratio of means)
  # codes: what the directions train from, 'encoder' (encoder means of data images) or
  # 'prior' (z ~ N(0, I), as the public LatentCLR samples its generator's latents);
  # negatives: NoiseCLR's reference estimator's negative directions a step (its
  # tokens_per_iter; 0: every other direction)
  c.directions = dict(method=method, num=10, kind="global", hidden=0,
                      features="decoder:ConvT4S2_0", convention="lsx", codes="encoder",
                      negatives=0)
  c.optim.name = "adamw"
  # traced: the optimizer's and the method's (lsx.directions.family; alpha in units of the
  # latent prior's std)
  c.hp = dict(lr=1e-3, weight_decay=1e-3, **family.method_hp(method))
  c.sweep.seed = (0, 1, 2)
  c.train.update(steps=1000, batch_size=32, chunk=50, ckpt_every=500, keep=2, log_every_s=5.0)
  # scoring: anchors traversed over -steps..steps, reaching +-span latent stds
  # oracle: 'grid' (nearest rendered image; oracle_pool: over 4x4-pooled images, 16x fewer
  # flops, 1 = exact) or 'classifier' (a factor CNN trained for oracle_steps steps)
  # readable_orientation: an orientation read from an image no turn changes (a round blob,
  # lsx.metrics.rotation_anisotropy) is not a change (False: every reading counts)
  # protocol 'reference' adds the papers' protocols (lsx.directions.protocols): VP on
  # vp_pairs pairs per direction from z ~ N(0, I) along full paths, every row's shift
  # matched to the first method's image change, the manipulation table
  c.eval = dict(anchors=8, steps=3, span=2.0, vp_anchors=300, data=2000, oracle="grid",
                oracle_pool=4, oracle_steps=3000, readable_orientation=True, protocol="lsx",
                vp_pairs=1000)
  c.compare = dict(methods=("latentclr", "noiseclr", "voynov", "pca", "ganspace", "sefa",
                            "jacobian"),
                   ae_workdir="workdirs/ae_sprites", ae_config="configs/ae_sprites.py",
                   random_seeds=3)
  if "sweep" in parts and "temperature" in c.hp:
    c.workdir += "_sweep"
    c.sweep.hp = {"temperature": (0.1, 0.5, 2.0)}
  if "smoke" in parts:
    c.directions.num = 3
    c.sweep.seed = (0, 1)
    c.train.update(steps=4, chunk=2, ckpt_every=2, batch_size=4)
    c.eval.update(anchors=2, steps=1, vp_anchors=20, data=64, vp_pairs=12)
    c.compare.random_seeds = 1
  c.lock()
  return c
