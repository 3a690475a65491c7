"""The papers' claims (lsx.claims, experiments.claims): the rules on closed cases, the
joint objective's control member (hp.flow_terms = 0) against the plain ELBO written here,
the importance-weighted likelihood against a numpy transcription, and every claim end to
end on tiny runs."""
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common
from conftest import tiny_config
from lsx import claims as lc
from lsx import train as lt

QUIET = lambda s: None


def test_spread_and_rules_on_closed_cases():
  s = lc.spread([1.0, 2.0, 3.0])
  assert s["mean"] == 2.0 and s["std"] == 1.0 and s["per_seed"] == [1.0, 2.0, 3.0]
  assert lc.spread([5.0])["std"] == 0.0
  a, b = lc.spread([0.9, 1.0, 1.1]), lc.spread([0.5, 0.6, 0.7])  # 0.4 apart, stds 0.1
  assert lc.exceeds(a, b) and not lc.exceeds(b, a)
  assert not lc.exceeds(lc.spread([0.66, 0.68, 0.7]), b)  # 0.08 apart < 0.02 + 0.1
  # non-inferior: not below a baseline by more than the two spreads; comparable: to each
  c = lc.spread([0.52, 0.52])
  assert lc.non_inferior(c, b) and not lc.non_inferior(c, a)  # 0.52 - 1.0 < -(0 + 0.1)
  assert not lc.comparable(c, [b, a])  # below the best baseline: not comparable to it
  assert lc.comparable(lc.spread([0.95, 0.95]), [b, a]) and lc.comparable(a, [a])
  v = lc.per_baseline(c, {"b": b, "a": a}, "non_inferior")
  assert v == {"b": {"mean": b["mean"], "std": b["std"], "verdict": True},
               "a": {"mean": a["mean"], "std": a["std"], "verdict": False}}
  assert not lc.all_hold(v) and lc.all_hold({"b": v["b"]})
  # exceeds is tested against each baseline, not only the one with the highest mean
  wide = lc.spread([0.5, 1.5])  # mean 1.0, std 0.71
  e = lc.per_baseline(lc.spread([1.5, 1.5]), {"a": a, "wide": wide}, "exceeds")
  assert e["a"]["verdict"] and not e["wide"]["verdict"]  # wide's mean equals a's
  with pytest.raises(ValueError, match="rule"):
    lc.per_baseline(c, {"b": b}, "beats")
  # a factor nothing moves above the floor is uninformative (counts neither way)
  zero = lc.spread([0.0, 0.0])
  assert not lc.informative({"x": zero, "y": lc.spread([0.004, 0.006])}, 0.01)
  assert lc.informative({"x": zero, "y": lc.spread([0.02, 0.03])}, 0.01)
  assert lc.non_inferior(zero, zero)  # why such a factor must not count as "comparable"
  with pytest.raises(ValueError, match="finite"):
    lc.spread([1.0, float("nan")])
  with pytest.raises(ValueError, match="at least one"):
    lc.comparable(a, [])


def test_claim_rows_are_written_atomically_and_reruns_replace_their_claim(tmp_path):
  a, b = lc.spread([1.0, 1.2]), lc.spread([0.1, 0.2])
  row = lambda claim, ds: lc.claim_row(claim, ds, "m", a, "base", b, lc.exceeds(a, b), [0, 1],
                                       "cmd", steps=3)
  path = str(tmp_path / "claims.json")
  lc.write_claims([row("x", "sprites"), row("y", "sprites")], path)
  out = lc.write_claims([row("x", "scenes")], path, replace=("x",))
  assert [(r["claim"], r["dataset"]) for r in out] == [("y", "sprites"), ("x", "scenes")]
  assert json.load(open(path)) == out
  r = out[1]
  assert set(lc.ROW_KEYS) <= set(r) and r["value"] == pytest.approx(1.1) and r["met"] is True
  assert r["value_std"] == pytest.approx(math.sqrt(0.02)) and r["steps"] == 3
  table = lc.markdown(out).splitlines()
  assert len(table) == 4 and table[3].startswith("| x | scenes | m | 1.1 ± 0.14 | base | 0.15 ±")
  with pytest.raises(ValueError, match="clash"):
    lc.claim_row("x", "d", "m", a, "b", b, True, [0], "c", value_std=1)
  with pytest.raises(ValueError, match="lacks"):
    lc.write_claims([{"claim": "x"}], path)


