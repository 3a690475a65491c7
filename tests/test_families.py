"""Every family trains through the one runner (lsx.runs.train): for autoencoders with a
two-player objective (FactorVAE), learned directions, post-hoc flows (lsx's and the
reference form), joint flows, sparse autoencoders and denoisers, a sweep member equals the same run
alone and a killed run resumes bit-exact (whole trees compared, structure included)."""
import jax
import numpy as np
import pytest

from configs import common
from conftest import assert_trees_equal, set_fields, tiny_config
from lsx import train as lt

QUIET = lambda s: None


@pytest.fixture(scope="module")
def decoder(tmp_path_factory):
  wd = str(tmp_path_factory.mktemp("decoder") / "vae")
  lt.train(tiny_config(), wd, write_figures=False, print_fn=QUIET)
  return wd


def _factor_vae(wd):
  c = tiny_config(**{"objective.name": "factor_vae", "train.steps": 4})
  with c.unlocked():
    c.objective.update(disc_width=16, disc_depth=2)
    c.hp = {"gamma": 10.0, "lr": 1e-3}
  return c


def _directions(wd):
  c = common.load("configs/latentclr_sprites.py:smoke")
  with c.unlocked():
    c.decoder.workdir = wd
    c.directions.features = "decoder:Dense_0"
  return c


def _posthoc(wd):
  c = common.load("configs/flows_sprites.py:smoke")
  with c.unlocked():
    c.decoder.workdir = wd
  return c


def _posthoc_reference(wd):
  c = common.load("configs/flows_sprites.py:reference,smoke")
  with c.unlocked():
    c.decoder.workdir = wd
    c.train.batch_size = 4
  return c


def _joint(wd):
  return common.load("configs/flows_joint_sprites.py:smoke")


def _sae(wd):
  return common.load("configs/sae_toy.py:smoke")


def _diffusion(wd):
  return common.load("configs/diffusion_sprites.py:smoke")


# family: (config of a decoder workdir, a traced hyperparameter, its values for members 0, 1)
FAMILIES = {"factor_vae": (_factor_vae, "gamma", (0.5, 2.0)),
            "directions": (_directions, "temperature", (0.5, 2.0)),
            "flows_posthoc": (_posthoc, "lambda_pde", (0.5, 2.0)),
            "flows_reference": (_posthoc_reference, "lambda_pde", (0.5, 2.0)),
            "flows_joint": (_joint, "lambda_latent", (0.5, 2.0)),
            "sae": (_sae, "k", (3.0, 2.0)),
            "diffusion": (_diffusion, "beta_end", (0.03, 0.02))}


def _with(c, workdir, **kw):
  c = c.copy_and_resolve_references()
  # this process's CPU is one device: members in sequence
  return set_fields(c, workdir=workdir, sweep_strategy="map", **kw)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_member_equals_run_alone_and_killed_run_resumes_exactly(family, decoder, tmp_path):
  make, hp_name, values = FAMILIES[family]
  base = make(decoder)
  sweep = dict(**{"sweep.seed": (0, 1), "sweep.hp": {hp_name: values}, "sweep.mode": "zip"})
  whole, setup = lt.train(_with(base, str(tmp_path / "whole"), **sweep), print_fn=QUIET)
  # killed after one chunk, then resumed: bit-exact parameters and metrics
  lt.train(_with(base, str(tmp_path / "split"), **sweep), print_fn=QUIET, stop_after_chunks=1)
  resumed, _ = lt.train(_with(base, str(tmp_path / "split"), **sweep), print_fn=QUIET)
  assert_trees_equal(whole.params, resumed.params)
  assert (open(tmp_path / "whole" / "metrics.jsonl").read()
          == open(tmp_path / "split" / "metrics.jsonl").read())
  # member 1 (seed 1, hp 2.0) equals the run alone
  one = {"seed": 1, f"hp.{hp_name}": values[1], "sweep.seed": (), "sweep.hp": {}}
  alone, _ = lt.train(_with(base, str(tmp_path / "alone"), **one), print_fn=QUIET,
                      write_figures=False)
  member1 = jax.tree.map(lambda y: y[1], whole.params)
  assert_trees_equal(member1, alone.params, rtol=2e-5, atol=1e-6)
  start = setup.init_state(jax.random.key(1)).params
  moved = jax.tree.leaves(jax.tree.map(lambda x, y: not np.allclose(x, y), start, member1))
  assert any(moved)  # it trained
  if family == "flows_reference":  # the frame probe reads a real run's setup and member
    from lsx.flows import family as flows_family
    probe = flows_family.frame_probe(setup, member1["flow"], steps=2, batch_size=3,
                                     eval_batches=1, labels="batch")
    assert 0 <= probe["accuracy"] <= 1 and probe["classifier"] == "conv"


def test_two_player_objective_updates_each_group_by_its_own_loss(decoder, tmp_path):
  # FactorVAE: the discriminator learns from its own cross-entropy (the main loss's
  # gradient never reaches it); the VAE from rec + KL + gamma * TC with its own optimizer
  c = _with(_factor_vae(decoder), str(tmp_path / "f"), **{"train.steps": 2, "train.chunk": 2,
                                                          "train.ckpt_every": 2})
  setup = lt.build(c)
  state = setup.init_state()
  assert set(state.opt_state) == {"main", "discriminator"}
  step = jax.jit(lt.make_train_step(setup.objective, setup.optimizer))
  batch, _ = setup.sample(jax.random.key(0), 16)
  new, m = step(state, setup.hp, batch, jax.random.key(1))
  assert {"tc", "disc_ce", "discriminator_loss"} <= set(m) and not bool(m["nonfinite"])
  # the discriminator's update is what its own loss's gradient and Adam give
  player = setup.objective.players[0]
  g = jax.grad(lambda p: player.loss({**state.params, "discriminator": p}, batch,
                                     jax.random.key(1), setup.hp)[0])(state.params["discriminator"])
  import optax
  tx = optax.adam(1e-4, b1=0.5, b2=0.9)
  upd, _ = tx.update(g, tx.init(state.params["discriminator"]))
  want = optax.apply_updates(state.params["discriminator"], upd)
  assert_trees_equal(new.params["discriminator"], want, rtol=1e-5, atol=1e-7)
  # gamma is traced: gamma = 0 leaves the VAE loss without the TC term
  _, m0 = step(state, dict(setup.hp, gamma=jax.numpy.float32(0.0)), batch, jax.random.key(1))
  np.testing.assert_allclose(m0["loss"], m0["rec"] + m0["kl"], rtol=1e-5)
