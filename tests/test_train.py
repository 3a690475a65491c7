import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import assert_trees_equal, set_fields, tiny_config
from lsx import train as lt
from lsx.train import checkpoint as ckpt


def _leaves_equal(a, b):
  assert_trees_equal(a, b)


def _lines(path):
  with open(path) as f:
    return [json.loads(l) for l in f]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  wd = str(tmp_path_factory.mktemp("full"))
  state, setup = lt.train(tiny_config(), wd, write_figures=True, print_fn=lambda s: None)
  return wd, state


def test_run_lowers_loss_and_writes_workdir(uninterrupted):
  wd, state = uninterrupted
  rows = _lines(os.path.join(wd, "metrics.jsonl"))
  assert [r["step"] for r in rows] == [2, 4, 6, 8]
  assert rows[-1]["loss"] < rows[0]["loss"]
  assert int(state.step) == 8
  for f in ("config.json", "reconstructions.png", "traversals.png"):
    assert os.path.exists(os.path.join(wd, f)), f
  assert json.load(open(os.path.join(wd, "config.json")))["train"]["steps"] == 8
  assert sorted(os.listdir(os.path.join(wd, "checkpoints"))) == ["4", "8"]


def test_kill_and_resume_equals_uninterrupted(uninterrupted, tmp_path):
  wd_full, full = uninterrupted
  wd = str(tmp_path)
  # "killed" after 3 chunks (6 steps): the last checkpoint is at step 4
  lt.train(tiny_config(), wd, stop_after_chunks=3, write_figures=False, print_fn=lambda s: None)
  assert ckpt.manager(os.path.join(wd, "checkpoints")).latest_step() == 4
  msgs = []
  resumed, _ = lt.train(tiny_config(), wd, write_figures=False, print_fn=msgs.append)
  assert any("resumed from checkpoint at step 4" in m for m in msgs)
  _leaves_equal(resumed.params, full.params)
  _leaves_equal(resumed.opt_state, full.opt_state)
  assert _lines(os.path.join(wd, "metrics.jsonl")) == _lines(os.path.join(wd_full, "metrics.jsonl"))
  # a finished run re-launched does nothing and returns the same state
  again, _ = lt.train(tiny_config(), wd, write_figures=False, print_fn=lambda s: None)
  _leaves_equal(again.params, full.params)


def test_same_seed_same_numbers_different_seed_differs(uninterrupted, tmp_path):
  wd_full, full = uninterrupted
  other, _ = lt.train(tiny_config(seed=1), str(tmp_path), write_figures=False, print_fn=lambda s: None)
  assert not np.allclose(jax.tree.leaves(other.params)[0], jax.tree.leaves(full.params)[0])


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  wd = str(tmp_path)
  lt.train(tiny_config(**{"train.steps": 4}), wd, write_figures=False, print_fn=lambda s: None)
  # continue with an absurd learning rate: params overflow, the next loss is not finite
  bad = tiny_config(**{"hp.lr": 1e30})
  with pytest.raises(ValueError, match=r"another config \(hp.lr: 0.001 -> 1e\+30\).*allow_config_change"):
    lt.train(bad, wd, write_figures=False, print_fn=lambda s: None)  # refused, named
  with pytest.raises(lt.NonFiniteError, match=r"Non-finite loss or gradient at step \d+.*last good checkpoint \(step 4\)"):
    lt.train(bad, wd, write_figures=False, print_fn=lambda s: None, allow_config_change=True)
  history = _lines(os.path.join(wd, "history.jsonl"))
  assert history[-1]["resumed_at_step"] == 4 and "hp.lr" in history[-1]["changes"]
  setup = lt.build(tiny_config())
  restored = ckpt.restore(ckpt.manager(os.path.join(wd, "checkpoints")), setup.abstract_state())
  assert int(restored.step) == 4
  assert all(np.all(np.isfinite(a)) for a in jax.tree.leaves(restored.params))


def test_misspelled_config_key_fails_with_suggestion():
  with pytest.raises(AttributeError, match='Did you mean "steps"'):
    tiny_config().train.stepz = 3