def test_claims_config_budgets_and_arguments():
  from configs import claims
  c, cpu = claims.get_config(), claims.get_config("cpu")
  assert c.flows_posthoc.steps == 0 and c.latentclr.steps == 0  # the public budgets
  assert set(c.claims) == {"flows_posthoc", "flows_regularizer", "latentclr"}
  assert cpu.flows_posthoc.steps > 0 and "CPU budget" in cpu.flows_posthoc.differs
  assert tuple(claims.get_config("smoke").seeds) == (0, 1)
  # a row names the budget it ran at (an override of steps included), not the config's
  from lsx.measure_claims import _differs
  with cpu.unlocked():
    cpu.latentclr.steps = 3000
  assert _differs(cpu.latentclr, 3000).endswith("; budget: 3000 steps (public: 10,000 iterations)")
  assert _differs(c.latentclr, 10000) == c.latentclr.differs  # the public budget: no note
  with pytest.raises(ValueError, match="Unknown config argument"):
    claims.get_config("gpu")


def test_unknown_claim_and_repeated_seeds_fail_before_anything_runs(tmp_path):
  from lsx.measure_claims import run_claims
  for field, value, match in (("claims", ("flows",), "config.claims has"),
                              ("seeds", (0, 0), "distinct seeds")):
    c = common.load("configs/claims.py:smoke")
    with c.unlocked():
      c[field], c.out = value, str(tmp_path / "x.json")
    with pytest.raises(ValueError, match=match):
      run_claims(c, log=QUIET)
  # a flows configuration naming a field the run lacks, or a value it refuses: before any
  # run trains (the first configuration is valid and would train first)
  for fields, match in (({"flows": {"classifier_lables": "mixed"}},
                         "no field 'flows.classifier_lables'"),
                        ({"flows": {"classifier_labels": "every"}}, "classifier_labels")):
    c = common.load("configs/claims.py:smoke")
    with c.unlocked():
      c.claims, c.out, c.run_root = ("flows_posthoc",), str(tmp_path / "x.json"), str(tmp_path)
      c.flows_posthoc.configurations = {"public": {}, "bad": fields}
    with pytest.raises(ValueError, match=r"configurations\['bad'\].*" + match):
      run_claims(c, log=QUIET)
    assert not list(tmp_path.glob("flows_*"))
  assert not (tmp_path / "x.json").exists()


@pytest.fixture(scope="module")
def joint():
  from lsx.flows import family
  c = common.load("configs/flows_joint_sprites.py:smoke")
  setup = family.build_flows(c)
  params = setup.objective.init(jax.random.key(0))
  batch = setup.sample(jax.random.key(1), 6)[0]
  return setup, params, batch


