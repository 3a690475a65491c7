"""Writes the notebooks in this folder from the cell sources below (edit here, re-run:
`python notebooks/make_notebooks.py`). Every notebook reads LSX_NOTEBOOK_SMOKE=1 to
shrink its steps (CI executes them that way: tests/test_notebooks.py)."""
import os

import nbformat as nbf

HERE = os.path.dirname(os.path.abspath(__file__))

SETUP = '''import os, sys, tempfile
sys.path.insert(0, os.path.abspath(".."))  # the repository root: configs/ and experiments/
SMOKE = os.environ.get("LSX_NOTEBOOK_SMOKE") == "1"  # CI: tiny settings
import jax, jax.numpy as jnp, numpy as np
import matplotlib.pyplot as plt
from IPython.display import Image, display
from configs import common
from lsx import metrics as lm
from lsx import train as lt
import lsx.objective
WORK = tempfile.mkdtemp(prefix="lsx_nb_")
print("jax", jax.__version__, jax.default_backend(), "| smoke" if SMOKE else "", "| workdirs in", WORK)'''


SMOKE_ARCH = '''  if SMOKE:  # CI only: a small MLP pair on 32x32 sprites compiles and scores in seconds
    c.model.arch, c.model.hidden, c.data.size = "mlp", (64,), 32'''


def config(spec, workdir, smoke_arch=True, **over):
  lines = [f'c = common.load("../configs/{spec}")', "with c.unlocked():",
           f'  c.workdir = os.path.join(WORK, "{workdir}")']
  lines += [f"  c.{k} = {v}" for k, v in over.items()]
  if smoke_arch:
    lines.append(SMOKE_ARCH)
  return "\n".join(lines)


NOTEBOOKS = {}

NOTEBOOKS["quickstart"] = [
    ("md", "# Quickstart: a β-VAE on built-in sprites, its pictures and its scores\n\n"
           "The built-in sprites (dSprites' factor grid) are rendered inside the jitted "
           "training step, so nothing is downloaded. About 3 minutes on a laptop CPU."),
    ("code", SETUP),
    ("code", config("betavae_sprites.py", "betavae", **{
        "train.steps": "20 if SMOKE else 1500", "train.batch_size": 32,
        "train.chunk": "10 if SMOKE else 50"}) +
     "\nstate, setup = lt.train(c, c.workdir)  # progress: steps/s, ETA, loss; resumes if re-run"),
    ("md", "Reconstructions (top: data, bottom: reconstruction) and traversals (one row "
           "per latent dimension, ±3σ around three anchors):"),
    ("code", 'display(Image(os.path.join(c.workdir, "reconstructions.png")))\n'
             'display(Image(os.path.join(c.workdir, "traversals.png")))'),
    ("md", "## Scores\nEncode images with known factors and score the representation. "
           "Every metric is a function of (latents, factors) arrays."),
    ("code", '''n = 500 if SMOKE else 5000
images, factors = setup.dataset.sample(jax.random.key(1), n)
z = jax.jit(setup.model.represent)(state.params, images)
info = lm.infomec(z, factors)
half = n // 2
dci = lm.dci(z[:half], factors[:half], z[half:], factors[half:], estimator="logistic")
print(f"InfoM {info['infom']:.3f}  InfoE {info['infoe']:.3f}  InfoC {info['infoc']:.3f}")
print(f"MIG {lm.mig(z, factors):.3f}")
print({k: round(float(v), 3) for k, v in dci.items() if np.ndim(v) == 0})'''),
    ("code", '''plt.imshow(info["nmi"], cmap="Blues", vmin=0, vmax=1)
plt.yticks(range(len(setup.dataset.factor_names)), setup.dataset.factor_names)
plt.xlabel("latent dimension"); plt.title("normalized mutual information"); plt.colorbar()
plt.show()'''),
]

