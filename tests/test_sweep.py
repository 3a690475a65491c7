"""Sweeps: the plan, strategies equal single runs, sharding, resume, member extraction."""
import csv
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import small_sweep_config, tiny_config
from lsx import train as lt
from lsx.train import sweep

QUIET = dict(print_fn=lambda s: None)


def _sweep_config(strategy="map", **kw):
  c = tiny_config(**{"sweep_strategy": strategy, **kw})
  with c.unlocked():
    c.sweep.seed = (0, 1)
    c.sweep.hp = {"beta": (1.0, 4.0)}
  return c


def test_plan_product_zip_and_errors():
  hp = {"beta": 1.0, "lr": 1e-3}
  c = _sweep_config()
  p = sweep.plan(c, hp)
  assert p.size == 4 and list(p.seeds) == [0, 1, 0, 1]
  np.testing.assert_allclose(p.hp["beta"], [1, 1, 4, 4])
  np.testing.assert_allclose(p.hp["lr"], [1e-3] * 4)
  with c.unlocked():
    c.sweep.mode = "zip"
  p = sweep.plan(c, hp)
  assert p.size == 2 and list(p.seeds) == [0, 1]
  np.testing.assert_allclose(p.hp["beta"], [1, 4])
  assert sweep.plan(tiny_config(), hp) is None
  with c.unlocked():
    c.sweep.hp = {"gamma": (1.0,)}
  with pytest.raises(ValueError, match="sweep.hp.gamma: not a traced hyperparameter"):
    sweep.plan(c, hp)
  with c.unlocked():
    c.sweep.hp = {"beta": (1.0, 2.0, 3.0)}
  with pytest.raises(ValueError, match="axes of one length"):
    sweep.plan(c, hp)
  with c.unlocked():
    c.sweep.mode = "product"
    c.sweep.train = {"steps": (10, 20)}
  with pytest.raises(ValueError, match="sweep.train cannot be vectorized"):
    sweep.plan(c, hp)
  with pytest.raises(ValueError, match="Unknown sweep strategy"):
    sweep.resolve_strategy("pmap")
  # 'auto' shards only members that split evenly over the devices; else one device's way
  # (a 3-member sweep in a process an earlier 6-member sweep split into 2 devices)
  assert sweep.resolve_strategy("auto", 2, num_members=6) == "sharded"
  assert sweep.resolve_strategy("auto", 2, num_members=3) == "map"
  assert sweep.resolve_strategy("auto", 4, num_members=6, data=2) == "sharded"
  assert sweep.resolve_strategy("auto", 1, num_members=6) == "map"


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
  """Member 3 of the sweep (seed 1, beta 4) trained as an ordinary run."""
  c = tiny_config(**{"seed": 1, "hp.beta": 4.0})
  state, _ = lt.train(c, str(tmp_path_factory.mktemp("alone")), write_figures=False, **QUIET)
  rows = [l for l in open(tmp_path_factory.getbasetemp() / "alone0" / "metrics.jsonl")]
  return state, rows