def test_flow_terms_zero_is_the_plain_elbo_on_both_frames(joint):
  # hp.flow_terms = 0 (the likelihood claim's control): ELBO(x_0) + ELBO(x_{t+1}) with
  # x_{t+1} decoded from its own posterior sample, no flow term, no gradient to the flows
  from lsx.latents import gaussian_kl
  from lsx.models.objectives import neg_log_likelihood
  setup, params, batch = joint
  model = setup.model
  hp = {k: jnp.float32(v) for k, v in {"beta": 4.0, "lambda_latent": 1.0, "lambda_pde": 1.0,
                                        "lambda_jvp": 0.5, "flow_terms": 0.0}.items()}
  rng = jax.random.key(3)
  loss, _ = setup.objective.loss(params, batch, rng, hp)
  # the same samples the objective draws: z_0 from k_z, x_{t+1}'s from fold_in(k_z, 1)
  k_z, _ = jax.random.split(rng)
  b = batch["x0"].shape[0]
  vp = params["vae"]
  s0, s1 = model.encode(vp, batch["x0"]), model.encode(vp, batch["xt1"])
  z0 = model.bottleneck.sample(s0, k_z)
  z1 = model.bottleneck.sample(s1, jax.random.fold_in(k_z, 1))
  elbo = lambda x, z, s: (neg_log_likelihood(model.decode(vp, z), x).mean()
                          + 4.0 * gaussian_kl(s["mean"], s["logvar"]).mean())
  expected = elbo(batch["x0"], z0, s0) + elbo(batch["xt1"], z1, s1)
  assert float(loss) == pytest.approx(float(expected), rel=1e-5)
  assert b == 6
  grads = jax.grad(lambda p: setup.objective.loss(p, batch, rng, hp)[0])(params)
  assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads["flow"]))
  # flow_terms = 1 is the joint objective: the flows get gradient
  on = dict(hp, flow_terms=jnp.float32(1.0))
  grads = jax.grad(lambda p: setup.objective.loss(p, batch, rng, on)[0])(params)
  assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads["flow"])) > 0.0


def test_importance_weighted_ll_matches_numpy(joint):
  from lsx.models.objectives import importance_weighted_ll
  setup, params, batch = joint
  model, vp, x = setup.model, params["vae"], batch["x0"]
  k, rng = 7, jax.random.key(5)
  got = importance_weighted_ll(model, vp, x, rng, k, chunk=4)  # chunks of 4 and 2 images
  # numpy: log w = log p(x|z) + log N(z; 0, I) - log N(z; mu, sigma^2), same noise
  want = []
  for start in (0, 4):
    xs = x[start:start + 4]
    s = model.encode(vp, xs)
    mu, lv = np.asarray(s["mean"], np.float64), np.asarray(s["logvar"], np.float64)
    eps = np.asarray(jax.random.normal(jax.random.fold_in(rng, start), (k,) + mu.shape))
    z = mu + np.exp(0.5 * lv) * eps
    logits = np.asarray(model.decode(vp, jnp.asarray(z.reshape(-1, z.shape[-1]), jnp.float32)),
                        np.float64).reshape((k,) + xs.shape)
    xn = np.asarray(xs, np.float64)[None]
    log_px = (xn * -np.logaddexp(0, -logits) + (1 - xn) * -np.logaddexp(0, logits))
    log_px = log_px.reshape(k, xs.shape[0], -1).sum(-1)
    log_pz = (-0.5 * (z ** 2 + np.log(2 * np.pi))).sum(-1)
    log_qz = (-0.5 * ((z - mu) ** 2 / np.exp(lv) + lv + np.log(2 * np.pi))).sum(-1)
    lw = log_px + log_pz - log_qz
    m = lw.max(0)
    want.append(m + np.log(np.exp(lw - m).mean(0)))
  np.testing.assert_allclose(got, np.concatenate(want), rtol=1e-4, atol=1e-2)
  with pytest.raises(ValueError, match="k must be"):
    importance_weighted_ll(model, vp, x, rng, 0)


def test_equivariance_error_of_a_resting_flow_is_the_reconstruction_of_the_next_frame(joint):
  # zero potentials do not move the code: G(z_{t+2}) = G(mean of q(z | x_0))
  from lsx.flows import equivariance_error
  setup, params, batch = joint
  model, flow = setup.model, setup.objective.info["flow"]
  still = jax.tree.map(jnp.zeros_like, params["flow"])
  err = equivariance_error(model, params["vae"], flow, still, batch, 3)
  x = model.generate(params["vae"], model.encode(params["vae"], batch["x0"])["mean"])
  want = np.sqrt(((np.asarray(x) - np.asarray(batch["xt1"])) ** 2).reshape(6, -1).sum(-1))
  np.testing.assert_allclose(np.asarray(err), want, rtol=1e-5)