NOTEBOOKS["sweeps"] = [
    ("md", "# Sweeps: seeds × β as one program\n\nA sweep is declared in the config; "
           "traced hyperparameters are stacked on a member axis and the whole sweep trains "
           "as one jitted program (`vmap` on accelerators, `map` on CPU, sharded over a "
           "device mesh). About 4 minutes on a laptop CPU."),
    ("code", SETUP),
    ("code", config("betavae_sprites.py", "sweep", **{
        "train.steps": "10 if SMOKE else 400", "train.chunk": "10 if SMOKE else 50",
        "train.batch_size": "16 if SMOKE else 32", "sweep.seed": "(0, 1)",
        "sweep.hp": '{"beta": (1.0, 4.0) if SMOKE else (1.0, 4.0, 16.0)}'}) +
     "\nstate, setup = lt.train(c, c.workdir)  # one stacked state, per-member metrics"),
    ("md", "Score every member on the same samples (adds columns to `sweep.csv`), then "
           "plot the scores against β:"),
    ("code", '''from lsx import runs
res = runs.evaluate_workdir(c.workdir, metrics=("infomec", "mig"),
                            num_samples=400 if SMOKE else 3000, log=lambda s: None)
import csv
rows = list(csv.DictReader(open(os.path.join(c.workdir, "sweep.csv"))))
for r in rows:
  print({k: r[k] for k in ("member", "seed", "hp.beta", "infom", "infoc", "mig") if k in r})'''),
    ("code", '''betas = sorted({float(r["hp.beta"]) for r in rows})
fig, axes = plt.subplots(1, 3, figsize=(11, 3))
for ax, key in zip(axes, ("infom", "infoc", "mig")):
  for r in rows:
    ax.plot(float(r["hp.beta"]), float(r[key]), "k.")
  ax.plot(betas, [np.mean([float(r[key]) for r in rows if float(r["hp.beta"]) == b]) for b in betas])
  ax.set_xscale("log"); ax.set_xlabel("beta"); ax.set_title(key)
plt.tight_layout(); plt.show()'''),
    ("md", "Pull the best member out as an ordinary single-run workdir (checkpoint, "
           "config with its seed and β):"),
    ("code", '''best = max(range(len(rows)), key=lambda i: float(rows[i]["mig"]))
out = lt.extract_member(c.workdir, best, os.path.join(WORK, "best"))
setup1, state1 = lt.load_run(out)
print("member", best, "->", out, "beta", float(setup1.hp["beta"]))'''),
]

NOTEBOOKS["quantized_latents"] = [
    ("md", "# Quantized latents (QLAE) against β-VAE and AE on scenes\n\n"
           "The three models train on the built-in scenes (Shapes3D's factor grid) for a "
           "few hundred steps each; InfoMEC and NMI heat maps side by side. Short runs "
           "separate the models less than the 30,000-step runs of REPRODUCTION.md. "
           "About 5 minutes on a laptop CPU."),
    ("code", SETUP),
    ("code", '''runs = {}
for name, spec in (("QLAE", "qlae_scenes.py"), ("beta-VAE", "betavae_scenes.py"), ("AE", "ae_scenes.py")):
  c = common.load("../configs/" + spec)
  with c.unlocked():
    c.workdir = os.path.join(WORK, name)
    c.train.steps = 4 if SMOKE else 400
    c.train.chunk = 2 if SMOKE else 50
    c.train.batch_size = 16 if SMOKE else 32
''' + SMOKE_ARCH.replace("\n", "\n  ").replace("  if SMOKE", "    if SMOKE", 1) + '''
  state, setup = lt.train(c, c.workdir, write_figures=False, print_fn=lambda s: None)
  runs[name] = (setup, state)
  print(name, "trained")'''),
    ("code", '''n = 400 if SMOKE else 3000
scores = {}
for name, (setup, state) in runs.items():
  images, factors = setup.dataset.sample(jax.random.key(3), n)
  z = jax.jit(setup.model.represent)(state.params, images)
  scores[name] = lm.infomec(z, factors, discrete_latents=(name == "QLAE"))
  s = scores[name]
  print(f"{name:9s} InfoM {s['infom']:.3f}  InfoE {s['infoe']:.3f}  InfoC {s['infoc']:.3f}")'''),
    ("code", '''fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
names = runs[next(iter(runs))][0].dataset.factor_names
for ax, (name, s) in zip(axes, scores.items()):
  ax.imshow(s["nmi"], cmap="Blues", vmin=0, vmax=1)
  ax.set_yticks(range(len(names)), names); ax.set_xlabel("latent"); ax.set_title(name)
plt.tight_layout(); plt.show()'''),
]

