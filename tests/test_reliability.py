"""Every bad input and fault a user can reasonably make, as one table (docs/reliability.md).

Each case builds its situation (a config, a copy of a trained run, a damaged file, an
array), snapshots every file under its directory, runs the action and asserts that the
action raised one of the errors the CLI prints as one line (`lsx.cli`), with a message
that names the problem (the regex), and that nothing on disk changed. `recovers` cases
assert what the library did instead (a repaired log, a checkpoint set aside).

  python -m pytest tests/test_reliability.py -q          # the whole table
  python tests/test_reliability.py                       # the table as markdown
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
from typing import Callable

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.conftest import set_fields, tiny_config  # noqa: E402

QUIET = dict(print_fn=lambda s: None, write_figures=False)


@dataclasses.dataclass
class Case:
  area: str
  name: str
  match: str  # regex the error message must contain; '' for a recovers case
  make: Callable  # make(ctx) -> action(); the action raises (or, for recovers, returns a check)
  recovers: bool = False
  error: type = ValueError  # the class (or a base of it) the action must raise


CASES: list[Case] = []


def case(area, name, match="", recovers=False):
  def deco(fn):
    CASES.append(Case(area, name, match, fn, recovers))
    return fn
  return deco


# ----------------------------------------------------------------------------- configs
def _train_with(overrides, family_config=None):
  def make(ctx):
    from lsx.train import train
    c = (set_fields(family_config(ctx), **overrides) if family_config
         else tiny_config(**overrides))
    return lambda: train(c, str(ctx.tmp / "run"), **QUIET)
  return make


CONFIG = [
    ("train.steps", 0, r"train\.steps must be >= 1"),
    ("train.steps", -5, r"train\.steps must be >= 1"),
    ("train.batch_size", 0, r"train\.batch_size must be >= 1"),
    ("train.chunk", 0, r"train\.chunk must be >= 1"),
    ("train.ckpt_every", 0, r"train\.ckpt_every must be >= 1"),
    ("train.ckpt_every", 3, r"multiple of"),
    ("train.keep", 0, r"train\.keep must be >= 1"),
    ("train.log_every_s", -1.0, r"train\.log_every_s must be a finite number >= 0"),
    ("data.size", 0, r"size"),
    ("data.size", 4, r"size"),
    ("data.name", "nosuch_dataset", r"nosuch_dataset"),
    ("model.latent_dim", 0, r"model\.latent_dim must be >= 1"),
    ("model.latent_dim", -3, r"model\.latent_dim must be >= 1"),
    ("model.arch", "resnet", r"arch.*resnet.*conv.*mlp|resnet.*'conv'"),
    ("model.hidden", (64, 0), r"model\.hidden"),
    ("model.image_shape", (64, 64, 3), r"Shape mismatch"),
    ("model.bottleneck", "nosuch", r"bottleneck.*nosuch"),
    ("objective.name", "vq", r"Unknown objective"),
    ("objective.likelihood", "poisson", r"likelihood.*poisson"),
    ("hp", {"betta": 1.0, "lr": 1e-3}, r"config\.hp has \['betta'\]"),
    ("hp.lr", 0.0, r"hp\.lr .*must be > 0"),
    ("hp.lr", -1e-3, r"hp\.lr .*must be > 0"),
    ("hp.lr", float("nan"), r"hp\.lr .*finite"),
    ("hp.beta", float("inf"), r"hp\.beta .*finite"),
    ("hp.beta", -1.0, r"hp\.beta .*must be >= 0"),
    ("optim.name", "sgdd", r"optim\.name.*sgdd"),
    ("optim.grad_clip", -1.0, r"grad_clip must be a finite number >= 0"),
    ("sweep.hp", {"beta": ()}, r"sweep\.hp\.beta is empty"),
    ("sweep.hp", {"gamma": (1.0, 2.0)}, r"sweep\.hp.*gamma"),
    ("sweep.hp", {"beta": (1.0, -2.0)}, r"hp\.beta .*must be >= 0"),
    ("sweep.hp", {"lr": (1e-3, float("nan"))}, r"hp\.lr .*finite"),
    ("sweep.mode", "cartesian", r"sweep\.mode"),
    ("sweep_strategy", "fast", r"sweep_strategy.*fast"),
    ("mesh.cpu_devices", "abc", r"mesh\.cpu_devices.*abc"),
    ("mesh.cpu_devices", "-2", r"mesh\.cpu_devices"),
    ("mesh.data", 0, r"mesh\.data must be >= 1"),
    ("family", "nosuch", r"family.*nosuch"),
    ("viz.num_steps", 0, r"viz\.num_steps"),
    ("viz.num_anchors", 0, r"viz\.num_anchors"),
    ("distributed.num_processes", 0, r"num_processes"),
    # a family set on another family's config: the section it reads is named
    ("family", "directions", r"config\.family='directions' reads config\.directions, which "
                             r"this config has not"),
    ("family", "sae", r"config\.family='sae' reads config\.sae"),
    ("family", "relative_decoder", r"reads config\.source, which this config has not"),
    # numbers checked in the dtype the run uses them in (float32 hp, int32 steps, uint32 seeds)
    ("hp.lr", 1e-50, r"hp\.lr=1e-50 is not representable in float32.*become 0"),
    ("hp.beta", 1e39, r"hp\.beta=1e\+39 is not representable in float32.*become inf"),
    ("hp.lr", 1e-40, r"hp\.lr=1e-40 is not representable in float32"),
    ("sweep.hp", {"beta": (1.0, 5e38)}, r"sweep\.hp\.beta=5e\+38 is not representable"),
    ("train.log_every_s", float("nan"), r"train\.log_every_s must be a finite number"),
    ("optim.grad_clip", float("nan"), r"optim\.grad_clip must be a finite number"),
    ("viz.num_sigma", float("nan"), r"viz\.num_sigma must be a finite number > 0"),
    ("viz.num_sigma", float("inf"), r"viz\.num_sigma must be a finite number > 0"),
    ("optim.lr_decay_factor", float("nan"), r"lr_decay_factor must be in \(0, 1\]"),
    ("seed", 2 ** 64, r"config\.seed must be an integer in \[0, 4294967295\]"),
    ("seed", -1, r"config\.seed must be an integer in \[0, "),
    ("sweep.seed", (0, 2 ** 40), r"config\.sweep\.seed must be an integer in \[0, "),
    ("train.steps", 2 ** 31, r"train\.steps=2147483648 exceeds 2147483647"),
    ("train.batch_size", 2 ** 40, r"train\.batch_size=1099511627776 exceeds"),
    # the declared schema (lsx.train.validate.RUN_SCHEMA / AUTOENCODER_SCHEMA): float32
    # fields checked in float32, choices listed, integer lists in int32
    ("optim.grad_clip", 1e39, r"optim\.grad_clip=1e\+39 is not representable in float32"),
    ("viz.num_sigma", 1e-46, r"viz\.num_sigma=1e-46 is not representable in float32"),
    ("optim.lr_decay_factor", 1.5, r"lr_decay_factor must be in \(0, 1\], got 1\.5"),
    ("optim.lr_decay_factor", 1e-45, r"lr_decay_factor=1e-45 is not representable"),
    ("optim.lr_decay_steps", (10, 2 ** 31), r"lr_decay_steps must be increasing integer "
                                              r"steps in \[1, 2147483647\]"),
    ("optim.lr_decay_steps", (4, 4), r"lr_decay_steps must be increasing"),
    ("train.precision", "fp8", r"train\.precision must be one of \['bfloat16', 'float32'\]"),
    ("model.hidden", (64, 2.5), r"model\.hidden must list integer widths >= 1"),
    ("model.latent_dim", 2 ** 31, r"model\.latent_dim=2147483648 exceeds 2147483647"),
    ("train.log_every_s", float("inf"), r"train\.log_every_s must be a finite number"),
    ("viz.num_anchors", 2 ** 32, r"viz\.num_anchors=4294967296 exceeds"),
]
for _k, _v, _m in CONFIG:
  case("config", f"{_k}={_v!r}", _m)(_train_with({_k: _v}))


@case("config", "sweep zip of unequal lengths", r"zip")
def _zip(ctx):
  from lsx.train import train
  c = tiny_config(**{"sweep.mode": "zip"})
  with c.unlocked():
    c.sweep.seed = (0, 1, 2)
    c.sweep.hp = {"beta": (1.0, 2.0)}
  return lambda: train(c, str(ctx.tmp / "run"), **QUIET)


@case("config", "iwae with iwae_k=0", r"iwae_k")
def _iwae(ctx):
  from lsx.train import train
  c = tiny_config(**{"objective.name": "iwae", "objective.iwae_k": 0})
  return lambda: train(c, str(ctx.tmp / "run"), **QUIET)


@case("config", "an option another objective has (iwae_k on beta_vae)", r"iwae_k")
def _foreign_option(ctx):
  from lsx.train import train
  c = tiny_config(**{"objective.iwae_k": 4})
  return lambda: train(c, str(ctx.tmp / "run"), **QUIET)


@case("config", "qlae with num_values=1", r"num_values")
def _qlae(ctx):
  from lsx.train import train
  c = tiny_config(**{"objective.name": "qlae", "model.num_values": 1})
  with c.unlocked():
    c.hp = {"lr": 1e-3}
  return lambda: train(c, str(ctx.tmp / "run"), **QUIET)


@case("config", "config file that does not exist", r"does not exist")
def _config_file(ctx):
  from lsx.train.config import load_config
  return lambda: load_config(str(ctx.tmp / "nope.py"))


@case("config", "unknown config argument", r"Unknown config argument 'bogus'")
def _config_arg(ctx):
  from lsx.train.config import load_config
  return lambda: load_config("configs/betavae_sprites.py:bogus")


# directions and flows families: a decoder run to study
def _directions_config(ctx):
  from lsx.train.config import load_config
  c = load_config("configs/latentclr_sprites.py:smoke")
  with c.unlocked():
    c.decoder.workdir = ctx.run()
    c.decoder.config = ""
    c.directions.features = "pixels"
  return c


def _flows_config(ctx):
  from lsx.train.config import load_config
  c = load_config("configs/flows_sprites.py:smoke")
  with c.unlocked():
    c.decoder.workdir = ctx.run()
    c.decoder.config = ""
  return c


for _k, _v, _m in [
    ("directions.method", "nosuch", r"nosuch.*latentclr"),
    ("directions.num", 0, r"directions\.num must be >= 1"),
    ("directions.kind", "curvy", r"curvy"),
    ("directions.features", "decoder:NoSuchLayer", r"NoSuchLayer"),
    ("directions.features", "edges", r"features.*edges"),
    ("directions.convention", "public", r"convention must be one of \('lsx', 'reference'\)"),
    ("directions.method", "pca", r"closed form"),
    ("decoder.workdir", "/nonexistent/decoder", r"/nonexistent/decoder"),
    ("eval.steps", 0, r"eval\.steps must be >= 1"),
]:
  case("directions", f"{_k}={_v!r}", _m)(_train_with({_k: _v}, _directions_config))

for _k, _v, _m in [
    ("flows.mode", "both", r"flows\.mode must be one of"),
    ("flows.num_potentials", 0, r"num_potentials must be >= 1"),
    ("flows.path_len", 1, r"path_len"),
    ("flows.laplacian", "approx", r"laplacian.*approx"),
    ("flows.classifier_labels", "each", r"classifier_labels must be '' .* or one of"),
    ("flows.classifier_labels", "batch", r"classifier_labels='batch' is the reference objective's"),
    ("decoder.workdir", "/nonexistent/decoder", r"/nonexistent/decoder"),
]:
  case("flows", f"{_k}={_v!r}", _m)(_train_with({_k: _v}, _flows_config))


# ----------------------------------------------------------------------------- workdir
@case("workdir", "workdir is a file", r"is a file, not a directory")
def _wd_file(ctx):
  from lsx.train import train
  (ctx.tmp / "f").write_text("x")
  return lambda: train(tiny_config(), str(ctx.tmp / "f"), **QUIET)


@case("workdir", "workdir under a file", r"cannot use .* as a workdir")
def _wd_under_file(ctx):
  from lsx.train import train
  (ctx.tmp / "f").write_text("x")
  return lambda: train(tiny_config(), str(ctx.tmp / "f" / "run"), **QUIET)


@case("workdir", "empty workdir path", r"workdir")
def _wd_empty(ctx):
  from lsx.train import train
  return lambda: train(tiny_config(), "", **QUIET)


@case("workdir", "read-only workdir", r"not writable|Permission|permission")
def _wd_readonly(ctx):
  from lsx.train import train
  d = ctx.tmp / "ro"
  d.mkdir()
  _read_only(ctx, str(d))
  return lambda: train(tiny_config(), str(d), **QUIET)


def _read_only(ctx, path):
  """chmod 555, and (root ignores permissions) os.access saying so for `path` too."""
  os.chmod(path, 0o555)
  real = os.access
  os.access = lambda p, mode, *a, **k: (False if os.path.abspath(p) == os.path.abspath(path)
                                        and mode & os.W_OK else real(p, mode, *a, **k))
  ctx.cleanup.append(lambda: (setattr(os, "access", real), os.chmod(path, 0o755)))


@case("workdir", "held by a live process", r"in use by process")
def _wd_locked(ctx):
  from lsx.train import train
  import socket
  wd = ctx.run()
  p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
  ctx.cleanup.append(lambda: (p.kill(), p.wait()))
  with open(os.path.join(wd, ".lock"), "w") as f:
    json.dump({"pid": p.pid, "host": socket.gethostname()}, f)
  return lambda: train(tiny_config(), wd, **QUIET)


for _k, _v, _m in [
    ("model.latent_dim", 5, r"another config \(model\.latent_dim: 4 -> 5\)"),
    ("train.batch_size", 8, r"another config \(train\.batch_size: 16 -> 8\)"),
    ("seed", 3, r"another config \(seed: 0 -> 3\)"),
    ("hp.beta", 4.0, r"another config \(hp\.beta: 1\.0 -> 4\.0\)"),
    ("data.size", 64, r"another config \(data\.size: 32 -> 64\)"),
    ("model.arch", "conv", r"another config \(model\.arch"),
]:
  def _resume(ctx, _k=_k, _v=_v):
    from lsx.train import train
    wd = ctx.run()
    return lambda: train(tiny_config(**{_k: _v}), wd, **QUIET)
  case("workdir", f"resume with {_k}={_v!r}", _m)(_resume)


@case("workdir", "resume with a torn config.json", r"config\.json is not valid JSON")
def _torn_config(ctx):
  from lsx.train import train
  wd = ctx.run()
  p = os.path.join(wd, "config.json")
  text = open(p).read()
  open(p, "w").write(text[: len(text) // 2])
  return lambda: train(tiny_config(), wd, **QUIET)


@case("workdir", "checkpoints without config.json", r"no config\.json")
def _no_config(ctx):
  from lsx.train import train
  wd = ctx.run()
  os.remove(os.path.join(wd, "config.json"))
  return lambda: train(tiny_config(), wd, **QUIET)


@case("workdir", "resume with allow_config_change and a new model", r"Shape mismatch restoring")
def _allow_shape(ctx):
  from lsx.train import train
  wd = ctx.run()
  return lambda: train(tiny_config(**{"model.latent_dim": 5}), wd, allow_config_change=True,
                       **QUIET)


@case("workdir", "a torn last metrics line", recovers=True)
def _torn_metrics(ctx):
  from lsx.train import train
  wd = ctx.run()
  with open(os.path.join(wd, "metrics.jsonl"), "a") as f:
    f.write('{"step": 10, "lo')
  msgs = []

  def act():
    train(tiny_config(**{"train.steps": 10}), wd, print_fn=msgs.append, write_figures=False)
    rows = [json.loads(x) for x in open(os.path.join(wd, "metrics.jsonl"))]
    assert [r["step"] for r in rows] == [2, 4, 6, 8, 10]
    assert any("dropped 1 unreadable line" in m for m in msgs)
  return act


@case("workdir", "a run recorded before the schema gained train.precision resumes",
      recovers=True)
def _older_schema(ctx):
  from lsx.train import train
  wd = ctx.run()
  p = os.path.join(wd, "config.json")
  rec = json.load(open(p))
  del rec["train"]["precision"]
  json.dump(rec, open(p, "w"))

  def act():
    state, _ = train(tiny_config(**{"train.steps": 10}), wd, **QUIET)
    assert int(state.step) == 10
  return act


@case("workdir", "metrics rows past the restored step", recovers=True)
def _extra_rows(ctx):
  from lsx.train import train
  wd = ctx.run()
  shutil.rmtree(os.path.join(wd, "checkpoints", "8"))  # killed after logging, before saving

  def act():
    train(tiny_config(), wd, **QUIET)
    rows = [json.loads(x) for x in open(os.path.join(wd, "metrics.jsonl"))]
    assert [r["step"] for r in rows] == [2, 4, 6, 8]
  return act


# ----------------------------------------------------------------------------- checkpoints
def _data_file(step_dir):
  files = [os.path.join(r, f) for r, _, fs in os.walk(os.path.join(step_dir, "default"))
           for f in fs]
  return max(files, key=os.path.getsize)


def _damage(how):
  def make(ctx):
    from lsx.train import train
    wd = ctx.run()
    step_dir = os.path.join(wd, "checkpoints", "8")
    if how == "flip":
      p = _data_file(step_dir)
      raw = bytearray(open(p, "rb").read())
      raw[len(raw) // 2] ^= 0x01
      open(p, "wb").write(bytes(raw))
    elif how == "truncate":
      p = _data_file(step_dir)
      raw = open(p, "rb").read()
      open(p, "wb").write(raw[: len(raw) // 3])
    elif how == "delete":
      os.remove(_data_file(step_dir))
    elif how == "garbage":
      for r, _, fs in os.walk(step_dir):
        for f in fs:
          open(os.path.join(r, f), "wb").write(b"garbage")
    elif how == "checksums":
      p = os.path.join(step_dir, "checksums.json")
      open(p, "w").write(open(p).read()[:20])
    elif how == "checksum_value":
      p = os.path.join(step_dir, "checksums.json")
      sums = json.load(open(p))
      sums[next(iter(sums))] = "0" * 64
      json.dump(sums, open(p, "w"))
    return lambda: train(tiny_config(**{"train.steps": 12}), wd, **QUIET)
  return make


for _how in ("flip", "truncate", "delete", "garbage", "checksums", "checksum_value"):
  case("checkpoint", f"latest checkpoint: {_how}",
       r"checkpoints/8 \(step 8\) is corrupt: .*previous checkpoint is step 4: .*skip_corrupt_checkpoint"
       )(_damage(_how))


@case("checkpoint", "evaluate a run whose latest checkpoint is corrupt", r"corrupt|unreadable|Could not restore")
def _eval_corrupt(ctx):
  from lsx.runs import evaluate_workdir
  wd = ctx.run()
  _damage("flip")  # noqa: B018
  p = _data_file(os.path.join(wd, "checkpoints", "8"))
  raw = bytearray(open(p, "rb").read())
  raw[len(raw) // 2] ^= 0x01
  open(p, "wb").write(bytes(raw))
  return lambda: evaluate_workdir(wd, metrics=("mig",), num_samples=50, num_test=50, log=None)


@case("checkpoint", "load a step the run has no checkpoint of",
      r"has no checkpoint at step 6 \(it has \[4, 8\]\): give one of those steps")
def _absent_step(ctx):
  from lsx.runs import load_run
  wd = ctx.run()
  return lambda: load_run(wd, 6)


@case("checkpoint", "skip_corrupt_checkpoint sets it aside and resumes", recovers=True)
def _skip_corrupt(ctx):
  from lsx.train import train
  wd = ctx.run()
  p = _data_file(os.path.join(wd, "checkpoints", "8"))
  raw = bytearray(open(p, "rb").read())
  raw[len(raw) // 2] ^= 0x01
  open(p, "wb").write(bytes(raw))
  msgs = []

  def act():
    state, _ = train(tiny_config(), wd, print_fn=msgs.append, write_figures=False,
                     skip_corrupt_checkpoint=True)
    assert int(state.step) == 8  # retrained 4 -> 8 from the verified step 4
    aside = os.listdir(os.path.join(wd, "corrupt_checkpoints"))
    assert len(aside) == 1 and aside[0].startswith("8")  # kept, not deleted
    assert any("set aside" in m for m in msgs)
    rows = [json.loads(x)["step"] for x in open(os.path.join(wd, "metrics.jsonl"))]
    assert rows == [2, 4, 6, 8]
  return act


# ----------------------------------------------------------------------------- evaluate
def _evaluate(workdir_of, match_kw=None, **kw):
  def make(ctx):
    from lsx.runs import evaluate_workdir
    wd = workdir_of(ctx)
    args = dict(metrics=("mig",), num_samples=50, num_test=50, log=None)
    args.update(kw)
    return lambda: evaluate_workdir(wd, **args)
  return make


case("evaluate", "missing workdir", r"has no config\.json|does not exist")(
    _evaluate(lambda ctx: str(ctx.tmp / "nope")))
case("evaluate", "workdir is a file", r"is a file, not a directory")(
    _evaluate(lambda ctx: (ctx.tmp / "f").write_text("x") and str(ctx.tmp / "f")))
case("evaluate", "num_samples=0", r"num_samples=0")(
    _evaluate(lambda ctx: ctx.run(), num_samples=0))
case("evaluate", "num_test=5", r"num_test=5")(_evaluate(lambda ctx: ctx.run(), num_test=5))
case("evaluate", "unknown metric", r"Unknown metrics \['mgi'\]")(
    _evaluate(lambda ctx: ctx.run(), metrics=("mgi",)))
case("evaluate", "unknown DCI estimator", r"estimator.*forest")(
    _evaluate(lambda ctx: ctx.run(), metrics=("dci",), dci_estimator="forest"))


@case("evaluate", "an SAE run (not an autoencoder)", r"'sae' run \(a sparse autoencoder, .*\): experiments.evaluate reads")
def _eval_sae(ctx):
  from lsx.train import train
  from lsx.train.config import load_config
  c = load_config("configs/sae_toy.py:smoke")
  train(c, str(ctx.tmp / "sae"), **QUIET)
  return _evaluate(lambda cc: str(ctx.tmp / "sae"))(ctx)


@case("evaluate", "torn config.json", r"not valid JSON")
def _eval_torn(ctx):
  wd = ctx.run()
  p = os.path.join(wd, "config.json")
  open(p, "w").write(open(p).read()[:50])
  return _evaluate(lambda c: wd)(ctx)


@case("evaluate", "no checkpoint yet", r"no checkpoint yet")
def _eval_nockpt(ctx):
  wd = ctx.run()
  shutil.rmtree(os.path.join(wd, "checkpoints"))
  return _evaluate(lambda c: wd)(ctx)


@case("evaluate", "read-only workdir", r"not writable")
def _eval_ro(ctx):
  wd = ctx.run()
  _read_only(ctx, wd)
  return _evaluate(lambda c: wd)(ctx)


# ----------------------------------------------------------------------------- extract
def _extract(workdir_of, member, out_of):
  def make(ctx):
    from lsx.train import extract_member
    wd, out = workdir_of(ctx), out_of(ctx)
    return lambda: extract_member(wd, member, out)
  return make


case("extract", "missing workdir", r"nope.*(no config\.json|does not exist)")(
    _extract(lambda ctx: str(ctx.tmp / "nope"), 0, lambda ctx: str(ctx.tmp / "out")))
case("extract", "single run", r"single run, not a sweep")(
    _extract(lambda ctx: ctx.run(), 0, lambda ctx: str(ctx.tmp / "out")))
case("extract", "member out of range", r"member must be in \[0, 2\)")(
    _extract(lambda ctx: ctx.sweep(), 2, lambda ctx: str(ctx.tmp / "out")))
case("extract", "negative member", r"member must be in \[0, 2\)")(
    _extract(lambda ctx: ctx.sweep(), -1, lambda ctx: str(ctx.tmp / "out")))
case("extract", "out is the sweep's workdir", r"sweep's own workdir")(
    _extract(lambda ctx: ctx.sweep(), 0, lambda ctx: ctx.sweep()))
case("extract", "out is an existing run", r"already holds a run")(
    _extract(lambda ctx: ctx.sweep(), 0, lambda ctx: ctx.run()))


# ----------------------------------------------------------------------------- metrics
def _z(n=200, d=3, seed=0):
  return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def _f(n=200, seed=1):
  return np.random.default_rng(seed).integers(0, 4, size=(n, 2))


def _metric(fn_name, match, z=None, f=None, **kw):
  def make(ctx):
    from lsx import metrics as lm
    zz = _z() if z is None else z
    ff = _f() if f is None else f
    fn = getattr(lm, fn_name)
    if fn_name in ("dci", "sap") and "latents_test" not in kw:
      return lambda: fn(zz, ff, zz, ff, **kw)
    return lambda: fn(zz, ff, **kw)
  return make


_FLOATF = _f().astype(np.float32) + 0.5
_NANF = _f().astype(np.float32)
_NANF[3, 0] = np.nan
_NANZ = _z()
_NANZ[5, 1] = np.nan
_INFZ = _z()
_INFZ[0, 0] = np.inf
for _fn in ("infomec", "mig", "dci", "sap"):
  for _name, _kw, _m in [
      ("float factors", dict(f=_FLOATF), r"factors must be integer class indices"),
      ("NaN factors", dict(f=_NANF), r"factors must be integer class indices"),
      ("NaN latents", dict(z=_NANZ), r"NaN or Inf"),
      ("Inf latents", dict(z=_INFZ), r"NaN or Inf"),
      ("float64 latents beyond float32", dict(z=_z().astype(np.float64) * 1e300),
       r"beyond what float32"),
      ("1-D latents", dict(z=_z()[:, 0]), r"shape \[n, d\]"),
      ("1-D factors", dict(f=_f()[:, 0]), r"factors must have shape \[n, F\]"),
      ("sample counts differ", dict(z=_z(150)), r"same number of samples"),
      ("one sample", dict(z=_z(1), f=_f(1)), r"at least"),
      ("no samples", dict(z=_z(0), f=_f(0)), r"at least"),
  ]:
    if "float32" in _name and _fn != "sap":
      continue  # standardized in float64 first: scored (the scale cases below)
    case("metrics", f"{_fn}: {_name}", _m)(_metric(_fn, _m, **_kw))

case("metrics", "infomec on 2 samples", r"at least .* samples")(
    _metric("infomec", "", z=_z(2), f=_f(2)))
case("metrics", "infomec k=0", r"k=0")(_metric("infomec", "", k=0))
case("metrics", "infomec discrete, max_latent_values=1", r"max_latent_values")(
    _metric("infomec", "", z=np.round(_z()), discrete_latents=True, max_latent_values=1))
case("metrics", "infomec discrete, max_latent_values below the codes", r"max_latent_values=2")(
    _metric("infomec", "", z=np.round(_z() * 3), discrete_latents=True, max_latent_values=2))
case("metrics", "infomec: every factor constant", r"every factor is constant")(
    _metric("infomec", "", f=np.zeros((200, 2), int)))
case("metrics", "mig num_bins=1", r"num_bins")(_metric("mig", "", num_bins=1))
case("metrics", "dci unknown estimator", r"Unknown DCI estimator")(
    _metric("dci", "", estimator="forest"))
case("metrics", "dci train/test widths differ", r"disagree in width")(
    lambda ctx: (lambda: __import__("lsx.metrics", fromlist=["dci"]).dci(
        _z(), _f(), _z(d=4), _f())))
case("metrics", "sap without a test split", r"needs a test split")(
    lambda ctx: (lambda: __import__("lsx.metrics", fromlist=["sap"]).sap(_z(), _f())))
case("metrics", "sap continuous with NaN factors", r"NaN or Inf")(
    lambda ctx: (lambda: __import__("lsx.metrics", fromlist=["sap"]).sap(
        _z(), _NANF, continuous_factors=True)))


def _scaled(fn_name, scale):
  def make(ctx):
    from lsx import metrics as lm

    def act():
      z, f = _z(400, 3, 2), _f(400, 3)
      z[:, 0] += f[:, 0]  # something to find
      fn = getattr(lm, fn_name)
      args = (z, f, z, f) if fn_name == "dci" else (z, f)
      kw = dict(estimator="logistic") if fn_name == "dci" else {}
      a = fn(*args, **kw)
      zs = z.astype(np.float64) * scale
      b = fn(*((zs, f, zs, f) if fn_name == "dci" else (zs, f)), **kw)
      for k in ("infom", "infoe", "infoc", "disentanglement", "completeness"):
        if isinstance(a, dict) and k in a:
          assert abs(a[k] - b[k]) < 2e-3, (k, a[k], b[k])
      if not isinstance(a, dict):
        assert abs(a - b) < 2e-3, (a, b)
    return act
  return make


for _fn in ("infomec", "mig", "dci"):
  for _s in (1e300, 1e18, 1e-30):
    case("metrics", f"{_fn}: latents scaled by {_s:g} score as unscaled", recovers=True)(
        _scaled(_fn, _s))


@case("metrics", "dci: constant factors give completeness in [0, 1]", recovers=True)
def _dci_const(ctx):
  from lsx import metrics as lm

  def act():
    f = np.zeros((200, 2), int)
    f[:, 1] = _f()[:, 1]
    r = lm.dci(_z(), f, _z(), f, estimator="logistic")
    assert 0.0 <= r["completeness"] <= 1.0 and 0.0 <= r["disentanglement"] <= 1.0
  return act


@case("metrics", "dci (trees): a constant factor gives scores in [0, 1]", recovers=True)
def _dci_const_gbt(ctx):
  from lsx import metrics as lm

  def act():
    f = np.zeros((200, 2), int)
    f[:, 1] = _f()[:, 1]
    r = lm.dci(_z(), f, _z(), f)
    assert 0.0 <= r["completeness"] <= 1.0 and 0.0 <= r["disentanglement"] <= 1.0
  return act


@case("metrics", "sap continuous: a constant latent gives a number, not NaN", recovers=True)
def _sap_const(ctx):
  from lsx import metrics as lm

  def act():
    z = _z()
    z[:, 1] = 3.0
    r = lm.sap(z, _f().astype(np.float32), continuous_factors=True)
    assert np.isfinite(r["sap"]) and np.all(np.isfinite(r["score_matrix"]))
  return act


# ----------------------------------------------------------------------------- similarity
def _sim(expr, match):
  def make(ctx):
    from lsx import similarity as ls  # noqa: F401
    return lambda: eval(expr, {"ls": ls, "np": np, "_z": _z})
  return make


for _expr, _m in [
    ("ls.linear_cka(_z(200, 3), _z(150, 3))", r"same number of samples"),
    ("ls.knn_jaccard(_z(20, 3), _z(20, 3), k=20)", r"k=20"),
    ("ls.knn_jaccard(_z(20, 3), _z(20, 3), k=0)", r"k=0"),
    ("ls.choose_anchors(10, 'kmeans', n=100)", r"kmeans"),
    ("ls.choose_anchors(300, 'random', n=100)", r"300 anchors.*100"),
    ("ls.relative_projection(_z(20, 3), _z(5, 4))", r"width"),
    ("ls.fit_procrustes(_z(20, 3), _z(21, 3))", r"same number"),
]:
  case("similarity", _expr, _m)(_sim(_expr, _m))


# ----------------------------------------------------------------------------- data
@case("data", "unknown TFDS name", r"TFDS knows no dataset 'dsprite'; did you mean \['dsprites'")
def _tfds_unknown(ctx):
  from lsx.data import get_dataset
  return lambda: get_dataset("dsprite", data_dir=str(ctx.tmp / "tfds"))


@case("data", "TFDS dataset not prepared", r"tfds build")
def _tfds_unprepared(ctx):
  from lsx.data import get_dataset
  return lambda: get_dataset("mnist", data_dir=str(ctx.tmp / "tfds"))


@case("data", "render with the wrong factor shape", r"factors")
def _render(ctx):
  from lsx.data import get_dataset
  ds = get_dataset("sprites", size=32)
  return lambda: ds.render(np.zeros((4, 2), np.int32))


@case("data", "procedural dataset with an unknown option", r"nosuch")
def _data_option(ctx):
  from lsx.data import get_dataset
  return lambda: get_dataset("sprites", size=32, nosuch=3)


# ----------------------------------------------------------------------------- the runner
@dataclasses.dataclass
class Ctx:
  tmp: object
  base_run: str
  base_sweep: str
  cleanup: list = dataclasses.field(default_factory=list)

  def run(self) -> str:
    """A private copy of the trained 8-step run (checkpoints 4 and 8)."""
    dst = str(self.tmp / "trained")
    if not os.path.exists(dst):
      shutil.copytree(self.base_run, dst)
    return dst

  def sweep(self) -> str:
    dst = str(self.tmp / "sweep")
    if not os.path.exists(dst):
      shutil.copytree(self.base_sweep, dst)
    return dst


def snapshot(root) -> dict:
  out = {}
  for r, dirs, files in os.walk(root):
    for d in dirs:
      out[os.path.relpath(os.path.join(r, d), root) + "/"] = "dir"
    for f in files:
      p = os.path.join(r, f)
      with open(p, "rb") as fh:
        out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
  return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  from lsx.train import train
  base = tmp_path_factory.mktemp("base")
  run = str(base / "run")
  train(tiny_config(), run, **QUIET)
  sweep = str(base / "sweep")
  c = tiny_config(**{"train.steps": 4, "train.ckpt_every": 2})
  with c.unlocked():
    c.sweep.seed = (0, 1)
  train(c, sweep, **QUIET)
  return run, sweep


def _expected_errors() -> dict:
  """The rows whose answer is not a ValueError: the class each must raise."""
  from lsx.data import DatasetNotPreparedError
  from lsx.train.checkpoint import CheckpointError, CorruptCheckpointError
  from lsx.train.workdir import WorkdirLockedError
  missing = ["config:config file that does not exist", "workdir:checkpoints without config.json",
             "directions:decoder.workdir='/nonexistent/decoder'",
             "flows:decoder.workdir='/nonexistent/decoder'", "evaluate:missing workdir",
             "evaluate:no checkpoint yet", "extract:missing workdir",
             "checkpoint:load a step the run has no checkpoint of"]
  corrupt = [f"checkpoint:latest checkpoint: {h}" for h in
             ("flip", "truncate", "delete", "garbage", "checksums", "checksum_value")]
  return {**{k: FileNotFoundError for k in missing},
          **{k: CorruptCheckpointError for k in corrupt},
          "checkpoint:evaluate a run whose latest checkpoint is corrupt": CorruptCheckpointError,
          "workdir:resume with allow_config_change and a new model": CheckpointError,
          "workdir:workdir is a file": NotADirectoryError,
          "workdir:workdir under a file": NotADirectoryError,
          "evaluate:workdir is a file": NotADirectoryError,
          "workdir:read-only workdir": PermissionError,
          "evaluate:read-only workdir": PermissionError,
          "workdir:held by a live process": WorkdirLockedError,
          "extract:out is an existing run": FileExistsError,
          "data:TFDS dataset not prepared": DatasetNotPreparedError}


for _c in CASES:
  _c.error = _expected_errors().get(f"{_c.area}:{_c.name}", ValueError)


@pytest.mark.parametrize("c", CASES, ids=[f"{c.area}:{c.name}" for c in CASES])
def test_bad_input(c: Case, trained, tmp_path):
  from lsx import cli
  ctx = Ctx(tmp_path, *trained)
  try:
    action = c.make(ctx)
    if c.recovers:
      action()
      return
    before = snapshot(tmp_path)
    with pytest.raises(cli._user_errors()) as e:
      action()
    assert isinstance(e.value, c.error), (
        f"raised {type(e.value).__name__}, expected {c.error.__name__}: {e.value}")
    msg = str(e.value.args[0] if isinstance(e.value, KeyError) and e.value.args else e.value)
    assert msg.strip() and "Traceback" not in msg and len(msg) < 1200, msg
    # a sentence that names the problem: a bare KeyError('size') echoing a field would
    # match a regex like r"size" without saying anything
    assert len(msg.split()) >= 4, f"{type(e.value).__name__}({msg!r}) is not a message"
    assert __import__("re").search(c.match, msg), f"{c.match!r} not in {msg!r}"
    assert snapshot(tmp_path) == before, "the failed action changed files on disk"
  finally:
    for f in ctx.cleanup:
      f()


# the CLI: the same mistakes through the experiment scripts print one line, exit 2
CLI = [
    ("train", ["--config", "configs/betavae_sprites.py", "--config.train.stepz=3"],
     r"unknown config field 'stepz'\. Did you mean 'steps'"),
    ("train", ["--config", "configs/betavae_sprites.py", "--config.train.steps=abc"],
     r"--config\.train\.steps=abc"),
    ("train", ["--config", "configs/nosuch.py"], r"config file 'configs/nosuch\.py' does not exist"),
    ("train", ["--config", "configs/betavae_sprites.py:bogus"], r"Unknown config argument"),
    ("train", ["--config", "configs/betavae_sprites.py", "--config.mesh.cpu_devices=abc"],
     r"mesh\.cpu_devices"),
    ("train", ["--config", "configs/betavae_sprites.py", "--config.train.keep=0"], r"keep"),
    ("evaluate", ["--workdir", "{tmp}/nope"], r"no config\.json"),
    ("evaluate", ["--workdir", "{tmp}", "--num_samples=0"], r"num_samples=0"),
    ("extract_member", ["--workdir", "{tmp}/nope", "--member", "0", "--out", "{tmp}/o"],
     r"no config\.json"),
    ("compare_spaces", ["--workdir", "{tmp}/nope"], r"no config\.json"),
    ("discover", ["--config", "configs/latentclr_sprites.py:nosuch"], r"Unknown config argument"),
    ("flows", ["--config", "configs/flows_sprites.py", "--config.flows.mode=both"],
     r"flows\.mode"),
]


@pytest.mark.parametrize("script,args,match", CLI, ids=[" ".join([s] + a[:2]) + a[-1][:24]
                                                       for s, a, _ in CLI])
def test_cli_prints_one_line(script, args, match, tmp_path):
  args = [a.replace("{tmp}", str(tmp_path)) for a in args]
  before = snapshot(tmp_path)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  r = subprocess.run([sys.executable, "-m", f"experiments.{script}", *args],
                     capture_output=True, text=True, cwd=root, timeout=300)
  err = [x for x in r.stderr.splitlines() if x.startswith("error:")]
  assert r.returncode == 2, r.stderr[-2000:]
  assert "Traceback" not in r.stderr, r.stderr[-2000:]
  assert len(err) == 1 and __import__("re").search(match, err[0]), r.stderr[-2000:]
  assert snapshot(tmp_path) == before


TINY_CLI = ["--config", "configs/betavae_sprites.py", "--config.data.size=32",
            "--config.model.arch=mlp", "--config.model.hidden=(64, 64)",
            "--config.model.latent_dim=4", "--config.train.batch_size=16",
            "--config.train.chunk=2", "--config.train.ckpt_every=4",
            "--config.train.log_every_s=0", "--config.train.keep=2"]


def _params_bytes(wd):
  from lsx.train import load_run
  import jax
  _, state = load_run(wd)
  return [np.asarray(a).tobytes() for a in jax.tree.leaves(state.params)], int(state.step)


@pytest.mark.parametrize("kill_at_line", [3, 11])
def test_sigkill_at_a_random_moment_then_resume_equals_uninterrupted(kill_at_line, tmp_path):
  """Real processes: one trains 120 steps uninterrupted; another is SIGKILLed once its log
  has `kill_at_line` rows (mid-chunk or mid-checkpoint, wherever it is), then resumed by
  running the same command again. Parameters and metrics.jsonl are byte-identical."""
  import signal
  import time
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  cmd = lambda wd: [sys.executable, "-m", "experiments.train", *TINY_CLI,
                    "--config.train.steps=120", "--workdir", wd]
  full, killed = str(tmp_path / "full"), str(tmp_path / "killed")
  subprocess.run(cmd(full), cwd=root, check=True, capture_output=True, timeout=300)
  p = subprocess.Popen(cmd(killed), cwd=root, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
  log = os.path.join(killed, "metrics.jsonl")
  t0 = time.time()
  while p.poll() is None and time.time() - t0 < 240:
    if os.path.exists(log) and sum(1 for _ in open(log)) >= kill_at_line:
      p.send_signal(signal.SIGKILL)
      break
    time.sleep(0.002)
  p.wait()
  assert p.returncode == -signal.SIGKILL, "the run ended before it could be killed"
  subprocess.run(cmd(killed), cwd=root, check=True, capture_output=True, timeout=300)
  assert open(os.path.join(killed, "metrics.jsonl")).read().count("\n") == 60
  a, b = _params_bytes(full), _params_bytes(killed)
  assert a == b
  assert (open(os.path.join(full, "metrics.jsonl")).read()
          == open(os.path.join(killed, "metrics.jsonl")).read())


def _markdown() -> str:
  rows = ["| area | input or fault | answer |", "|---|---|---|"]
  for c in CASES:
    ans = ("recovers (see the test)" if c.recovers
           else f"{c.error.__name__} matching `{c.match}`, no file changed")
    rows.append(f"| {c.area} | {c.name.replace('|', '/')} | {ans.replace('|', '/')} |")
  for s, a, m in CLI:
    rows.append(f"| cli | `experiments.{s} {' '.join(a)}` | one line matching `{m.replace('|', '/')}`, exit 2 |")
  return "\n".join(rows)


BEGIN = "<!-- table: generated by `python tests/test_reliability.py --write docs/reliability.md` -->"
END = "<!-- end table -->"


def _write(path: str) -> None:
  text = open(path).read()
  head, rest = text.split(BEGIN)
  _, tail = rest.split(END)
  with open(path, "w") as f:
    f.write(head + BEGIN + "\n" + _markdown() + "\n" + END + tail)


def test_docs_table_is_current():
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  text = open(os.path.join(root, "docs", "reliability.md")).read()
  assert BEGIN + "\n" + _markdown() + "\n" + END in text, (
      "docs/reliability.md is stale: python tests/test_reliability.py --write docs/reliability.md")


if __name__ == "__main__":
  if sys.argv[1:2] == ["--write"]:
    _write(sys.argv[2])
  else:
    print(_markdown())