@pytest.fixture(scope="module")
def claims_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("claims")
  lt.train(tiny_config(), str(root / "vae"), write_figures=False, print_fn=QUIET)
  from lsx.measure_claims import run_claims
  c = common.load("configs/claims.py:smoke")
  with c.unlocked():
    c.out, c.workdir, c.run_root = (str(root / "claims.json"), str(root / "own"),
                                    str(root / "runs"))
    c.run_overrides = {"decoder": {"workdir": str(root / "vae")},
                       "directions": {"features": "decoder:Dense_0"},
                       "train": {"batch_size": 4},
                       "eval": {"oracle_pool": 2, "null_permutations": 0}}
    # the tiny decoder is a sprites VAE: its ordinal factors
    c.latentclr.factors = ("scale", "orientation", "x", "y")
  return run_claims(c, log=QUIET), root


def test_every_claim_end_to_end(claims_run):
  rows, root = claims_run
  assert [(r["claim"], r["dataset"]) for r in rows] == [
      ("flows_posthoc", "sprites"), ("flows_posthoc", "sprites"),
      ("flows_regularizer", "sprites"), ("flows_regularizer", "sprites"),
      ("latentclr", "sprites")]
  assert json.load(open(root / "claims.json")) == rows
  for r in rows:
    assert set(lc.ROW_KEYS) <= set(r) and r["seeds"] == [0, 1]
    assert np.isfinite(r["value"]) and np.isfinite(r["baseline_value"])
    assert "--config.claims=" + r["claim"] in r["command"] and r["differs"]
  flows, mixed, joint, joint_public, clr = rows
  # the flows against the latent axes, random directions and the fitted baselines
  assert set(flows["per_baseline"]) == {"latent axes", "random", "pca"}
  assert flows["baseline_value"] == max(v["mean"] for v in flows["per_baseline"].values())
  assert all(0.0 <= v <= 1.0 for v in flows["value_per_seed"])
  # met follows from per_baseline by the rule, recomputed here from the numbers alone
  for r in (flows, mixed, joint, joint_public):
    assert r["met"] == all(r["value"] - b["mean"] > r["value_std"] + b["std"]
                           for b in r["per_baseline"].values())
    assert all(b["verdict"] == (r["value"] - b["mean"] > r["value_std"] + b["std"])
               for b in r["per_baseline"].values())
  end = flows["training_end"]
  assert {"classifier_accuracy", "image_change", "image_change_start"} <= set(end)
  assert all(len(end[k]["per_seed"]) == 2 and end[k]["mean"] >= 0 for k in end)
  assert end["image_change_start"]["mean"] > 0  # untrained flows move the images
  assert flows["training_codes"] == "prior"
  # the trajectory is visible in the flows run's workdir: a curve per logged term
  # one row per flows configuration: the run config's own form, then lsx's mixed-label
  # option trained beside it, both scored against the same baselines
  assert (flows["configuration"], mixed["configuration"]) == ("public", "mixed labels")
  assert flows["configuration_fields"] == {} and "mixed labels" in mixed["method"]
  assert mixed["configuration_fields"]["flows.classifier_labels"] == "mixed"
  assert set(mixed["per_baseline"]) == set(flows["per_baseline"])
  assert "flows.classifier_labels = 'mixed'" in mixed["differs"]
  import glob
  run, run_mixed = sorted(glob.glob(str(root / "runs" / "flows_sprites*")))
  assert run_mixed == run + "_mixed_labels"
  assert json.load(open(os.path.join(run_mixed, "config.json")))["flows"]["classifier"] == "mlp"
  last = lt.read_metrics(run)[-1]
  assert {"ic", "pde", "jvp", "cls_acc", "image_change", "speed"} <= set(last)
  assert len(last["image_change"]) == 2  # one value per seed
  assert os.path.getsize(os.path.join(run, "flows_training.png")) > 0
  # the joint sweep: log-likelihoods are negative nats per image, both conditions scored
  assert joint["value"] < 0 and joint["baseline_value"] < 0
  assert set(joint["equivariance_error"]) == {"joint", "without flow terms"}
  # one row per configuration of loss weights, each from its own members of one sweep
  assert (joint["configuration"], joint_public["configuration"]) == ("lsx", "public")
  assert joint["weights"]["beta"] == 4.0 and joint["weights"]["lambda_jvp"] == 0.0
  assert joint_public["weights"] == {"beta": 1.0, "lambda_latent": 0.1, "lambda_pde": 1.0,
                                     "lambda_jvp": 1.0}
  run_cfg = json.load(open(root / "own" / "flows_regularizer" / "config.json"))
  assert list(run_cfg["sweep"]["hp"]["beta"]) == [4.0] * 4 + [1.0] * 4
  assert list(run_cfg["sweep"]["hp"]["flow_terms"]) == [1.0, 1.0, 0.0, 0.0] * 2
  assert joint["value"] != joint_public["value"]
  assert set(clr["factors"]) == {"scale", "orientation", "x", "y"}
  informative = [n for n, f in clr["factors"].items() if f["informative"]]
  assert clr["informative_factors"] == informative
  for n, f in clr["factors"].items():  # an uninformative factor carries no verdict
    assert ("comparable" in f) == f["informative"]
    assert f["informative"] == (max(s["mean"] for s in f["change"].values()) > 0.01)
  assert clr["comparable_factors"] == sum(clr["factors"][n]["comparable"] for n in informative)
  assert clr["met"] == (len(informative) >= 3 and clr["comparable_factors"] >= 3)
  for f in clr["factors"].values():
    assert set(f["change"]) == {"latentclr", "ganspace", "sefa"}


