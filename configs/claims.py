"""The papers' claims measured over seeds (experiments.claims; lsx.claims has the rules).

  python -m experiments.claims --config configs/claims.py           # the papers' budgets
  python -m experiments.claims --config configs/claims.py:cpu       # the 2-core CPU budget
  python -m experiments.claims --config configs/claims.py --config.claims=latentclr

Sections: `claims` (which to measure), `seeds`, `out` (claims.json), `workdir` (runs the
claims own: baselines, the joint sweep), `run_root` (when set, every run's workdir
moves into it), `run_overrides` (config fields set in every run that
has them, nested like a config: {"decoder": {"workdir": ...}}), and one section per claim; a section's
`steps` of 0 keeps its run config's budget (the public setups'); `configurations` of
flows_posthoc and flows_regularizer are the forms measured, one row each (the first the
run config's own); `differs` is what still
differs from the paper, written into its rows (with `full_budget`, when set and the
section's `steps` is not 0: "budget: <steps> steps (<full_budget>)").
"""
import ml_collections

from configs import common

FLOWS_DIFFERS = (
    "lsx's built-in procedural data and conv VAE decoders (the public code: dSprites / "
    "Shapes3D and its own VAE); the VP classifier reads x' - x (the public VP network reads "
    "the pair)")
JOINT_DIFFERS = (
    "lsx's joint objective (per-sample potential and time, exact Laplacian, squared "
    "distances summed over latent dims where the public code averages them; lambda_jvp = 0 "
    "in configs/flows_joint_sprites.py, the public code weighs L_JVP with lambda_pde); "
    "lsx's config: beta = 4, 10 latents, lr 1e-3, batch 32, 3,000 steps (the public "
    "joint run: beta = 1, d = 226, lr 1e-4, batch 128, 100,000 iterations); held-out "
    "images are fresh draws of the procedural sprites (no fixed test split exists)")
PUBLIC_WEIGHTS_DIFFERS = (
    "this row's loss weights are the public joint run's (beta = 1, lambda_jvp = "
    "lambda_pde = 1, lambda_latent = 0.1: the public mean over latent dims where lsx sums "
    "over its 10); the rest of the setup is lsx's config as above")
MIXED_LABELS_DIFFERS = (
    "this row is lsx's option beside the public form (flows.classifier_labels = 'mixed', "
    "flows.classifier = 'mlp', 128 wide): the frame classifier reads pairs from each "
    "sample's own potential, an MLP on the image pair; the public form trains a conv "
    "classifier on one potential per batch, which stays at chance on lsx's decoders "
    "(REPRODUCTION.md section 11)")
CLR_GENERATOR = ("the generator is lsx's style-modulated VAE decoder on the built-in scenes "
                 "(the paper: StyleGAN2 on FFHQ / cars / cats, BigGAN)")
CLR_DIFFERS = (
    "lsx's nonlinear direction network is a "
    "2-layer GELU MLP per direction (public: 3 layers with batch norm and ReLU, lsx's "
    "directions.kind 'nonlinear_bn'); factor "
    "changes are read by lsx's grid oracle (the paper reports attribute classifiers)")