NOTEBOOKS["navigating_latents"] = [
    ("md", "# Navigating a latent space: potential flows and contrastive directions\n\n"
           "One β-VAE decoder on sprites; K potentials (Song et al. 2023) and K LatentCLR "
           "directions learned on its latent space with the decoder frozen; traversal grids "
           "and the direction-factor attribution (DFA) table. About 5 minutes on a laptop "
           "CPU; short runs, so expect modest scores (REPRODUCTION.md has the full ones)."),
    ("code", SETUP),
    ("code", config("betavae_sprites.py", "vae", **{
        "train.steps": "10 if SMOKE else 800", "train.chunk": "10 if SMOKE else 50",
        "train.batch_size": "16 if SMOKE else 32"}) +
     '''\nvstate, vsetup = lt.train(c, c.workdir, write_figures=False, print_fn=lambda s: None)
model, vp, ds = vsetup.model, vstate.params, vsetup.dataset
generate = jax.jit(lambda z: model.generate(vp, z))
images, _ = ds.sample(jax.random.key(7), 1000)
z = jax.jit(model.represent)(vp, images)
sd = float(z.std(0).mean())'''),
    ("md", "## Potential flows\nThe same pure pieces the experiment uses: `make_flow`, "
           "`make_flow_objective`, `traverse`."),
    ("code", '''from lsx import flows
K, steps = 4, (4 if SMOKE else 300)
flow = flows.make_flow(model.latent_dim, K)
init_clf, floss = flows.make_flow_objective(flow, lambda zz: model.generate(vp, zz),
                                            ds.image_shape, path_len=4 if SMOKE else 10)
opt = lt.make_optimizer("adam")
fparams = {"flow": flow.init(jax.random.key(0)), "classifier": init_clf(jax.random.key(1))}
fstate = lt.TrainState.create(fparams, opt, jax.random.key(2))
sample = lambda rng, n: (model.represent(vp, ds.sample(rng, n)[0]), None)
fobj = lsx.objective.Objective("flows", None, floss)  # one protocol: init, loss, hp
chunk = jax.jit(lt.make_train_chunk(lt.make_train_step(fobj, opt), sample, 16, steps))
hp = {"lr": jnp.float32(1e-3), "lambda_cls": jnp.float32(1.0), "lambda_pde": jnp.float32(1.0)}
fstate, m = chunk(fstate, hp)
print("wave residual first/last:", float(m["pde"][0]), float(m["pde"][-1]))'''),
    ("code", '''from lsx import viz
paths = jax.vmap(lambda k: flows.traverse(flow.potential, fstate.params["flow"], z[0], k, 6))(jnp.arange(K))
frames = generate(paths.reshape(-1, model.latent_dim)).reshape(paths.shape[:2] + ds.image_shape)
plt.figure(figsize=(8, 5)); plt.imshow(viz.image_grid(np.asarray(frames))); plt.axis("off")
plt.title("one row per potential"); plt.show()'''),
    ("md", "## Contrastive directions (LatentCLR) and closed-form baselines"),
    ("code", '''from lsx import directions as ld
dirs = ld.make_directions("global", 6, model.latent_dim)
# phi: the decoder's first transposed convolution (the smoke run's MLP decoder: pixels)
feat = ld.make_feature_map("pixels" if SMOKE else "decoder:ConvT4S2_0", model, vp)
init, closs = ld.make_contrastive_objective(dirs, feat, "latentclr")
opt = lt.make_optimizer("adamw")
dstate = lt.TrainState.create(init(jax.random.key(0)), opt, jax.random.key(1))
cobj = lsx.objective.Objective("latentclr", init, closs)
chunk = jax.jit(lt.make_train_chunk(lt.make_train_step(cobj, opt), sample, 16, 4 if SMOKE else 300))
hp = {"lr": jnp.float32(1e-3), "weight_decay": jnp.float32(1e-3),
      "temperature": jnp.float32(0.5), "alpha": jnp.float32(1.0)}
dstate, m = chunk(dstate, hp)
print("contrastive loss first/last:", float(m["loss"][0]), float(m["loss"][-1]))
imgs = ld.traversal_images(dirs, dstate.params["directions"], generate, z[:1], 3, 2 * sd / 3)
plt.figure(figsize=(6, 6)); plt.imshow(viz.image_grid(np.asarray(imgs[:, 0]))); plt.axis("off"); plt.show()'''),
    ("md", "## The DFA table\nThe oracle reads each decoded frame's factors by nearest "
           "neighbour over the rendered factor grid (4×4-pooled here for speed)."),
    ("code", '''oracle = lm.grid_oracle(ds, pool=4)
candidates = {"latentclr": (dirs, dstate.params["directions"]),
              "pca": ld.fixed_directions(ld.pca_directions(z, 6)[0]),
              "sefa": ld.fixed_directions(ld.sefa_directions(ld.family.Decoder(model, vp, ds, 64).first_layer_kernel(), 6)[0]),
              "random": ld.fixed_directions(jax.random.normal(jax.random.key(5), (6, model.latent_dim)))}
anchors = z[:2] if SMOKE else z[:8]
scores = ld.score_direction_sets(candidates, generate, oracle, anchors, z[-60:], num_steps=3,
                                 step_size=2 * sd / 3, dataset=ds)  # one oracle pass for all
for name, r in scores.items():
  print(f"{name:10s} D {r['disentanglement']:.3f}  C {r['completeness']:.3f}  "
        f"dMIG {r['direction_mig']:.3f}  VP {r['vp']:.3f}")'''),
]