def test_rejudge_recomputes_verdicts_from_a_rows_own_numbers():
  """A row of the earlier rules: LatentCLR 'met' on 4 of 4 factors of which two no method
  moves; by the rules tested against each baseline it is 2 informative factors < 3."""
  s = lambda m, sd: {"mean": m, "std": sd, "per_seed": [m]}
  fac = lambda clr, gan, sefa: {"change": {"latentclr": s(*clr), "ganspace": s(*gan),
                                           "sefa": s(*sefa)}, "comparable": True}
  row = {"claim": "latentclr", "value": 0.06, "value_std": 0.01, "met": True,
         "factors": {"floor_hue": fac((0.003, 0.002), (0.001, 0.0005), (0.006, 0.002)),
                     "wall_hue": fac((0.0, 0.0), (0.0, 0.0), (0.002, 0.001)),
                     "object_hue": fac((0.08, 0.02), (0.02, 0.01), (0.06, 0.02)),
                     "scale": fac((0.15, 0.02), (0.06, 0.02), (0.25, 0.01))}}
  r = lc.rejudge(row)
  assert r["informative_factors"] == ["object_hue", "scale"]
  assert r["factors"]["object_hue"]["comparable"] is True
  assert r["factors"]["scale"]["per_baseline"]["sefa"]["verdict"] is False  # 0.15 vs 0.25
  assert "comparable" not in r["factors"]["wall_hue"] and r["met"] is False
  assert row["met"] is True  # the input is not changed
  flows = {"claim": "flows_posthoc", "value": 0.70, "value_std": 0.01,
           "all_methods": {"potential flows": s(0.70, 0.01), "pca": s(0.60, 0.01),
                           "wide": s(0.66, 0.05)}}
  r = lc.rejudge(flows)
  assert r["per_baseline"]["pca"]["verdict"] and not r["per_baseline"]["wide"]["verdict"]
  assert r["met"] is False and "all_methods" not in r