def get_config(arg: str = ""):
  parts = common.check_arg(arg, ("smoke", "cpu"))
  c = ml_collections.ConfigDict()
  c.config_file = "configs/claims.py" + (f":{arg}" if arg else "")
  c.claims = ("flows_posthoc", "flows_regularizer", "latentclr")
  c.seeds = (0, 1, 2)
  c.out = "docs/results/claims.json"
  c.workdir = "workdirs/claims"
  c.run_overrides = ml_collections.ConfigDict({})
  c.run_root = ""  # '': every run in its config's workdir
  # the flows' runs (public setup, one member per seed), the linear baselines fitted on
  # the same decoder (config `baseline_config`:<method>, K = the flows' K)
  c.flows_posthoc = dict(
      runs={"sprites": "configs/flows_sprites.py:reference,seeds",
            "scenes": "configs/flows_scenes.py:seeds"},
      steps=0, ckpt_every=0,
      baselines=("pca", "ganspace", "sefa", "jacobian", "voynov", "latentclr"),
      baseline_config="configs/latentclr_sprites.py", baseline_steps=0,
      vp_pairs=1000, anchors=64, oracle_pool=4, classifier_width=0, differs=FLOWS_DIFFERS,
      full_budget="",
      # one row each: the run config's own form, and lsx's mixed-label classifier option
      # (config fields nested like the run's config)
      configurations={"public": {}, "mixed labels": {"flows": dict(
          classifier_labels="mixed", classifier="mlp", classifier_width=128)}},
      configurations_differs={"mixed labels": MIXED_LABELS_DIFFERS})
  # configurations: the joint run's loss weights measured, one row each (one sweep of
  # configurations x {with, without flow terms} x seeds): lsx's config and the public
  # joint run's weights (beta = 1, lambda_jvp = lambda_pde, the latent distance averaged
  # over the 10 dims: lambda_latent = 1/10 of lsx's summed one)
  c.flows_regularizer = dict(
      run="configs/flows_joint_sprites.py", steps=0, iw_k=50, images=1000,
      heldout_seed=2024, differs=JOINT_DIFFERS,
      configurations={"lsx": {}, "public": {"beta": 1.0, "lambda_jvp": 1.0,
                                            "lambda_latent": 0.1}},
      configurations_differs={"public": PUBLIC_WEIGHTS_DIFFERS}, full_budget="")
  c.latentclr = dict(run="configs/latentclr_scenes.py", steps=0,
                     baselines=("ganspace", "sefa"),
                     factors=("floor_hue", "wall_hue", "object_hue", "scale"), min_factors=3,
                     anchors=128, select_anchors=64, informative_floor=0.01,
                     decoder_workdir="", decoder_config="",
                     differs=CLR_GENERATOR + "; " + CLR_DIFFERS, full_budget="")
  if "cpu" in parts:
    # what 2 CPU cores measured in one session (REPRODUCTION.md section 10)
    c.out = "docs/results/claims.json"
    # the public frame classifier at the latent's width (226) takes 6.8 s a step here
    c.flows_posthoc.update(steps=1000, ckpt_every=250, baseline_steps=300, classifier_width=32)
    c.flows_regularizer.steps = 1000
    # the style decoder trains at < 1 step/s on 2 cores (3,000 steps > 1 h) and LatentCLR
    # renders batch x K = 1,024 images a step through it: the CPU budget uses the plain
    # wide conv VAE of scenes (the flows' generator) instead
    c.latentclr.update(steps=300, decoder_workdir="workdirs/vae_scenes_wide",
                       decoder_config="configs/vae_scenes_wide.py")
    c.flows_posthoc.differs += ("; CPU budget: the conv frame classifier 32 wide (public: "
                                "the latent width, 226)")
    # the budget each row was measured at is named in its differs, from the steps it ran
    c.flows_posthoc.full_budget = "public: 10,000 iterations at batch 256"
    c.flows_regularizer.full_budget = "the config: 3,000 steps"
    c.latentclr.full_budget = "public: 10,000 iterations"
    c.latentclr.differs = c.latentclr.differs.replace(CLR_GENERATOR, (
        "the generator is lsx's plain wide conv VAE of scenes (configs/vae_scenes_wide.py), "
        "not the config's style-modulated decoder (the paper: StyleGAN2, BigGAN)"))
  if "smoke" in parts:
    c.seeds = (0, 1)
    c.out = "workdirs/claims_smoke/claims.json"
    c.workdir = "workdirs/claims_smoke"
    c.run_root = "workdirs/claims_smoke/runs"
    c.flows_posthoc.runs = ml_collections.ConfigDict(
        {"sprites": "configs/flows_sprites.py:reference,seeds,smoke"})
    c.flows_posthoc.update(baselines=("pca",), baseline_steps=2, vp_pairs=12, anchors=4)
    c.flows_regularizer.update(run="configs/flows_joint_sprites.py:smoke", iw_k=3, images=16)
    c.latentclr.update(run="configs/latentclr_scenes.py:smoke", anchors=4, select_anchors=2)
  c.lock()
  return c