def test_errors_raise_before_compile(tmp_path):
  t = time.perf_counter()
  with pytest.raises(ValueError, match=r"Shape mismatch: config.model.image_shape=\(64, 64, 3\).*\(32, 32, 1\)"):
    lt.train(tiny_config(**{"model.image_shape": (64, 64, 3)}), str(tmp_path / "a"))
  with pytest.raises(ValueError, match=r"config.hp has \['betta'\]"):
    lt.build(tiny_config(hp={"betta": 1.0, "lr": 1e-3}))
  with pytest.raises(ValueError, match="multiple of"):
    lt.build(tiny_config(**{"train.ckpt_every": 3}))
  with pytest.raises(ValueError, match="Unknown objective"):
    lt.build(tiny_config(**{"objective.name": "vq"}))
  assert time.perf_counter() - t < 5.0
  assert not os.path.exists(tmp_path / "a" / "checkpoints")


def test_config_json_round_trip(tmp_path):
  # what load_run rebuilds a run from is the config that was written: tuples and arrays
  # come back as lists, every value equal, and the rebuilt config builds the same hp
  c = tiny_config()
  c.unlock()
  c.extra = {"betas": np.array([1.0, 4.0], np.float32), "pair": (3, 5)}
  path = lt.write_config(c, str(tmp_path))
  assert path == os.path.join(str(tmp_path), "config.json")
  back = lt.config_from_json(path)
  assert back.to_dict() == lt.config_to_json(c)
  assert back.extra.betas == [1.0, 4.0] and back.extra.pair == [3, 5]
  del back.extra, c.extra
  assert lt.build(back).hp == lt.build(c).hp


def test_changed_model_against_old_checkpoint_names_the_parameter(uninterrupted):
  wd, _ = uninterrupted
  before = open(os.path.join(wd, "config.json")).read()
  changed = tiny_config(**{"model.latent_dim": 5})
  with pytest.raises(ValueError, match=r"another config \(model.latent_dim: 4 -> 5\)"):
    lt.train(changed, wd, print_fn=lambda s: None)
  with pytest.raises(ckpt.CheckpointError, match=r"Shape mismatch restoring .*params.*\(4, .*config changed"):
    lt.train(changed, wd, print_fn=lambda s: None, allow_config_change=True)
  # the rejected resumes left the run's record as it was
  assert open(os.path.join(wd, "config.json")).read() == before


def test_corrupt_checkpoint_is_reported(tmp_path):
  wd = str(tmp_path)
  lt.train(tiny_config(**{"train.steps": 4}), wd, write_figures=False, print_fn=lambda s: None)
  step_dir = os.path.join(wd, "checkpoints", "4")
  for root, _, files in os.walk(step_dir):
    for f in files:
      with open(os.path.join(root, f), "wb") as fh:
        fh.write(b"garbage")
  with pytest.raises(ckpt.CheckpointError, match=r"checkpoints/4 \(step 4\) is corrupt"):
    lt.train(tiny_config(), wd, print_fn=lambda s: None)


def test_a_fresh_state_on_the_restore_device_shares_the_restored_states_program(tmp_path):
  # jit compiles one program per argument placement: a restored (committed) state and a
  # fresh (uncommitted) one compile twice unless the fresh one is put where restore puts
  fresh = {"w": jnp.arange(6.0).reshape(2, 3), "step": jnp.int32(3)}
  mngr = ckpt.manager(str(tmp_path / "checkpoints"))
  ckpt.save(mngr, 3, fresh)
  restored = ckpt.restore(mngr, jax.eval_shape(lambda: fresh))
  def compiles(fn, *args):  # programs jit builds for these calls (public: jax.log_compiles)
    import logging
    records = []
    handler = logging.Handler()
    handler.emit = lambda r: records.append(r.getMessage())
    logger = logging.getLogger("jax")
    logger.addHandler(handler)
    try:
      with jax.log_compiles():
        for a in args:
          jax.block_until_ready(fn(a))
    finally:
      logger.removeHandler(handler)
    return sum("Compiling" in m for m in records)

  f = jax.jit(lambda t: t["w"].sum() * t["step"])
  assert compiles(f, fresh, restored) == 2  # the placements differ
  g = jax.jit(lambda t: t["w"].sum() * t["step"] + 0.0)
  placed = ckpt.on_restore_device(fresh)
  assert compiles(g, placed, restored) == 1
  assert float(g(placed)) == float(g(restored)) == 45.0
  _leaves_equal(placed, fresh)


