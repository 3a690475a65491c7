"""experiments.discover end to end on tiny trained decoders: one method, then --compare."""
import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import tiny_config
from lsx import train as lt


@pytest.fixture(scope="module")
def decoders(tmp_path_factory):
  root = tmp_path_factory.mktemp("decoders")
  for name, objective in (("vae", "beta_vae"), ("ae", "ae")):
    c = tiny_config(**{"objective.name": objective})
    if objective == "ae":
      with c.unlocked():
        c.hp = {"lr": 1e-3}
    lt.train(c, str(root / name), write_figures=False, print_fn=lambda s: None)
  return root


def _run(decoders, workdir, *extra):
  cmd = [sys.executable, "-m", "experiments.discover",
         "--config", "configs/latentclr_sprites.py:smoke",
         f"--config.workdir={workdir}", f"--config.decoder.workdir={decoders / 'vae'}",
         f"--config.compare.ae_workdir={decoders / 'ae'}",
         "--config.directions.features=decoder:Dense_0", "--config.eval.oracle_pool=2", *extra]
  out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  return out


def test_discover_one_method_writes_grid_and_scores(decoders, tmp_path):
  # read by the factor-classifier oracle (a few steps: the path, not its accuracy)
  _run(decoders, tmp_path, "--config.directions.method=noiseclr",
       "--config.directions.kind=expm", "--config.eval.oracle=classifier",
       "--config.eval.oracle_steps=5", "--config.eval.protocol=reference")
  assert (tmp_path / "directions.png").stat().st_size > 0
  from lsx import viz  # each row names its direction and the factor it moves most
  grid = viz.read_labels(str(tmp_path / "directions.png"))
  rows = grid["axes"][0]["rows"]
  num = len(json.load(open(tmp_path / "scores.json"))["rows"]["noiseclr"]["members"][0]["R"])
  assert len(rows) == num and all(r.startswith(f"direction {k}: ") for k, r in enumerate(rows))
  assert all(r.split(": ")[1].split(" (")[0] in ("scale", "orientation", "x", "y",
                                                 "moves no factor") for r in rows)
  assert grid["title"].startswith("noiseclr directions")
  res = json.load(open(tmp_path / "scores.json"))
  assert res["oracle_info"]["kind"] == "classifier" and set(res["oracle_info"]["accuracy"]) == {
      "shape", "scale", "orientation", "x", "y"}
  members = res["rows"]["noiseclr"]["members"]
  assert list(res["rows"]) == ["noiseclr"] and len(members) == 2  # two seeds
  for row in members:
    assert 0.0 <= row["disentanglement"] <= 1.0 and 0.0 <= row["vp"] <= 1.0
    # the papers' protocols (eval.protocol='reference'): VP from z ~ N(0, I) along full
    # paths, the manipulation table per ordinal factor
    assert 0.0 <= row["ref_vp"] <= 1.0 and row["ref_change"] > 0 and row["ref_scale"] == 1.0
    assert set(row["manipulation"]) == {"scale", "orientation", "x", "y"}
  # trained through lsx.train: a sweep workdir whose members are the seeds
  from lsx import train as lt
  setup, state = lt.load_run(str(tmp_path))
  assert np.asarray(state.params["directions"]["S"]).shape == (2, 4, 4)  # U = expm(S - S^T)
  assert setup.objective.name == "noiseclr" and (tmp_path / "sweep.csv").exists()


def test_discover_compare_covers_every_method_and_reference(decoders, tmp_path):
  out = _run(decoders, tmp_path, "--compare")
  rows = list(csv.DictReader(open(tmp_path / "scores.csv")))
  names = [r["row"] for r in rows]
  assert names == ["latentclr", "noiseclr", "voynov", "pca", "ganspace", "sefa", "jacobian",
                   "latent axes (decoder)", "random", "factor directions (supervised)",
                   "latent axes (plain AE)"]
  for r in rows:
    for key in ("disentanglement_mean", "completeness_mean", "direction_mig_mean", "vp_mean"):
      assert 0.0 <= float(r[key]) <= 1.0 + 1e-6, (r["row"], key)
  assert (tmp_path / "scores.png").stat().st_size > 0
  assert "latentclr" in out.stderr
  # the saved raw readings re-score to the table: members x K x anchors x (2S+1) x factors
  from lsx import data, metrics as lm
  readings = np.load(tmp_path / "readings.npz")
  ds = data.get_dataset("sprites")
  for r in rows:
    f = readings[f"{r['row']}/factors"]
    assert f.ndim == 5 and f.shape[2:] == (2, 3, 5), (r["row"], f.shape)
    if r["row"] == "factor directions (supervised)":  # one per ordinal factor
      assert f.shape[:2] == (1, 4)
    a = readings[f"{r['row']}/anisotropy"]
    assert a.shape == f.shape[:-1]
    d = [lm.dataset_dfa(ds, m, np.arange(-1, 2), anisotropy=am)["disentanglement"]
         for m, am in zip(f, a)]
    assert np.mean(d) == pytest.approx(float(r["disentanglement_mean"]), abs=1e-4), r["row"]


def test_discover_unknown_method_fails_before_training(decoders, tmp_path):
  cmd = [sys.executable, "-m", "experiments.discover", "--config",
         "configs/latentclr_sprites.py:smoke", f"--config.workdir={tmp_path}",
         f"--config.decoder.workdir={decoders / 'vae'}", "--config.directions.method=gansapce"]
  out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
  assert out.returncode != 0 and "Unknown direction method 'gansapce'" in out.stderr


def test_discover_unknown_oracle_fails_before_loading(tmp_path):
  cmd = [sys.executable, "-m", "experiments.discover", "--config",
         "configs/latentclr_sprites.py:smoke", f"--config.workdir={tmp_path}",
         f"--config.decoder.workdir={tmp_path / 'missing'}", "--config.eval.oracle=nearest"]
  out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
  assert out.returncode != 0 and "Unknown oracle 'nearest'" in out.stderr


def test_probe_objective_directions(decoders, tmp_path):
  # the objective at the supervised factor directions, then trained from them and from a
  # random start: four rows with the objective's value and DFA scores
  import json
  cmd = [sys.executable, "-m", "experiments.probe_objective",
         "--config", "configs/latentclr_sprites.py:smoke", f"--config.workdir={tmp_path}",
         f"--config.decoder.workdir={decoders / 'vae'}",
         "--config.directions.features=decoder:Dense_0",
         "--config.eval.oracle_pool=2", "--steps=2", "--eval_batches=1"]
  out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  res = json.load(open(tmp_path / "probe_objective.json"))
  assert list(res["rows"]) == ["factor directions", "random", "latentclr from factor directions",
                               "latentclr from random"]
  for name, r in res["rows"].items():
    assert np.isfinite(r["objective"]) and 0.0 <= r["disentanglement"] <= 1.0, name
    assert np.asarray(r["directions"]).shape == (4, 4)  # one per ordinal factor, d = 4
  start, trained = (np.asarray(res["rows"][n]["directions"]) for n in
                    ("factor directions", "latentclr from factor directions"))
  assert not np.allclose(start, trained)  # it trained
  bad = subprocess.run(cmd[:-2] + ["--config.directions.method=pca"], capture_output=True, text=True,
                       timeout=600)
  assert bad.returncode != 0 and "contrastive method" in bad.stderr
