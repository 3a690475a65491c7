"""The diffusion family (lsx.diffusion): the U-Net's convolution against lax, the samplers
against closed forms (a Gaussian data distribution, whose optimal denoiser is known),
the exact DDPM inversion, h-space edits, the EMA update, the config's refusals and the
figures. A sweep member equal to its run alone and a killed run resuming bit-exact:
tests/test_families.py, with every family."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common
from conftest import assert_trees_equal, set_fields
from lsx import runs, viz
from lsx.diffusion import (Conv3x3, UNet, ddim_invert, ddim_sample, ddim_timesteps,
                           ddpm_sample, dpm_encode, linear_schedule, q_sample)
from lsx.diffusion import family

QUIET = dict(print_fn=lambda s: None)
HP = {"beta_start": jnp.float32(1e-4), "beta_end": jnp.float32(0.02)}


def test_conv3x3_is_lax_conv_of_the_same_kernel():
  x = jax.random.normal(jax.random.key(0), (2, 6, 5, 3))
  m = Conv3x3(4)
  p = m.init(jax.random.key(1), x)
  want = jax.lax.conv_general_dilated(x, p["params"]["kernel"], (1, 1), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(m.apply(p, x), want + p["params"]["bias"], rtol=1e-5, atol=1e-5)
  # the lax.conv form on the same parameters, and a whole U-Net of each form
  np.testing.assert_allclose(Conv3x3(4, "xla").apply(p, x), m.apply(p, x), rtol=1e-5, atol=1e-5)
  unet = UNet(out_channels=1, widths=(8, 16), emb_dim=16)
  xs, ts = jax.random.normal(jax.random.key(2), (2, 8, 8, 1)), jnp.array([3, 7])
  params = unet.init(jax.random.key(3), xs, ts)
  for form in ("xla", "native"):
    other = UNet(1, (8, 16), 16, impl="s2d" if form == "xla" else form, conv3=form)
    for a, b in zip(other.apply(params, xs, ts), unet.apply(params, xs, ts)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_conv_impl_names_the_stride_2_and_3x3_forms():
  from lsx.diffusion.family import check_diffusion, conv_forms
  one = common.load("configs/diffusion_sprites.py:smoke")
  assert conv_forms(one) == ("native", "native")
  assert conv_forms(set_fields(one, **{"diffusion.conv_impl": "gemm"})) == ("gemm", "gemm")
  assert conv_forms(set_fields(one, **{"diffusion.conv_impl": "xla"})) == ("xla", "xla")
  assert conv_forms(set_fields(one, **{"diffusion.conv_impl": "s2d"})) == ("s2d", "gemm")
  with pytest.raises(ValueError, match=r"conv_impl must be one of \['native', 'gemm'"):
    check_diffusion(set_fields(one, **{"diffusion.conv_impl": "cudnn"}))


def _gaussian_eps(s2, sched):
  # data x_0 ~ N(0, s2 I): E[eps | x_t] = sqrt(1 - ab) x_t / (ab s2 + 1 - ab)
  def eps_fn(x, t, dh=None):
    ab = sched.alphas_cumprod[t].reshape(-1, *([1] * (x.ndim - 1)))
    return jnp.sqrt(1 - ab) * x / (ab * s2 + 1 - ab), None
  return eps_fn


def test_ddim_with_the_optimal_gaussian_denoiser_is_the_closed_form_linear_map():
  s2, steps = 0.25, 50
  sched = linear_schedule(HP, 1000)
  x_T = jax.random.normal(jax.random.key(0), (4000, 2))
  x0 = ddim_sample(_gaussian_eps(s2, sched), sched, x_T, steps)
  # the same steps in numpy, float64: each is x -> x * (sqrt(ab') a s2 + sqrt(1-ab') b) / v
  ab = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))

  def factor(n):
    ts, f = ddim_timesteps(1000, n)[::-1], 1.0
    for i, t in enumerate(ts):
      abp = ab[ts[i + 1]] if i + 1 < len(ts) else 1.0
      v = ab[t] * s2 + 1 - ab[t]
      f *= (np.sqrt(abp) * np.sqrt(ab[t]) * s2 + np.sqrt(1 - abp) * np.sqrt(1 - ab[t])) / v
    return f
  np.testing.assert_allclose(np.asarray(x0), np.asarray(x_T) * factor(steps), rtol=2e-4,
                             atol=1e-6)
  # the map takes N(0, I) to the data's N(0, s2) as the steps grow (DDIM's discretization
  # error: 4% at 50 steps, < 1% at 1000)
  assert float(np.std(np.asarray(x0))) == pytest.approx(factor(steps), rel=0.03)
  err = [abs(factor(n) - np.sqrt(s2)) for n in (50, 200, 1000)]
  assert err[0] > err[1] > err[2] and err[2] < 0.005 and err[0] < 0.03


def test_ddim_steps_run_in_segments_compose_to_the_whole_run():
  sched = linear_schedule(HP, 1000)
  eps_fn = _gaussian_eps(0.25, sched)
  x_T = jax.random.normal(jax.random.key(2), (16, 3))
  whole = ddim_sample(eps_fn, sched, x_T, 20)
  mid = ddim_sample(eps_fn, sched, x_T, 20, stop=7)
  np.testing.assert_allclose(ddim_sample(eps_fn, sched, mid, 20, start=7), whole, rtol=1e-6,
                             atol=1e-6)
  with pytest.raises(ValueError, match="start < stop"):
    ddim_sample(eps_fn, sched, x_T, 20, start=5, stop=5)


def test_ddim_inversion_then_sampling_returns_the_image():
  sched = linear_schedule(HP, 1000)
  eps_fn = _gaussian_eps(0.25, sched)
  x0 = 0.5 * jax.random.normal(jax.random.key(1), (64, 3))
  x_T = ddim_invert(eps_fn, sched, x0, 100)
  assert float(jnp.std(x_T)) == pytest.approx(1.0, rel=0.1)  # back to (about) N(0, I)
  # the inversion evaluates each step's eps one timestep early: the round trip's error is
  # first order in the step (here a shrink of the image by 2.7% at 100 steps, 0.27% at 1000)
  err = {}
  for n in (100, 1000):
    back = ddim_sample(eps_fn, sched, ddim_invert(eps_fn, sched, x0, n), n)
    err[n] = float(jnp.max(jnp.abs(back - x0)) / jnp.max(jnp.abs(x0)))
  assert err[100] < 0.03 and err[1000] < 0.004 and err[1000] < err[100] / 5


@pytest.fixture(scope="module")
def net():
  unet = UNet(out_channels=1, widths=(8, 16), emb_dim=16)
  params = unet.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), jnp.zeros((1,), jnp.int32))
  eps_fn = jax.jit(lambda x, t, dh=None: unet.apply(params, x, t, dh))
  return unet, params, eps_fn


def test_the_exact_ddpm_inversion_reproduces_the_image(net):
  _, _, eps_fn = net
  sched = linear_schedule(HP, 30)
  x0 = jax.random.uniform(jax.random.key(2), (3, 8, 8, 1), minval=-1, maxval=1)
  x_T, noises = jax.jit(lambda x: dpm_encode(eps_fn, sched, x, jax.random.key(3)))(x0)
  assert noises.shape == (30, 3, 8, 8, 1)
  back = jax.jit(lambda x, z: ddpm_sample(eps_fn, sched, x, z))(x_T, noises)
  # exact up to float32 rounding, which the chain amplifies by up to 1 / sqrt(alpha_bar)
  np.testing.assert_allclose(np.asarray(back), np.asarray(x0), atol=5e-4)
  # other noises give another image: the reconstruction is the encoding's, not a fixed point
  other = ddpm_sample(eps_fn, sched, x_T, jnp.roll(noises, 1, axis=1))
  assert float(jnp.abs(other - x0).mean()) > 0.1


def test_h_space_edits(net):
  unet, params, eps_fn = net
  sched = linear_schedule(HP, 30)
  x = jax.random.normal(jax.random.key(4), (2, 8, 8, 1))
  t = jnp.array([5, 20])
  eps, h = unet.apply(params, x, t)
  assert h.shape == (2, 4, 4, 16)
  eps0, _ = unet.apply(params, x, t, jnp.zeros_like(h))
  np.testing.assert_array_equal(np.asarray(eps0), np.asarray(eps))
  dh = jax.random.normal(jax.random.key(5), h.shape[1:])
  plain = ddim_sample(eps_fn, sched, x, 10)
  # an edit only below t_edit... never: t_edit beyond the last timestep is no edit
  np.testing.assert_array_equal(np.asarray(ddim_sample(eps_fn, sched, x, 10, delta_h=dh,
                                                       t_edit=30)), np.asarray(plain))
  asym = ddim_sample(eps_fn, sched, x, 10, delta_h=dh)
  sym = ddim_sample(eps_fn, sched, x, 10, delta_h=dh, asymmetric=False)
  assert float(jnp.abs(asym - plain).mean()) > 1e-3 and float(jnp.abs(sym - asym).mean()) > 1e-4
  # asymmetric: the edited eps predicts x0 while the direction term keeps the unedited one
  ts = ddim_timesteps(30, 1)  # one step from t = 0 to the image: only the x0 term counts
  one_a = ddim_sample(eps_fn, sched, x, 1, delta_h=dh)
  one_s = ddim_sample(eps_fn, sched, x, 1, delta_h=dh, asymmetric=False)
  assert ts.tolist() == [0]
  np.testing.assert_allclose(np.asarray(one_a), np.asarray(one_s), rtol=1e-5, atol=1e-5)


def test_q_sample_is_the_forward_marginal():
  sched = linear_schedule(HP, 100)
  x0, noise = jnp.ones((2, 3)), jnp.full((2, 3), 2.0)
  ab = np.cumprod(1 - np.linspace(1e-4, 0.02, 100))
  got = q_sample(sched, x0, jnp.array([0, 99]), noise)
  want = np.sqrt(ab[[0, 99]])[:, None] + 2 * np.sqrt(1 - ab[[0, 99]])[:, None]
  np.testing.assert_allclose(np.asarray(got), np.broadcast_to(want, (2, 3)), rtol=1e-5)


def _smoke(workdir, **fields):
  return set_fields(common.load("configs/diffusion_sprites.py:smoke"), workdir=str(workdir),
                    **fields)


def test_the_ema_is_folded_in_after_each_step_and_the_optimizer_never_moves_it(tmp_path):
  from lsx.train import make_train_step
  setup = runs.build(_smoke(tmp_path / "a", **{"hp.ema_decay": 0.9}))
  state = setup.init_state()
  state = state.replace(params={**state.params, "ema": jax.tree.map(lambda a: a + 1.0,
                                                                   state.params["ema"])})
  step = jax.jit(make_train_step(setup.objective, setup.optimizer))
  batch, _ = setup.sample(jax.random.key(0), 4)
  new, m = step(state, setup.hp, batch, jax.random.key(1))
  want = jax.tree.map(lambda e, p: 0.9 * e + 0.1 * p, state.params["ema"], new.params["net"])
  assert_trees_equal(new.params["ema"], want, rtol=1e-6, atol=1e-7)
  assert not bool(m["nonfinite"]) and float(m["eps_mse"]) > 0


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  wd = tmp_path_factory.mktemp("diffusion") / "run"
  runs.train(_smoke(wd), **QUIET)
  return wd


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
  """A tiny MLP β-VAE on 32 x 32 sprites (twice the smoke denoiser's size): the VAE decoder
  an h-space table scores beside the denoiser."""
  wd = tmp_path_factory.mktemp("vae") / "run"
  c = set_fields(common.load("configs/betavae_sprites.py"),
                 **{"workdir": str(wd), "data.size": 32, "model.arch": "mlp",
                    "model.hidden": (32,), "train.steps": 4, "train.chunk": 2,
                    "train.batch_size": 8, "train.ckpt_every": 4, "train.log_every_s": 0.0})
  runs.train(c, **QUIET)
  return wd


def test_a_finished_run_writes_labelled_samples_and_its_denoising_trajectory(smoke_run):
  wd = smoke_run
  samples = viz.read_labels(str(wd / "samples.png"))
  assert samples["title"].startswith("DDIM samples (4 steps")
  traj = viz.read_labels(str(wd / "denoising.png"))["axes"][0]
  assert traj["rows"] == [f"sample {i}" for i in range(4)]
  assert traj["columns"] == ["t=19", "t=13", "t=6", "t=0"]
  setup, state = runs.load_run(str(wd))
  imgs = family.sample_images(setup, state.params, 2, 4)
  assert imgs.shape == (2, 16, 16, 1) and 0 <= imgs.min() and imgs.max() <= 1


@pytest.mark.parametrize("field,value,match", [
    ("hp.beta_end", 1e-5, r"0 < beta_start < beta_end < 1"),
    ("hp.ema_decay", 1.0, r"ema_decay must be in \[0, 1\)"),
    ("diffusion.widths", (8,), r"widths must list >= 2"),
    ("diffusion.sample_steps", 50, r"sample_steps=50 exceeds the schedule's 20"),
    ("diffusion.widths", (8, 16, 16, 16, 16, 16), r"16x16 cannot be halved 5 times"),
    ("diffusion.timesteps", 0, r"diffusion\.timesteps must be >= 1"),
])
def test_bad_diffusion_configs_are_refused_before_anything_compiles(field, value, match, tmp_path):
  with pytest.raises(ValueError, match=match):
    runs.build(_smoke(tmp_path / "x", **{field: value}))


# --- directions in h (lsx.diffusion.directions), against explicit Jacobians and numpy

@pytest.fixture(scope="module")
def den(net):
  from lsx.diffusion.family import Denoiser
  unet, params, _ = net
  eps_fn = lambda x, t, dh=None: unet.apply(params, x, t, dh)
  return Denoiser(eps_fn, linear_schedule(HP, 30), (8, 8, 1), (4, 4, 16))


def _same_up_to_sign(a, b, tol):
  cos = np.abs(np.sum(np.asarray(a) * np.asarray(b), -1))
  assert np.all(cos > 1 - tol), cos


def test_pca_directions_are_the_principal_components(den):
  from lsx.diffusion.directions import collect_h, pca_directions
  hs = collect_h(den, jax.random.normal(jax.random.key(0), (6, 8, 8, 1)), 5)
  assert hs.shape == (5, 6, 4, 4, 16)
  flat = np.asarray(hs).reshape(30, -1).astype(np.float64)
  u, var = pca_directions(np.asarray(hs).reshape(30, -1), 3)
  _, s, vt = np.linalg.svd(flat - flat.mean(0), full_matrices=False)
  _same_up_to_sign(u, vt[:3], 1e-4)
  np.testing.assert_allclose(np.asarray(var), s[:3] ** 2 / 29, rtol=1e-3)


def test_jacobian_and_pullback_directions_are_the_singular_vectors_of_the_jacobians(den):
  from lsx.diffusion.directions import jacobian_directions, pullback_directions
  x = jax.random.normal(jax.random.key(1), (1, 8, 8, 1))
  t = jnp.array([12])
  d_h = int(np.prod(den.h_shape))
  j_eps = np.asarray(jax.jacfwd(lambda dh: den.eps_fn(x, t, dh.reshape(1, 4, 4, 16))[0]
                                .reshape(-1))(jnp.zeros(d_h)), np.float64)
  _, s, vt = np.linalg.svd(j_eps)
  v, sv = jacobian_directions(den, x, 12, 2, iters=200)
  _same_up_to_sign(v, vt[:2], 1e-3)
  np.testing.assert_allclose(np.asarray(sv), s[:2], rtol=1e-3)
  j_h = np.asarray(jax.jacfwd(lambda xx: den.eps_fn(xx.reshape(x.shape), t)[1].reshape(-1))(
      x.reshape(-1)), np.float64)
  u_np, s, vt = np.linalg.svd(j_h)
  v, sv, u = pullback_directions(den, x, 12, 2, iters=200)
  _same_up_to_sign(v, vt[:2], 1e-3)
  _same_up_to_sign(u, u_np[:, :2].T, 1e-3)
  np.testing.assert_allclose(np.asarray(sv), s[:2], rtol=1e-3)


def test_an_edit_generator_is_scored_by_the_traversal_scorer(den):
  from lsx import data
  from lsx.directions import evaluate_sets
  from lsx.diffusion.directions import EditGenerator, coefficient_traversal
  ds = data.Sprites(size=8)
  u = jax.random.normal(jax.random.key(2), (3, 256))
  gen = EditGenerator(den, u / jnp.linalg.norm(u, axis=1, keepdims=True), ds, steps=4,
                      num_anchors=12, scale=5.0)
  assert gen.z.shape == (12, 64 + 3)
  x_T = gen.z[:2, :64].reshape(2, 8, 8, 1)
  plain = process_to_image(ddim_sample(den.eps_fn, den.schedule, x_T, 4))
  np.testing.assert_allclose(np.asarray(gen.generate(gen.z[:2])), np.asarray(plain),
                             atol=1e-6)  # c = 0 is no edit
  moved = gen.generate(gen.z[:2].at[:, 64].set(3.0))
  assert float(jnp.abs(moved - plain).mean()) > 1e-4
  sizes = np.asarray(ds.factor_sizes)

  def oracle(images):  # reads "factors" from image statistics: enough to drive the pipeline
    m = images.reshape(images.shape[0], -1).mean(1)
    f = jnp.stack([jnp.clip((m * 7 * (j + 1)).astype(jnp.int32), 0, int(sizes[j]) - 1)
                   for j in range(len(sizes))], 1)
    return f, jnp.zeros(images.shape[0])
  e = set_fields(common.load("configs/flows_sprites.py:smoke").eval,
                 **{"anchors": 4, "vp_anchors": 6, "protocol": "lsx", "null_permutations": 0})
  scored, _ = evaluate_sets({"h directions": coefficient_traversal(gen, 2, 3.0)}, oracle, e)
  row = scored["h directions"][0]
  assert {"disentanglement", "completeness", "vp"} <= set(row) and row["R"].shape[0] == 3


def process_to_image(x):
  from lsx.diffusion import to_image
  return to_image(x)


def test_hspace_scores_every_method_on_a_denoiser_run(smoke_run, vae_run, tmp_path):
  import json
  from lsx import traversal_eval
  # one method of each path (closed form, a contrastive run on the runner, the supervised
  # reference); the others are tested as functions above (each set compiles its sampler);
  # the VAE decoder of the same data beside, by the same protocol (a closed form and its
  # reference rows)
  c = set_fields(common.load("configs/hspace_sprites.py:smoke"),
                 **{"workdir": str(tmp_path / "hs"), "diffusion.workdir": str(smoke_run),
                    "hspace.methods": ("pca", "noiseclr", "random", "factors"),
                    "vae.workdir": str(vae_run), "vae.methods": ("pca",)})
  scored = traversal_eval.hspace(c, log=lambda s: None)
  vae_rows = ["VAE decoder: " + r for r in ("pca", "latent axes", "random",
                                            "factor directions (supervised)")]
  assert list(scored) == ["pca", "noiseclr", "random", "factors"] + vae_rows
  for r in vae_rows:  # every VAE row scored like the h-space rows, manipulation included
    assert {"disentanglement", "vp", "manip_change", "manipulation"} <= set(scored[r][0])
  assert len(scored["VAE decoder: pca"][0]["R"]) == 2  # hspace.num directions
  out = json.load(open(tmp_path / "hs" / "scores.json"))
  # Asyrp's properties of the pca directions, and the inversion round trips
  (prop,) = out["properties"].values()
  assert len(prop["directions"]) == 2 and {"cv", "r2", "factor"} <= set(prop["directions"][0])
  assert 0 <= prop["robustness"]["h_validity"] <= 1
  assert prop["inversion"]["exact"]["mse"] < 1e-6  # the DPM-Encoder is exact
  floor, q, prior = out["sample_quality"].values()  # fresh data first: the floor, all valid
  assert 0 <= prior["validity"] <= 1  # the VAE's prior samples, averaged to 16 x 16
  assert floor["validity"] == 1.0 and floor["num"] == q["num"]
  assert 0 <= q["validity"] <= 1 and set(q["tv"]) == {"shape", "scale", "orientation", "x", "y"}
  # Park et al.'s claims: tangent overlaps in [k / X, 1] and the edits' factor changes
  geo = out["pullback_geometry"]
  for when in ("early", "late"):
    g = geo[when]
    assert g["overlap_random"] - 1e-6 <= g["overlap"] <= 1 + 1e-6
    assert set(g["factor_change"]) == set(q["tv"]) and g["image_change"] >= 0
  assert geo["early"]["t"] > geo["late"]["t"]
  rows = out["rows"]
  assert set(rows) == set(scored) and rows["pca"]["members"][0]["vp"] >= 0
  labels = viz.read_labels(str(tmp_path / "hs" / "hspace_pca.png"))["axes"][0]["rows"]
  assert len(labels) == 2 and labels[0].startswith("pca 0: ")
  # the factor-regressed reference has one direction per ordinal factor of sprites
  assert len(scored["factors"][0]["R"]) == 4
  # the manipulation protocol on held-out anchors: every ordinal factor, a direction index,
  # changes and leakage in units of the range
  for m in scored:
    man = rows[m]["members"][0]["manipulation"]
    assert set(man) == {"scale", "orientation", "x", "y"}
    for v in man.values():
      assert 0 <= v["direction"] < len(scored[m][0]["R"]) and 0 <= v["change_pos"] <= 1 and 0 <= v["leakage"] <= 1
    assert rows[m]["members"][0]["manip_change"] >= 0
  bad = set_fields(common.load("configs/hspace_sprites.py:smoke"),
                   **{"hspace.methods": ("pca", "sefa"), "diffusion.workdir": str(smoke_run),
                      "workdir": str(tmp_path / "bad")})
  with pytest.raises(ValueError, match=r"hspace\.methods has \['sefa'\]"):
    traversal_eval.hspace(bad, log=lambda s: None)
  bad = set_fields(bad, **{"hspace.methods": ("pca",)})
  with pytest.raises(ValueError, match=r"must include 'random'"):
    traversal_eval.hspace(bad, log=lambda s: None)
  bad = set_fields(bad, **{"hspace.properties": (), "hspace.scale": "std"})
  with pytest.raises(ValueError, match=r"hspace\.scale must be 'common'"):
    traversal_eval.hspace(bad, log=lambda s: None)
  bad = set_fields(bad, **{"hspace.scale": "common", "pullback.anchors": 1})
  with pytest.raises(ValueError, match=r"pullback\.anchors=1: the tangent overlap needs"):
    traversal_eval.hspace(bad, log=lambda s: None)
  bad = set_fields(bad, **{"pullback.anchors": 4, "pullback.early": 1.5})
  with pytest.raises(ValueError, match=r"pullback\.early=1\.5 is a fraction"):
    traversal_eval.hspace(bad, log=lambda s: None)
  bad = set_fields(bad, **{"pullback.early": 0.8, "manipulation.select": 4})
  with pytest.raises(ValueError, match=r"manipulation\.select=4: the anchors that choose"):
    traversal_eval.hspace(bad, log=lambda s: None)
  bad = set_fields(bad, **{"manipulation.select": 2, "vae.workdir": str(vae_run),
                           "vae.methods": ("pca", "nmf")})
  with pytest.raises(ValueError, match=r"Unknown direction method .nmf."):
    traversal_eval.hspace(bad, log=lambda s: None)


# --- Asyrp's h-space properties (lsx.diffusion.properties), on generators of known form

class _Gen:
  """codes [x_T (4), c (2)] -> 2x2 images whose pixel j reads factor j: linear in c, or
  quadratic in c_0 (`square`)."""
  x_dim, k = 4, 2

  def __init__(self, square=False):
    self.square = square
    self.z = jnp.concatenate([jax.random.normal(jax.random.key(0), (8, 4)),
                              jnp.zeros((8, 2))], 1)

  def generate(self, z):
    c0, c1 = z[:, 4], z[:, 5]
    p0 = 0.5 + 0.1 * (c0 ** 2 if self.square else c0)
    p = jnp.stack([p0, 0.5 + 0.1 * c1, 0.5 + 0.01 * z[:, 0], jnp.full_like(c0, 0.5)], 1)
    return p.reshape(-1, 2, 2, 1)


def _pixel_oracle(images):
  x = images.reshape(images.shape[0], -1)
  return x[:, :2] * 10.0, jnp.abs(x - 0.5).mean(1)


def test_h_properties_on_generators_of_known_form():
  from lsx.diffusion import properties as hp
  sizes = (11, 11)
  h = hp.homogeneity(_Gen(), _pixel_oracle, sizes, k=0, c=1.0)
  np.testing.assert_allclose(h["mean"], [0.1, 0.0], atol=1e-6)
  assert h["cv"][0] < 1e-5  # the same change on every sample
  lin = hp.linearity(_Gen(), _pixel_oracle, sizes, 0, [-2.0, -1.0, 1.0, 2.0])
  assert lin["r2"][0] == pytest.approx(1.0, abs=1e-6)
  sq = hp.linearity(_Gen(square=True), _pixel_oracle, sizes, 0, [-2.0, -1.0, 1.0, 2.0])
  assert sq["r2"][0] < 0.1  # c^2 is no line through the origin
  comp = hp.composition(_Gen(), _pixel_oracle, sizes, 0, 1, 1.0)
  assert comp["image_error"] < 1e-5 and comp["factor_error"] < 1e-5
  assert hp.composition(_Gen(square=True), _pixel_oracle, sizes, 0, 1, 1.0)["factor_error"] < 1e-5

  class _Data:  # what sample_quality reads: factors and fresh samples
    factor_names, factor_sizes = ("a", "b"), sizes

    def sample(self, rng, n):
      return jnp.full((n, 2, 2, 1), 0.5), jnp.full((n, 2), 5, jnp.int32)
  r = hp.robustness(_Gen(), _pixel_oracle, _Data(), 1.0, threshold=0.05)
  assert r["image_change"] > 0 and r["x_step"] > 0
  assert 0.0 <= r["h_validity"] <= 1.0 and 0.0 <= r["x_validity"] <= 1.0


def test_inversion_quality_on_the_gaussian_closed_form():
  from lsx.diffusion import properties as hp
  from lsx.diffusion.family import Denoiser
  sched = linear_schedule(HP, 1000)
  # images whose model-space values are Gaussian N(0, 0.25): the closed-form denoiser
  den = Denoiser(_gaussian_eps(0.25, sched), sched, (2, 2, 1), (1,))
  x = 0.5 * jax.random.normal(jax.random.key(3), (64, 2, 2, 1))
  images = jnp.clip((x + 1) / 2, 0, 1)
  coarse = lambda im: (jnp.floor(im.reshape(im.shape[0], -1) * 4), jnp.zeros(im.shape[0]))
  q = hp.inversion_quality(den, images, coarse, steps=100)
  assert q["mse"] < 1e-3 and q["same_factors"] > 0.5
  fine = hp.inversion_quality(den, images, coarse, steps=1000)
  assert fine["mse"] < q["mse"] / 20 and fine["same_factors"] >= q["same_factors"]


def test_an_sae_trains_on_the_denoisers_h_per_position(smoke_run, tmp_path):
  # DenoiserActivations: h of the U-Net at timestep t on noised data images, each spatial
  # position one activation with its image's factors; equal to eps_fn's h computed here
  import json
  from lsx.sae.sources import DenoiserActivations
  from lsx.diffusion import process
  src = DenoiserActivations(str(smoke_run), t=5, runs=runs)
  hh, ww, ch = src.den.h_shape
  x, f = src.sample(jax.random.key(3), 2 * hh * ww)
  assert x.shape == (2 * hh * ww, ch) and f.shape == (2 * hh * ww, 5)
  k_img, k_noise = jax.random.split(jax.random.key(3))
  images, factors = src.dataset.sample(k_img, 2)
  x0 = process.to_model(images)
  x_t = process.q_sample(src.den.schedule, x0, jnp.full((2,), 5), jax.random.normal(k_noise, x0.shape))
  _, h = src.den.eps_fn(x_t, jnp.full((2,), 5))
  np.testing.assert_allclose(x, np.asarray(h).reshape(-1, ch), rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(f[hh * ww], factors[1])  # image 1's first position
  pooled = DenoiserActivations(str(smoke_run), t=5, pool="mean", runs=runs)
  assert pooled.sample(jax.random.key(0), 3)[0].shape == (3, ch)
  with pytest.raises(ValueError, match="outside the denoiser's timesteps"):
    DenoiserActivations(str(smoke_run), t=20, runs=runs)
  c = set_fields(common.load("configs/sae_unet.py:smoke"),
                 **{"workdir": str(tmp_path / "sae"), "source.workdir": str(smoke_run)})
  runs.train(c, **QUIET)
  m = json.load(open(tmp_path / "sae" / "metrics.json"))
  assert m["l0"] > 0 and np.isfinite(m["fvu"])


def test_vae_prior_samples_are_averaged_to_the_denoisers_size_or_refused(monkeypatch):
  # a VAE rendering twice the denoiser's size is scored on 2x2 block means; another size
  # is refused by name before anything is computed
  from types import SimpleNamespace
  from lsx import traversal_eval
  fake = SimpleNamespace(dataset=SimpleNamespace(image_shape=(8, 8, 1)),
                         model=SimpleNamespace(latent_dim=3),
                         generate=lambda z: jnp.broadcast_to(
                             jnp.arange(64.0).reshape(1, 8, 8, 1), (z.shape[0], 8, 8, 1)))
  monkeypatch.setattr(runs, "ensure_trained", lambda w, c: w)
  monkeypatch.setattr(runs, "load_decoder", lambda w, n: fake)
  c = common.load("configs/hspace_sprites.py:smoke")
  c = set_fields(c, **{"vae.workdir": "somewhere"})
  name, gen = traversal_eval.vae_prior(c.vae.workdir, c.vae.config, (4, 4, 1))
  assert name == "VAE prior samples (8x8, averaged to 4x4)"
  x = np.asarray(gen(jax.random.key(0), 2))
  want = np.arange(64.0).reshape(4, 2, 4, 2).mean((1, 3))
  np.testing.assert_allclose(x[1, ..., 0], want)
  with pytest.raises(ValueError, match="renders 8x8x1 images and the denoiser 3x3x1"):
    traversal_eval.vae_prior(c.vae.workdir, c.vae.config, (3, 3, 1))


def test_the_inversion_experiment_writes_its_round_trips(smoke_run):
  import json
  import subprocess
  import sys
  r = subprocess.run([sys.executable, "-m", "experiments.inversion", "--workdir", str(smoke_run),
                      "--steps", "2,4", "--images", "3"], capture_output=True, text=True,
                     timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  out = json.load(open(smoke_run / "inversion.json"))
  assert set(out) >= {"ddim_2", "ddim_4", "exact"} and out["images"] == 3
  assert out["exact"]["mse"] < 1e-6 and 0 <= out["ddim_4"]["same_factors"] <= 1
  bad = subprocess.run([sys.executable, "-m", "experiments.inversion", "--workdir",
                        str(smoke_run), "--steps", "0"], capture_output=True, text=True,
                       timeout=300)
  assert bad.returncode != 0 and "--steps must list positive step counts" in bad.stderr + bad.stdout


def test_the_samples_experiment_scores_each_sampler_beside_the_data(smoke_run):
  import json
  import subprocess
  import sys
  from experiments import samples
  assert samples.parse_sampler("ddim:20") == ("ddim", 20, 0.0)
  assert samples.parse_sampler("ddim:5:1.0") == ("ddim", 5, 1.0)
  assert samples.parse_sampler("ddpm") == ("ddpm", 0, 0.0)
  for bad in ("ddim", "ddim:0", "ddim:x", "ddim:4:-1", "plms:4"):
    with pytest.raises(ValueError, match="write ddim:N"):
      samples.parse_sampler(bad)
  r = subprocess.run([sys.executable, "-m", "experiments.samples", "--workdir", str(smoke_run),
                      "--samplers", "ddim:2,ddpm", "--num", "5", "--batch", "3",
                      "--reference", "50"], capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  out = json.load(open(smoke_run / "sample_quality.json"))
  assert set(out["rows"]) == {"data", "denoiser ddim:2", "denoiser ddpm"} and out["num"] == 5
  assert out["rows"]["data"]["validity"] == 1.0  # unblurred data is within the threshold
  for q in out["rows"].values():
    assert q["num"] == 5 and 0 <= q["tv_mean"] <= 1 and 0 <= q["validity"] <= 1
  bad = subprocess.run([sys.executable, "-m", "experiments.samples", "--workdir",
                        str(smoke_run), "--vae_workdir", str(smoke_run / "nothing")],
                       capture_output=True, text=True, timeout=300)
  assert bad.returncode != 0 and "holds no run" in bad.stderr + bad.stdout


def test_a_decoder_reader_given_a_denoiser_points_to_experiments_hspace(smoke_run):
  from lsx.records import WorkdirError
  with pytest.raises(WorkdirError, match=r"holds a 'diffusion' run \(a denoiser, whose "
                                         r"h-space directions experiments\.hspace finds"):
    runs.load_decoder(str(smoke_run))


def test_hspace_configs_name_their_runs_and_pass_the_checks():
  from lsx import traversal_eval
  for data, vae in (("sprites", "betavae_sprites"), ("scenes", "vae_scenes_wide")):
    for arg in ("", "cpu"):
      c = common.load(f"configs/hspace_{data}.py" + (f":{arg}" if arg else ""))
      traversal_eval.check_hspace(c)  # every method, protocol and option is known
      assert c.diffusion.config == f"configs/diffusion_{data}.py"
      assert c.diffusion.workdir == f"workdirs/diffusion_{data}"
      assert c.workdir == f"workdirs/hspace_{data}" and c.vae.config == f"configs/{vae}.py"


def test_hspace_over_seeds_reports_mean_and_spread(smoke_run, vae_run, tmp_path):
  """Two runs that are the same denoiser (a link): each scored in its own directory, the
  numbers equal (the pipeline is deterministic), so every spread has std 0 and the mean
  of the single run; a rerun reads the runs' scores back; bad run lists are refused."""
  import json
  import os
  from lsx import hspace_seeds
  os.symlink(smoke_run, tmp_path / "denoiser_b")
  runs_ = (str(smoke_run), str(tmp_path / "denoiser_b"))
  c = set_fields(common.load("configs/hspace_sprites.py:smoke"),
                 **{"workdir": str(tmp_path / "hs"), "diffusion.workdirs": runs_,
                    "hspace.methods": ("pca", "random"), "hspace.properties": (),
                    "pullback.anchors": 0, "vae.workdir": str(vae_run),
                    "vae.methods": ("pca",)})
  out = hspace_seeds.hspace_seeds(c, log=lambda s: None)
  # the VAE decoder scored once (not in each run's table), its best unsupervised row
  # named, and the best h-space method judged against it by lsx.claims.non_inferior
  assert "VAE decoder: pca" not in json.load(open(
      tmp_path / "hs" / os.path.basename(str(smoke_run)) / "scores.json"))["rows"]
  vae = out["vae_decoder"]
  assert vae["best_unsupervised"]["row"] == "VAE decoder: pca"
  from lsx import claims as lc
  assert out["best_method"]["at_least_vae_best"] == lc.non_inferior(
      out["rows"]["pca"]["disentanglement"], vae["rows"]["VAE decoder: pca"]["disentanglement"])
  one = json.load(open(tmp_path / "hs" / os.path.basename(str(smoke_run)) / "scores.json"))
  assert json.load(open(tmp_path / "hs" / "scores_seeds.json")) == out
  assert os.path.getsize(tmp_path / "hs" / "scores_seeds.png") > 0
  for m in ("pca", "random"):
    d = out["rows"][m]["disentanglement"]
    assert d["std"] == 0 and d["per_seed"] == [one["rows"][m]["members"][0]["disentanglement"]] * 2
  for name, q in out["sample_quality"].items():
    assert q["validity"]["mean"] == one["sample_quality"][name]["validity"]
  # equal numbers exceed nothing; pca is the only discovery method, so the best
  assert out["disentanglement_exceeds_random"] == {"pca": False}
  assert out["best_method"]["method"] == "pca" and not out["best_method"]["exceeds_random"]
  fac = out["manipulation"]["factors"]
  assert set(fac) == {"scale", "orientation", "x", "y"} and out["manipulation"]["target"] == 0.25
  assert all(v["best_method"] == "pca" and v["change"]["std"] == 0 for v in fac.values())
  said = []
  hspace_seeds.hspace_seeds(c, log=said.append)
  assert sum("read back" in s for s in said) == 2
  # a run scored with other settings (here: fewer scoring anchors) is scored again
  path = tmp_path / "hs" / os.path.basename(str(smoke_run)) / "scores.json"
  got = json.load(open(path))
  assert got["settings"]["eval"]["anchors"] == 2 and got["settings"]["vae"]["methods"] == []
  got["settings"]["eval"]["anchors"] = 1
  json.dump(got, open(path, "w"))
  said = []
  again = hspace_seeds.hspace_seeds(c, log=said.append)
  assert sum("scoring it again" in s for s in said) == 1 and again == out
  # the per-factor summary on a closed case: the reference rows never count as the best
  # discovery method, a factor moved only by the factor-regressed reference is informative
  # but not moved, and 'moved' is the best discovery method's mean against the target
  def man_run(x_pca, x_random, y_factors):
    row = lambda x, y: {"manipulation": {"x": {"change_pos": x, "change_neg": x, "leakage": 0.1},
                                         "y": {"change_pos": y, "change_neg": y, "leakage": 0.2}}}
    return {"rows": {"pca": {"members": [row(x_pca, 0.0)]},
                     "random": {"members": [row(x_random, 0.0)]},
                     "factors": {"members": [row(0.0, y_factors)]}}}
  summ = hspace_seeds.manipulation_summary([man_run(0.3, 0.9, 0.5), man_run(0.2, 0.9, 0.5)],
                                           ["pca", "random", "factors"], 0.25, 0.01)
  x, y = summ["factors"]["x"], summ["factors"]["y"]
  assert x["best_method"] == "pca" and x["change"]["mean"] == pytest.approx(0.25) and x["moved"]
  assert x["leakage"]["mean"] == pytest.approx(0.1)
  assert y["best_method"] == "pca" and y["informative"] and not y["moved"]
  assert summ["moved_factors"] == ["x"] and summ["informative_factors"] == ["x", "y"]
  # the spread and the verdict on a closed case
  fake = lambda d: {"rows": {"pca": {"members": [{"disentanglement": d, "vp": 0.5}]},
                             "random": {"members": [{"disentanglement": 0.1, "vp": 0.5}]}},
                    "sample_quality": {"g": {"validity": d, "tv_mean": 0.2, "num": 8}}}
  agg = hspace_seeds.aggregate([fake(0.3), fake(0.5)], ("a", "b"))
  assert agg["rows"]["pca"]["disentanglement"]["mean"] == pytest.approx(0.4)
  assert agg["rows"]["pca"]["disentanglement"]["std"] == pytest.approx(0.1414, abs=1e-4)
  assert agg["disentanglement_exceeds_random"]["pca"]  # 0.4 - 0.1 > 0.1414 + 0
  # against the VAE decoder: its reference rows are never its best unsupervised row, and
  # 0.4 ± 0.1414 is non-inferior to 0.5 ± 0 (-0.1 >= -0.1414) but not to 0.6 ± 0
  vrow = lambda *ds: [{"disentanglement": d, "vp": 0.5} for d in ds]
  for best, ok in ((0.5, True), (0.6, False)):
    agg = hspace_seeds.aggregate(
        [fake(0.3), fake(0.5)], ("a", "b"),
        vae_rows={"VAE decoder: sefa": vrow(best, best), "VAE decoder: latent axes": vrow(0.9),
                  "VAE decoder: factor directions (supervised)": vrow(0.95)})
    assert agg["vae_decoder"]["best_unsupervised"]["row"] == "VAE decoder: sefa"
    assert agg["best_method"]["at_least_vae_best"] is ok
  for wds, match in (((str(smoke_run),), ">= 2 distinct"),
                     ((str(smoke_run), str(smoke_run)), ">= 2 distinct"),
                     ((str(smoke_run), str(tmp_path / "nowhere")), "holds no trained denoiser")):
    with pytest.raises((ValueError, FileNotFoundError), match=match):
      hspace_seeds.hspace_seeds(set_fields(c, **{"diffusion.workdirs": wds}), log=lambda s: None)


def test_seed_summaries_of_the_pullback_geometry_and_asyrp_properties():
  """Closed cases for lsx.hspace_seeds' summaries of per-run geometry and properties."""
  from lsx import hspace_seeds
  geo = lambda early, late: {
      w: {"t": t, "overlap": o, "overlap_random": 0.004, "image_change": 0.3,
          "factor_change": {"x": o / 2}}
      for w, t, o in (("early", 777, early), ("late", 222, late))}
  g = hspace_seeds.geometry_summary([geo(0.40, 0.25), geo(0.50, 0.15)])
  assert g["early"]["overlap"]["mean"] == pytest.approx(0.45)
  assert g["early"]["overlap"]["std"] == pytest.approx(0.0707, abs=1e-4)
  assert g["early"]["t"] == [777, 777] and g["late"]["factor_change"]["x"]["mean"] == pytest.approx(0.1)
  assert g["early_overlap_exceeds_late"]  # 0.45 - 0.20 > 0.0707 + 0.0707
  assert not hspace_seeds.geometry_summary([geo(0.40, 0.40), geo(0.50, 0.30)])[
      "early_overlap_exceeds_late"]  # 0.45 - 0.35 < 0.0707 + 0.0707
  prop = lambda changes, cvs, r2s: {
      "directions": [{"change": c, "cv": v, "r2": r} for c, v, r in zip(changes, cvs, r2s)],
      "composition": {"image_error": 0.5, "factor_error": 0.7},
      "robustness": {"h_validity": 0.2, "x_validity": 0.1, "image_change": 1.5},
      "inversion": {"ddim": {"mse": 0.04, "same_factors": 0.0},
                    "exact": {"mse": 1e-8, "same_factors": 1.0}}}
  p = hspace_seeds.properties_summary([prop((-0.5, 0.1, 0.2), (1.0, 2.0, 9.0), (0.9, 0.1, -3.0)),
                                       prop((0.3, 0.1, 0.0), (0.5, 1.5, 2.5), (0.8, 0.6, 0.2))])
  assert p["max_change"]["per_seed"] == [0.5, 0.3]  # the largest |change| of any direction
  assert p["median_cv"]["per_seed"] == [2.0, 1.5] and p["median_r2"]["per_seed"] == [0.1, 0.6]
  assert p["inversion"]["exact"]["same_factors"]["mean"] == 1.0
  assert p["composition"]["image_error"]["std"] == 0.0