def test_learning_rate_is_traced_and_checkpointed(uninterrupted):
  wd, state = uninterrupted
  assert float(state.opt_state.hyperparams["learning_rate"]) == pytest.approx(1e-3)
  _, restored = lt.load_run(wd)  # the checkpoint on disk holds it too
  assert float(restored.opt_state.hyperparams["learning_rate"]) == pytest.approx(1e-3)
  assert float(restored.opt_state.hyperparams["learning_rate"]) != pytest.approx(1e-4)


def test_vmapped_members_equal_runs_alone():
  """The core contract: a chunk vmapped over (state, hp) gives each member's run alone."""
  from lsx import data, models
  ds = data.Sprites(size=32)
  model = models.make_autoencoder(ds.image_shape, 3, arch="mlp", hidden=(32,))
  obj = models.make_objective("beta_vae", model)
  opt = lt.make_optimizer("adam")
  chunk = lt.make_train_chunk(lt.make_train_step(obj, opt), ds.sample, 8, 3)
  keys = jax.random.split(jax.random.key(0), 3)
  states = jax.vmap(lambda k: lt.TrainState.create(model.init(k), opt, k))(keys)
  hps = {"beta": jnp.array([0.5, 1.0, 4.0]), "lr": jnp.array([1e-3, 3e-3, 1e-2])}
  swept, m = jax.jit(jax.vmap(chunk))(states, hps)
  for i in range(3):
    alone, ma = jax.jit(chunk)(lt.TrainState.create(model.init(keys[i]), opt, keys[i]),
                               jax.tree.map(lambda a: a[i], hps))
    np.testing.assert_allclose(m["loss"][i], ma["loss"], rtol=1e-5)
    assert_trees_equal(jax.tree.map(lambda b: b[i], swept.params), alone.params, rtol=1e-4,
                       atol=1e-6)


def test_training_programs_keep_reductions_out_of_ynnpack(monkeypatch):
  """lsx compiles training chunks with YNNPACK limited to matrix products on CPU (see
  lsx/train/xla_options.py); the user's XLA_FLAGS or LSX_XLA_DEFAULTS=0 switch it off."""
  from lsx.train import xla_options
  if jax.default_backend() != "cpu" or not xla_options.compiler_options():
    pytest.skip("the option applies to XLA:CPU builds that know it")
  f = lambda x: jnp.sum(jax.nn.softplus(x) * x)  # a likelihood-like reduction
  x = jnp.ones((64, 4096))
  assert "__ynn_fusion" not in xla_options.jit(f).lower(x).compile().as_text()
  # the two programs sum 262,144 float32 terms in different orders: ~sqrt(n) * eps apart
  assert float(xla_options.jit(f)(x)) == pytest.approx(float(jax.jit(f)(x)), rel=1e-4)
  monkeypatch.setenv("LSX_XLA_DEFAULTS", "0")
  assert xla_options.compiler_options() == {}
  monkeypatch.setenv("LSX_XLA_DEFAULTS", "1")
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=")
  assert xla_options.compiler_options() == {}