NOTEBOOKS["composition"] = [
    ("md", "# Composition: jit, vmap and grad over lsx's pure functions\n\n"
           "Models, losses, traversals and metrics are pure functions of pytrees, so JAX's "
           "transformations compose over them. This notebook is where a paper's reproducing "
           "code starts. Under a minute on a laptop CPU."),
    ("code", SETUP),
    ("code", '''from lsx import data, models, directions as ld
ds = data.Sprites(size=32 if SMOKE else 64)  # smoke (CI): 32x32
model = models.make_autoencoder(ds.image_shape, latent_dim=6, arch="mlp", hidden=(256, 256))
members = 3
params = jax.vmap(model.init)(jax.random.split(jax.random.key(0), members))  # 3 models, stacked
print(jax.tree.map(jnp.shape, params["decoder"]["Dense_0"]))  # an MLP pair: quick on a CPU'''),
    ("md", "**One call: a traversal vmapped over sweep members × directions × anchors.**"),
    ("code", '''dirs = ld.make_directions("global", 4, 6)
dparams = jax.vmap(dirs.init)(jax.random.split(jax.random.key(1), members))
anchors = jax.random.normal(jax.random.key(2), (5, 6))

def frames(p, dp, k, z):  # one member, one direction, one anchor -> [7, H, W, 1]
  path = ld.traverse(dirs, dp, z, k, 3, 0.5)
  return model.generate(p, path)

grid = jax.jit(jax.vmap(jax.vmap(jax.vmap(frames, (None, None, None, 0)), (None, None, 0, None)),
                        (0, 0, None, None)))(params, dparams, jnp.arange(4), anchors)
print(grid.shape, "= members x directions x anchors x steps x H x W x C")'''),
    ("md", "**A Jacobian of the decoder** (forward mode; its SVD gives the local directions "
           "`ld.jacobian_svd` finds matrix-free):"),
    ("code", '''p0 = jax.tree.map(lambda a: a[0], params)
g = lambda z: model.generate(p0, z[None])[0].reshape(-1)
J = jax.jacfwd(g)(anchors[0])
s = jnp.linalg.svd(J, compute_uv=False)
u, sig = ld.jacobian_svd(lambda z: g(z), anchors[0], 3, iters=100)
print(J.shape, "singular values", np.round(s[:3], 4), "power iteration", np.round(sig, 4))'''),
    ("md", "**A custom objective from library pieces**: the β-VAE loss plus a penalty that "
           "keeps learned directions orthogonal, trained with lsx's step; β and the "
           "penalty weight are traced, so the same objective vmaps over a sweep."),
    ("code", '''from lsx.objective import Objective
from lsx.train import TrainState, make_optimizer, make_train_step, make_train_chunk
vae = models.make_objective("beta_vae", model)

def loss(p, images, rng, hp):
  l, aux = vae.loss(p["model"], images, rng, hp)
  u = dirs.matrix(p["dirs"])
  ortho = jnp.sum((u @ u.T - jnp.eye(u.shape[0])) ** 2)
  return l + hp["ortho"] * ortho, {**aux, "ortho": ortho}

opt = make_optimizer("adam")
init = lambda k: TrainState.create({"model": model.init(k), "dirs": dirs.init(k)}, opt, k)
objective = Objective("beta_vae+ortho", None, loss, {"ortho": 0.1})  # init is built below
chunk = make_train_chunk(make_train_step(objective, opt), ds.sample, 8, 2 if SMOKE else 5)
states = jax.vmap(init)(jax.random.split(jax.random.key(3), 2))
hps = {"beta": jnp.array([1.0, 4.0]), "lr": jnp.full(2, 1e-3), "ortho": jnp.array([0.1, 1.0])}
states, m = jax.jit(jax.vmap(chunk))(states, hps)
print("loss per member and step:\\n", np.round(np.asarray(m["loss"]), 1))'''),
    ("md", "**grad of a metric-like quantity**: how the mean reconstruction changes with the "
           "latent code, per anchor, by `vmap(grad(...))`:"),
    ("code", '''sal = jax.vmap(jax.grad(lambda z: model.generate(p0, z[None]).mean()))(anchors)
print(sal.shape, np.round(np.asarray(sal[0]), 5))'''),
]


