"""Directions in the h-space of the sprites denoiser, scored like a VAE decoder's.

  python -m experiments.hspace --config configs/hspace_sprites.py
  python -m experiments.hspace --config configs/hspace_sprites.py:cpu     # 2-core budget
  python -m experiments.hspace --config configs/hspace_sprites.py:smoke   # tests

Sections: diffusion (the denoiser run: its workdir, and the config that trains it when the
workdir holds none; workdirs: several trained runs, one per seed, each scored in
workdir/<run's base name> and reported as mean ± std in scores_seeds.json), hspace (methods: 'pca' of h over samples and timesteps, 'jacobian' of
∂ε/∂h and 'pullback' of ∂h/∂x_t at one image and timestep t by `iters` power iterations,
'noiseclr' / 'latentclr' learned contrastively on the noise predictions (config
contrastive), 'random', 'factors' regressed on the oracle's reading of the samples; num:
K directions;
samples: the x_T draws h is collected from along sample_steps DDIM steps, which are also
the edited sampler's steps; scale: the edit unit, 'common' (one norm for every method:
the RMS std of h along its K principal directions) or 'direction' (the std of h along each
direction, which leaves directions off h's principal subspace nearly inert); t_edit: edits apply for t >= t_edit; asymmetric: Asyrp's
edit, else symmetric; properties: the methods whose directions get Asyrp's homogeneity,
linearity, composition and robustness measured, plus the inversion round trips), vae (a VAE run of the same data whose prior samples' validity and
factor TV distance are reported beside the denoiser's samples: lsx.metrics.sample_quality,
and whose decoder's directions by `methods` (lsx.directions; learned ones trained `steps`
steps with directions_config's members and hyperparameters) are scored beside the h-space
rows by the same protocol: lsx.traversal_eval.vae_decoder_rows),
pullback (Park et al.'s claims, lsx.diffusion.properties.pullback_geometry: the overlap of
the top-k pullback tangent spaces across `anchors` samples and the factors an edit of
edit * sqrt(X) along the top direction moves, at the DDIM steps nearest early * T and
late * T, with `iters` power iterations; anchors 0: not measured),
manipulation (the manipulation protocol, lsx.directions.protocols.manipulation: for each
ordinal factor the direction that changes it most, chosen on the first `select` of
`anchors` noises and measured on the rest at the ends of the span, with its leakage into
the other factors; target: the share of a factor's range a direction must move it by for
scores_seeds.json's `moved`; anchors 0: not measured),
eval (as configs/flows_sprites.py: span in stds of h along each
direction, steps each way, anchors, vp_anchors, the oracle).
"""
import ml_collections

from configs import common
from configs.flows_sprites import eval_options


def get_config(arg: str = ""):
  parts = common.check_arg(arg, ("smoke", "cpu"))
  c = ml_collections.ConfigDict()
  c.workdir = "workdirs/hspace_sprites"
  # workdirs: several denoiser runs (seeds) scored each and reported as mean ± std
  # (lsx.hspace_seeds; () = the one run of `workdir`)
  c.diffusion = dict(workdir="workdirs/diffusion_sprites", config="configs/diffusion_sprites.py",
                     workdirs=())
  # the VAE whose prior samples are scored beside the denoiser's ('' workdir: none)
  # and whose decoder is scored beside the h-space rows by the same protocol: the direction
  # methods `methods` (learned ones for `steps` steps, members and hp as directions_config)
  c.vae = dict(workdir="", config="configs/betavae_sprites.py",
               directions_config="configs/latentclr_sprites.py",
               methods=("pca", "sefa", "jacobian", "latentclr", "noiseclr"), steps=1000)
  c.hspace = dict(methods=("pca", "jacobian", "pullback", "noiseclr", "latentclr", "random",
                           "factors"), num=8,
                  samples=256, sample_steps=20, t=500, iters=20, t_edit=0, asymmetric=True,
                  seed=0, properties=("pca",), scale="common")
  # the contrastive methods' runs (family 'h_directions', in workdir/<method>): budget and
  # hp (temperature; alpha: the edit's length in RMS deviations of h; t_min: the smallest
  # timestep the training images are noised to)
  c.pullback = dict(anchors=8, k=4, iters=20, early=0.8, late=0.2, edit=0.2)
  c.contrastive = dict(steps=1000, batch_size=16, lr=1e-3, temperature=0.5, alpha=0.5,
                       t_min=0)
  c.manipulation = dict(anchors=32, select=16, target=0.25)
  c.eval = eval_options(anchors=8, steps=3, vp_anchors=24, null_permutations=0, oracle_pool=2)
  if "cpu" in parts:  # what fits a 2-core CPU in about half an hour; 24 DFA anchors: with
    # 4, random h-directions' D ranged 0.06-0.46 over 3 denoisers (REPRODUCTION.md §12)
    c.hspace.update(num=4, samples=64, sample_steps=10, iters=10)
    c.contrastive.update(steps=150, batch_size=8)
    c.eval.update(anchors=24, vp_anchors=12)
    c.pullback.update(iters=10)
    c.vae.steps = 500
  if "smoke" in parts:
    c.workdir = "workdirs/hspace_smoke"
    c.diffusion = dict(workdir="workdirs/diffusion_smoke",
                       config="configs/diffusion_sprites.py:smoke", workdirs=())
    c.hspace.update(num=2, samples=8, sample_steps=3, t=10, iters=3)
    c.contrastive.update(steps=2, batch_size=3)
    c.pullback.update(anchors=2, k=2, iters=2)
    c.eval.update(anchors=2, steps=2, vp_anchors=6)
    c.manipulation.update(anchors=4, select=2)
  c.lock()
  return c
