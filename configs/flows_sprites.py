"""Potential-flow traversals (Song et al. 2023) on a beta-VAE trained on built-in sprites.

  python -m experiments.flows --config configs/flows_sprites.py
  python -m experiments.flows --config configs/flows_sprites.py:sweep  # lambda_pde x seed
  python -m experiments.flows --config configs/flows_sprites.py:reference  # the public setup
  python -m experiments.flows --config configs/flows_sprites.py:reference,seeds  # x 3 seeds

Learns K potentials and a frame classifier on the latent space of the frozen decoder in
`decoder.workdir` (trained with `decoder.config` first when absent), through lsx.train
(checkpointed, resumable, sweepable), then writes flows.png, flows_losses.png and
scores.json in `workdir`.
"""
import ml_collections

from configs import common


def flow_options(**kw):
  """The `flows` section: K, path length T, Laplacian, L_JVP reduction, potential output.

  laplacian: 'exact' or 'hutchinson' (num_probes) for large latent spaces; normalize_jvp:
  reward image change per unit latent motion (lsx option); flow_output: 'tanh' bounds each
  potential to (-1, 1) (the paper's MLP) | 'linear'; jvp_reduction: the squared image
  change of L_JVP summed ('sum') or averaged ('mean', the public code) over pixels;
  convention: 'lsx' (per-sample k and t, exact Laplacian, the path as data) or
  'reference' (the public code's post-hoc objective: one k and t per batch, Hessian row
  sums, the gradient kept along the path, L_JVP at z_{t*+1}, reflected pairs for the
  classifier; path_len = num_support_timesteps // 2); codes: what the flows train from,
  'encoder' (the encoder means of data images) or 'prior' (z ~ N(0, I), the public
  trainer); potential_net: 'lsx' (one shared 16-dim time branch before the first tanh) or
  'reference' (the public MLP: its own d-dim time branch per potential after the first
  tanh, output bias); hidden: the potentials' width (0: the latent width); speed: the wave
  speed learned as 'log' c (lsx) or 'direct'ly (public); classifier: the frame classifier,
  'mlp' (lsx) or 'conv' (the public reconstructor, reparameterized logits) of width
  classifier_width (0: 128 for 'mlp', the latent width for 'conv' as the public code);
  classifier_labels: the reference objective's classifier labels, '' (the convention's
  own: one potential per batch for 'reference', as the public trainer) | 'batch' |
  'mixed' (lsx option: each sample its own potential, its pair from a path rolled out
  for the classifier);
  potential_init: the lsx net's LeCun init with each potential's own fan-in
  ('per_potential') or all K's together ('stacked', lsx's former init: the velocity
  ~K^(3/2) x smaller; the figures of REPRODUCTION.md sections 5 and 11 before
  2026-12-04 were measured with it)."""
  f = dict(mode="posthoc", num_potentials=8, path_len=10, laplacian="exact", num_probes=8,
           normalize_jvp=False, flow_output="tanh", jvp_reduction="mean", transforms=(),
           speeds=(), convention="lsx", codes="encoder", potential_net="lsx", hidden=0,
           speed="log", classifier="mlp", classifier_width=0, classifier_labels="",
           potential_init="per_potential")
  f.update(kw)
  return f


def eval_options(**kw):
  """Scoring: anchors traversed -steps..steps flow steps (linear references: +-span
  latent stds of the active latents); vp_anchors per direction for variation
  predictability; null_permutations: also score chance-corrected attribution (0: off);
  oracle 'grid' (nearest rendered image; oracle_pool > 1 compares pooled images) or
  'classifier' (a factor CNN trained for oracle_steps steps); readable_orientation: an
  orientation no turn changes (a round blob) is not a change; protocol 'reference' adds
  the papers' protocols (lsx.directions.protocols): VP on `vp_pairs` pairs per direction
  from z ~ N(0, I) along full paths (10% to train), every linear row's shift matched to
  the flows' mean image change, and the manipulation table (ref_* and manip_* columns)."""
  e = dict(anchors=6, steps=5, span=2.0, vp_anchors=100, random_seeds=2,
           null_permutations=200, oracle="grid", oracle_pool=1, oracle_steps=3000,
           readable_orientation=True, protocol="lsx", vp_pairs=1000)
  e.update(kw)
  return e


def get_config(arg: str = ""):
  parts = common.check_arg(arg, ("smoke", "sweep", "reference", "seeds"))
  c = common.run_config()
  c.family = "flows"
  c.workdir = "workdirs/flows_sprites"
  c.decoder = dict(workdir="workdirs/betavae_sprites", config="configs/betavae_sprites.py")
  c.flows = flow_options()  # K = 8 (the paper's default is 16)
  c.hp = ml_collections.ConfigDict({"lr": 1e-3, "lambda_cls": 1.0, "lambda_pde": 1.0})
  c.train.update(steps=600, batch_size=32, chunk=20, ckpt_every=200, keep=2, log_every_s=5.0)
  c.eval = eval_options()
  if "reference" in parts:
    # the public post-hoc setup (PDETraversal scripts/mnist.sh, lib/trainer_vae.py): the
    # public objective, K = 16, D = 10 time steps (5 rolled out), batch 256, 10,000
    # iterations of Adam 1e-4, on a plain VAE with a wide latent; z ~ N(0, I); the public
    # potential MLP, wave speed and conv frame classifier
    c.workdir += "_reference"
    c.decoder = dict(workdir="workdirs/vae_sprites_wide", config="configs/vae_sprites_wide.py")
    c.flows.update(convention="reference", num_potentials=16, path_len=5, codes="prior",
                   potential_net="reference", speed="direct", classifier="conv")
    c.hp.lr = 1e-4
    c.train.update(steps=10000, batch_size=256, chunk=50, ckpt_every=1000)
    c.eval.update(protocol="reference", steps=5)
  if "seeds" in parts:  # three seeds as one program (the claims' mean +- std)
    c.workdir += "_seeds"
    c.sweep.seed = (0, 1, 2)
  if "sweep" in parts:
    c.workdir += "_sweep"
    c.sweep.seed = (0, 1)
    c.sweep.hp = {"lambda_pde": (0.1, 1.0)}
  if "smoke" in parts:
    c.flows.num_potentials, c.flows.path_len = 3, 4
    if "reference" in parts:
      c.flows.classifier_width = 8  # the public width (the latent's) is for real runs
    c.train.update(steps=4, chunk=2, batch_size=4, ckpt_every=2)
    c.eval.update(anchors=2, steps=2, vp_anchors=10, random_seeds=1, oracle_pool=2, vp_pairs=12)
  c.lock()
  return c