NOTEBOOKS["diffusion"] = [
    ("md", "# A denoiser's latent spaces: samples, inversion and directions in h\n\n"
           "A small ε-prediction U-Net trained on the built-in sprites (docs/diffusion.md); "
           "its DDIM samples judged by the factor oracle, real images inverted and "
           "reconstructed, and directions in h — the U-Net's bottleneck, Kwon et al.'s "
           "h-space — found by PCA (Haas et al.) and edited into the reverse process as "
           "Asyrp does. If `workdirs/diffusion_sprites` holds the config's full run (6,000 "
           "steps, about an hour on one CPU core) it is loaded; otherwise a 1,500-step run "
           "trains here (about 10 minutes on a laptop CPU: expect blobs, not sprites)."),
    ("code", SETUP),
    ("code", '''RUN = os.path.join("..", "workdirs", "diffusion_sprites")  # configs/diffusion_sprites.py's run
if not SMOKE and os.path.isdir(os.path.join(RUN, "checkpoints")):
  setup, state = lt.load_run(RUN)
  workdir = RUN
  print("loaded the trained run in", RUN)
else:
  c = common.load("../configs/diffusion_sprites.py" + (":smoke" if SMOKE else ""))
  with c.unlocked():
    c.workdir = workdir = os.path.join(WORK, "denoiser")
    if not SMOKE:
      c.train.steps = 1500
  state, setup = lt.train(c, workdir)  # progress: steps/s, ETA, eps_mse; resumes if re-run'''),
    ("md", "DDIM samples from fixed noise (EMA weights) and, for the first samples, the "
           "clean image x̂₀ each DDIM step predicts:"),
    ("code", 'display(Image(os.path.join(workdir, "samples.png")))\n'
             'display(Image(os.path.join(workdir, "denoising.png")))'),
    ("md", "## Sample quality without a download\nThe grid oracle reads each image's "
           "factors by its nearest rendered image. A sample is *valid* when it is as close "
           "to the rendered grid as 99% of slightly blurred data images; the TV distance "
           "compares each factor's read distribution with the data's. The data row is the "
           "floor at this number of samples."),
    ("code", '''from lsx.diffusion import family as dfam, directions as hd, properties
from lsx.metrics.sample_quality import sample_quality
from lsx import viz
den = dfam.denoiser(setup, state.params)          # eps_fn(x_t, t, delta_h) -> (eps, h)
ds = setup.dataset
oracle = lm.grid_oracle(ds, pool=1 if SMOKE else 2)
n, steps = (16, 4) if SMOKE else (256, 10)
samples = dfam.sample_images(setup, state.params, n, steps)
data, _ = ds.sample(jax.random.key(5), n)
for name, x in (("data", data), (f"denoiser, DDIM {steps}", samples)):
  q = sample_quality(x, oracle, ds, reference=500 if SMOKE else 5000)
  print(f"{name:18s} validity {q['validity']:.3f}  factor TV {q['tv_mean']:.3f}",
        {k: round(v, 2) for k, v in q["tv"].items()})'''),
    ("md", "## Inversion\nDDIM inversion runs the sampler backwards; its error is first "
           "order in the step, so the round trip converges with the number of steps. The "
           "DPM-Encoder (CycleDiffusion) records the noises that take ancestral DDPM back "
           "to the image exactly."),
    ("code", '''real = data[:4 if SMOKE else 16]
for s in ((2, 4) if SMOKE else (10, 50, 100)):
  r = properties.inversion_quality(den, real, oracle, steps=s)
  print(f"DDIM {s:3d} steps: MSE {r['mse']:.2e}  read as the same factors {r['same_factors']:.2f}")
r = properties.inversion_quality(den, real, oracle, exact=True)
print(f"DPM-Encoder + DDPM: MSE {r['mse']:.2e}  same factors {r['same_factors']:.2f}")'''),
    ("md", "## Directions in h\nh along the DDIM paths of many noises, its principal "
           "components (Haas et al.'s global directions), each scaled to the RMS std of h "
           "along them. `EditGenerator` turns the denoiser and the directions into a "
           "generator of codes [x_T, c]: DDIM with Δh = Σ c_k u_k, Asyrp's asymmetric edit "
           "— the object lsx's scorer reads like a VAE decoder."),
    ("code", '''K = 2 if SMOKE else 4
x_T = jax.random.normal(jax.random.key(2), (8 if SMOKE else 64,) + den.image_shape)
h = hd.collect_h(den, x_T, steps)                  # [steps, samples, *h_shape]
flat = h.reshape(-1, int(np.prod(den.h_shape)))
u, var = hd.pca_directions(flat, K)
gen = hd.EditGenerator(den, u, ds, steps=steps, num_anchors=4 if SMOKE else 16,
                       scale=float(jnp.sqrt(var.mean())))
cs = np.linspace(-2, 2, 5)
rows = [gen.generate(jnp.repeat(gen.z[:1], len(cs), 0).at[:, gen.x_dim + k].set(jnp.asarray(cs)))
        for k in range(K)]
fig = viz.grid_figure(np.stack([np.asarray(r) for r in rows]),
                      row_labels=[f"PC {k}" for k in range(K)], col_labels=[f"{c:+.0f}" for c in cs],
                      title="one noise, h edited along each principal direction")
viz.save_figure(fig, os.path.join(WORK, "pca_edits.png"))
display(Image(os.path.join(WORK, "pca_edits.png")))'''),
    ("md", "## Asyrp's properties, read by the oracle\nHomogeneity: the coefficient of "
           "variation across samples of the factor change one Δh makes; linearity: the R² "
           "of that change against the edit's scale. `python -m experiments.hspace` "
           "scores every method (PCA, the Jacobian ∂ε/∂h, Park's pullback, NoiseCLR, "
           "LatentCLR, random and regressed references) with DFA and VP, and "
           "REPRODUCTION.md §12 has the numbers of the full runs."),
    ("code", '''sizes = np.asarray(ds.factor_sizes)
anchors = 4 if SMOKE else 16
for k in range(K):
  hom = properties.homogeneity(gen, oracle, sizes, k, 2.0, anchors)
  j = int(np.argmax(np.abs(hom["mean"])))
  lin = properties.linearity(gen, oracle, sizes, k, (-2.0, -1.0, 1.0, 2.0), anchors)
  print(f"PC {k} moves {ds.factor_names[j]:11s} by {hom['mean'][j]:+.3f} of its range "
        f"(CV across samples {hom['cv'][j]:.2f}, linearity R2 {lin['r2'][j]:.2f})")'''),
]


def main():
  for name, cells in NOTEBOOKS.items():
    nb = nbf.v4.new_notebook()
    nb.cells = [nbf.v4.new_markdown_cell(src) if kind == "md" else nbf.v4.new_code_cell(src)
                for kind, src in cells]
    for i, cell in enumerate(nb.cells):  # stable ids: regenerating changes only what changed
      cell.id = f"{name}-{i}"
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbf.write(nb, os.path.join(HERE, f"{name}.ipynb"))
    print("wrote", name)


if __name__ == "__main__":
  main()