def test_a_second_process_on_the_workdir_is_refused_and_a_stale_lock_taken_over(tmp_path):
  import subprocess
  import sys
  from lsx.train import workdir as wlib
  wd = str(tmp_path)
  holder = subprocess.Popen([sys.executable, "-c", (
      "import sys, time; from lsx.train import workdir as w\n"
      f"with w.lock({wd!r}):\n  print('held', flush=True); time.sleep(60)")],
      stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(wlib.WorkdirLockedError, match=rf"in use by process {holder.pid}"):
      lt.train(tiny_config(**{"train.steps": 2}), wd, print_fn=lambda s: None)
    assert not os.path.exists(os.path.join(wd, "config.json"))  # nothing written
  finally:
    holder.kill()
    holder.wait()
  assert os.path.exists(os.path.join(wd, ".lock"))  # left behind by the killed holder
  lt.train(tiny_config(**{"train.steps": 2}), wd, print_fn=lambda s: None, write_figures=False)
  assert not os.path.exists(os.path.join(wd, ".lock"))  # taken over, then released


def test_a_torn_last_metrics_line_is_dropped_on_resume(tmp_path):
  wd = str(tmp_path)
  msgs = []
  lt.train(tiny_config(), wd, print_fn=msgs.append, write_figures=False, stop_after_chunks=2)
  with open(os.path.join(wd, "metrics.jsonl"), "a") as f:
    f.write('{"step": 6, "loss": 12')  # a kill in the middle of a write
  lt.train(tiny_config(), wd, print_fn=msgs.append, write_figures=False)
  assert [r["step"] for r in _lines(os.path.join(wd, "metrics.jsonl"))] == [2, 4, 6, 8]
  assert any("dropped 1 unreadable line" in m for m in msgs)


def test_keep_zero_is_refused_before_training(tmp_path):
  with pytest.raises(ValueError, match="train.keep must be >= 1"):
    lt.train(tiny_config(**{"train.keep": 0}), str(tmp_path / "k"), print_fn=lambda s: None)
  assert not (tmp_path / "k").exists()  # refused before the workdir was made


def test_a_flipped_byte_in_a_checkpoint_is_reported_not_restored(tmp_path):
  wd = str(tmp_path)
  lt.train(tiny_config(**{"train.steps": 8, "train.ckpt_every": 4}), wd, write_figures=False,
           print_fn=lambda s: None)
  step_dir = os.path.join(wd, "checkpoints", "8")
  assert os.path.exists(os.path.join(step_dir, "checksums.json"))
  files = [os.path.join(r, f) for r, _, fs in os.walk(os.path.join(step_dir, "default"))
           for f in fs]
  data = max(files, key=os.path.getsize)  # the array data
  raw = bytearray(open(data, "rb").read())
  raw[len(raw) // 2] ^= 0x01
  open(data, "wb").write(bytes(raw))
  with pytest.raises(ckpt.CheckpointError, match=r"corrupt|Could not restore"):
    lt.load_run(wd)
  # a checkpoint whose arrays differ from their checksums is refused, naming the step before
  mngr = ckpt.manager(os.path.join(wd, "checkpoints"))
  setup = lt.build(tiny_config())
  good = ckpt.restore(mngr, setup.abstract_state(), 4)
  with open(os.path.join(wd, "checkpoints", "4", "checksums.json")) as f:
    sums = json.load(f)
  sums[next(iter(sums))] = "0" * 64
  with open(os.path.join(wd, "checkpoints", "4", "checksums.json"), "w") as f:
    json.dump(sums, f)
  with pytest.raises(ckpt.CheckpointError, match=r"is corrupt: .* match the checksum"):
    ckpt.restore(mngr, setup.abstract_state(), 4)
  assert int(good.step) == 4


def test_a_workdir_that_cannot_be_one_is_named(tmp_path):
  f = tmp_path / "a_file"
  f.write_text("")
  with pytest.raises(NotADirectoryError, match="is a file, not a directory"):
    lt.train(tiny_config(), str(f), print_fn=lambda s: None)
  with pytest.raises(OSError, match="cannot use .* as a workdir"):
    lt.train(tiny_config(), str(f / "sub"), print_fn=lambda s: None)


def test_bfloat16_compute_keeps_float32_parameters_and_tracks_float32(tmp_path):
  # train.precision='bfloat16': losses in bf16, parameters / gradients / Adam in f32;
  # after a few steps the parameters stay close to the f32 run's (bf16 has 8 bits of
  # mantissa) and every leaf of the state is still float32
  f32, _ = lt.train(tiny_config(**{"train.steps": 4}), str(tmp_path / "a"),
                    write_figures=False, print_fn=lambda s: None)
  b16, _ = lt.train(tiny_config(**{"train.steps": 4, "train.precision": "bfloat16"}),
                    str(tmp_path / "b"), write_figures=False, print_fn=lambda s: None)
  leaves = jax.tree.leaves(b16.params)
  assert all(a.dtype == np.float32 for a in leaves)
  diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
             for a, b in zip(jax.tree.leaves(f32.params), leaves))
  assert 0 < diff < 0.05
  with pytest.raises(ValueError, match="train.precision must be one of"):
    lt.build(tiny_config(**{"train.precision": "float16"}))


def test_step_decay_scales_the_update_at_its_boundaries():
  # lr_decay_steps (2, 4), factor 0.5: Adam's update times 1, 1, 0.5, 0.5, 0.25 for the
  # same gradients; the learning rate itself stays the traced hp
  import optax
  from lsx.train import make_optimizer
  from lsx.train.state import _set_opt_hparams
  p = {"w": jnp.ones(3)}
  plain, decayed = make_optimizer("adam"), make_optimizer("adam", lr_decay_steps=(2, 4),
                                                          lr_decay_factor=0.5)
  sp, sd = plain.init(p), decayed.init(p)
  hp = {"lr": jnp.float32(0.1)}
  for t, want in enumerate([1, 1, 0.5, 0.5, 0.25]):
    g = {"w": jnp.arange(1.0, 4.0) * (t + 1)}
    up, sp = plain.update(g, _set_opt_hparams(sp, hp), p)
    ud, sd = decayed.update(g, _set_opt_hparams(sd, hp), p)
    np.testing.assert_allclose(ud["w"], want * up["w"], rtol=1e-6)
  with pytest.raises(ValueError, match="lr_decay_steps"):
    lt.train(set_fields(tiny_config(), **{"optim.lr_decay_steps": (5, 2)}), "/nonexistent/x")


def test_ensure_trained_resumes_an_unfinished_run(tmp_path):
  # a decoder run killed before its last step (here: stopped at 4 of 8) is finished by
  # the next experiment that needs it, with its own config, not taken as trained
  import json
  wd = str(tmp_path / "run")
  lt.train(tiny_config(**{"train.steps": 4}), wd, write_figures=False, print_fn=lambda s: None)
  path = tmp_path / "run" / "config.json"
  cfg = json.load(open(path))
  cfg["train"]["steps"] = 8
  json.dump(cfg, open(path, "w"))
  said = []
  lt.ensure_trained(wd, "configs/nonexistent.py", print_fn=said.append)
  assert any("stopped at step 4 of 8" in s for s in said)
  assert sorted(int(n) for n in os.listdir(tmp_path / "run" / "checkpoints")) == [4, 8]
  said.clear()
  lt.ensure_trained(wd, "configs/nonexistent.py", print_fn=said.append)  # finished: nothing
  assert said == []


def test_adam_l2_is_torch_adam_with_coupled_weight_decay():
  """'adam_l2' = torch.optim.Adam(weight_decay=wd): g + wd * p through Adam's moments
  (numpy from the update rule), unlike AdamW's decoupled decay."""
  from lsx.train.state import make_optimizer, _set_opt_hparams
  p = jnp.asarray([0.5, -1.0, 2.0])
  grads = [jnp.asarray([0.1, 0.2, -0.3]), jnp.asarray([-0.2, 0.05, 0.1]), jnp.asarray([0.3, 0.0, 0.2])]
  lr, wd, b1, b2, eps = 1e-2, 0.1, 0.9, 0.999, 1e-8
  hp = {"lr": jnp.float32(lr), "weight_decay": jnp.float32(wd)}
  results = {}
  for name in ("adam_l2", "adamw"):
    opt = make_optimizer(name)
    state = _set_opt_hparams(opt.init(p), hp)
    q = p
    for g in grads:
      u, state = opt.update(g, state, q)
      q = q + u
    results[name] = np.asarray(q)
  q, m, v = np.asarray(p, np.float64), 0.0, 0.0
  for i, g in enumerate(grads, 1):
    g = np.asarray(g, np.float64) + wd * q
    m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
    q = q - lr * (m / (1 - b1 ** i)) / (np.sqrt(v / (1 - b2 ** i)) + eps)
  np.testing.assert_allclose(results["adam_l2"], q, rtol=1e-5, atol=1e-6)
  assert np.abs(results["adamw"] - q).max() > 1e-4


def test_a_field_a_family_gained_is_no_change_at_its_default_only():
  from lsx.train.config import config_changes
  recorded = {"family": "flows", "flows": {"classifier": "conv"}}
  assert config_changes(recorded, {"family": "flows", "flows": {"classifier": "conv",
                                                                "classifier_labels": ""}}) == []
  assert config_changes(recorded, {"family": "flows", "flows": {
      "classifier": "conv", "classifier_labels": "mixed"}}) == ["flows.classifier_labels"]