def _rel(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  return max(float(np.abs(np.asarray(x) - np.asarray(y)).max() / (np.abs(np.asarray(x)).max() + 1e-12))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("strategy", ["map", "vmap"])
def test_member_equals_the_run_alone(strategy, alone, tmp_path):
  state, _ = lt.train(_sweep_config(strategy), str(tmp_path), **QUIET)
  assert _rel(alone[0].params, sweep.take_member(state.params, 3)) <= 1e-4
  if strategy == "map":  # members in sequence run the very same program: bit-exact
    assert _rel(alone[0].params, sweep.take_member(state.params, 3)) == 0.0
  rows = list(csv.DictReader(open(tmp_path / "sweep.csv")))
  assert [int(r["seed"]) for r in rows] == [0, 1, 0, 1]
  assert [float(r["hp.beta"]) for r in rows] == [1.0, 1.0, 4.0, 4.0]
  assert (tmp_path / "sweep.png").stat().st_size > 1000
  # the member pulled out is an ordinary run: same params, loadable, its own metrics
  out = lt.extract_member(str(tmp_path), 3, str(tmp_path / "m3"))
  setup, one = lt.load_run(out)
  assert _rel(one.params, sweep.take_member(state.params, 3)) == 0.0
  assert float(setup.hp["beta"]) == 4.0 and int(setup.config.seed) == 1
  first = [l for l in open(tmp_path / "m3" / "metrics.jsonl")][0]
  assert '"loss": ' in first and "[" not in first
  # never over a run: an existing workdir or the sweep's own are refused, nothing changed
  before = {p: open(p, "rb").read() for p in (tmp_path / "config.json", tmp_path / "m3" / "config.json")}
  with pytest.raises(FileExistsError, match="already holds a run"):
    lt.extract_member(str(tmp_path), 1, out)
  with pytest.raises(ValueError, match="sweep's own workdir"):
    lt.extract_member(str(tmp_path), 1, str(tmp_path))
  assert before == {p: open(p, "rb").read() for p in before}


def test_killed_sweep_resumes_exactly(tmp_path):
  c = _sweep_config("map")
  full, _ = lt.train(c, str(tmp_path / "full"), write_figures=False, **QUIET)
  lt.train(c, str(tmp_path / "cut"), stop_after_chunks=3, write_figures=False, **QUIET)
  resumed, _ = lt.train(c, str(tmp_path / "cut"), write_figures=False, **QUIET)
  assert _rel(full.params, resumed.params) == 0.0


def test_sharded_over_8_host_devices_equals_unsharded():
  script = os.path.join(os.path.dirname(__file__), "sharded_sweep_check.py")
  out = subprocess.run([sys.executable, script, "1"], capture_output=True, text=True,
                       timeout=600, env={**os.environ, "XLA_FLAGS": ""})
  line = [l for l in out.stdout.splitlines() if l.startswith("max_rel_diff")]
  assert line, out.stderr[-2000:]
  diff, devices = float(line[0].split()[1]), int(line[0].split()[3])
  assert devices == 8 and "member" in line[0]
  assert diff <= 1e-5


def test_two_processes_on_localhost_train_the_sweep_sharded(tmp_path):
  """Multi-host: 2 processes x 4 host devices, members sharded across both, equal to
  the single-process run."""
  import socket
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  script = os.path.join(os.path.dirname(__file__), "multihost_check.py")
  workdir = str(tmp_path / "mh")
  procs = [subprocess.Popen([sys.executable, script, workdir], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "LSX_COORDINATOR": f"localhost:{port}",
                                 "LSX_NUM_PROCESSES": "2", "LSX_PROCESS_ID": str(i)})
           for i in range(2)]
  outs = [p.communicate(timeout=600)[0] for p in procs]
  assert all(p.returncode == 0 for p in procs), "\n".join(o[-3000:] for o in outs)
  assert "of 2 done, 8 devices" in outs[0]
  setup, state = lt.load_run(workdir)  # the stacked checkpoint both processes wrote
  ref, _ = lt.train(small_sweep_config("map"), str(tmp_path / "ref"), write_figures=False,
                    **QUIET)
  assert state.params["encoder"]["Dense_0"]["kernel"].shape[0] == 8
  assert _rel(ref.params, state.params) <= 1e-5
  rows = list(csv.DictReader(open(os.path.join(workdir, "sweep.csv"))))
  assert len(rows) == 8


def test_num_members_counts_without_jax():
  c = _sweep_config()
  assert sweep.num_members(c) == 4
  with c.unlocked():
    c.sweep.mode = "zip"
    c.sweep.hp = {"beta": (1.0, 4.0)}
  assert sweep.num_members(c) == 2
  assert sweep.num_members(tiny_config()) == 1


_SPLIT = """
import os, sys, jax
sys.path.insert(0, {tests!r})
from conftest import tiny_config
from lsx.train import sweep
c = tiny_config(**{{"sweep_strategy": {strategy!r}, "mesh.cpu_devices": {want!r}}})
with c.unlocked():
  c.sweep.seed = (0, 1, 2, 3, 4, 5)
try:
  n = sweep.split_host(c)
except ValueError as e:
  print("error", e); raise SystemExit
jax.devices()
print("split", n, jax.device_count(), sweep.split_host(c), sweep.resolve_strategy({strategy!r}))
"""


@pytest.mark.parametrize("strategy,want,cores,expect", [
    ("auto", "auto", 4, "split 3 3 1 sharded"),  # largest divisor of 6 members <= 4 cores
    ("auto", "2", 4, "split 2 2 1 sharded"),
    ("map", "auto", 4, "split 1 1 1 map"),       # an explicit strategy keeps one device
    ("auto", "0", 4, "split 1 1 1 map"),
    ("auto", "4", 4, "error config.mesh.cpu_devices=4 does not divide the 6 sweep members"),
])
def test_split_host_before_the_backends_start(strategy, want, cores, expect):
  code = _SPLIT.format(tests=os.path.dirname(__file__), strategy=strategy, want=want)
  # the child sees `cores` cores whatever this machine has
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  pre = f"import os; os.sched_getaffinity = lambda pid: set(range({cores}))\n"
  out = subprocess.run([sys.executable, "-c", pre + code], capture_output=True, text=True,
                       timeout=300, env={**env, "JAX_PLATFORMS": "cpu"})
  line = [l for l in out.stdout.splitlines() if l.startswith(("split", "error"))]
  assert line and line[0].startswith(expect), out.stderr[-2000:]


def test_a_diverged_member_keeps_its_first_nonfinite_step_across_a_resume(tmp_path):
  c = tiny_config(**{"sweep_strategy": "map"})
  with c.unlocked():
    c.sweep.hp = {"lr": (1e-3, 1e30)}  # member 1's first update overflows its params
  lt.train(c, str(tmp_path), stop_after_chunks=2, write_figures=False, **QUIET)
  lt.train(c, str(tmp_path), write_figures=False, **QUIET)  # resumed at step 4
  rows = list(csv.DictReader(open(tmp_path / "sweep.csv")))
  assert [r["nonfinite_at"] for r in rows] == ["", "2"]
