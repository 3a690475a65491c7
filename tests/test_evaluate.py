"""experiments.evaluate on a trained run (single and sweep member) and the CLI."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import tiny_config
from lsx import train as lt
from lsx import runs
from lsx.metrics import suite

SMALL = dict(num_samples=400, num_test=200, intervention_train=40, intervention_eval=20,
             dci_estimator="logistic")


def test_evaluate_workdir_scores_every_metric(tmp_path):
  lt.train(tiny_config(), str(tmp_path), write_figures=False, print_fn=lambda s: None)
  res = runs.evaluate_workdir(str(tmp_path), log=lambda s: None, **SMALL)
  saved = json.load(open(tmp_path / "metrics.json"))
  for key in ("infom", "infoc", "infoe", "mig", "dci_disentanglement", "dci_completeness",
              "sap", "factor_vae", "beta_vae"):
    assert np.isfinite(saved[key]) and 0.0 <= saved[key] <= 1.0 + 1e-6, key
  assert np.array(saved["nmi"]).shape == (5, 4)
  assert res["step"] == 8 and res["objective"] == "beta_vae"


def test_evaluate_cli_names_a_missing_workdir(tmp_path):
  out = subprocess.run([sys.executable, "-m", "experiments.evaluate", "--workdir",
                        str(tmp_path / "nope")], capture_output=True, text=True)
  assert out.returncode != 0 and "has no config.json" in out.stderr


def test_evaluate_a_sweep_adds_every_members_scores_to_sweep_csv(tmp_path):
  import csv
  c = tiny_config(**{"sweep_strategy": "map"})
  with c.unlocked():
    c.sweep.seed = (0, 1)
  lt.train(c, str(tmp_path), print_fn=lambda s: None)
  small = dict(SMALL, intervention_train=0, intervention_eval=0)
  res = runs.evaluate_workdir(str(tmp_path), metrics=("infomec", "mig"), log=lambda s: None,
                               **small)
  assert len(res["members"]) == 2 and res["members"][1]["seed"] == 1
  rows = list(csv.DictReader(open(tmp_path / "sweep.csv")))
  assert all(np.isfinite(float(r["infom"])) and "mig" in r for r in rows)
  assert rows[0]["infom"] != rows[1]["infom"]


def test_evaluating_a_sweep_with_a_diverged_member_keeps_the_healthy_ones(tmp_path):
  import csv
  c = tiny_config(**{"sweep_strategy": "map"})
  with c.unlocked():
    c.sweep.hp = {"lr": (1e-3, 1e30)}  # member 1 diverges at step 2
  lt.train(c, str(tmp_path), print_fn=lambda s: None)
  logged = []
  res = runs.evaluate_workdir(str(tmp_path), metrics=("mig",), log=logged.append,
                               **dict(SMALL, intervention_train=0, intervention_eval=0))
  assert np.isfinite(res["members"][0]["mig"]) and "diverged" in res["members"][1]["error"]
  assert any("member 1" in m and "not scored" in m for m in logged)
  rows = list(csv.DictReader(open(tmp_path / "sweep.csv")))
  assert rows[0]["mig"] and rows[1]["eval_error"].startswith("diverged")
  assert json.load(open(tmp_path / "metrics.json"))["members"][1]["error"]


def test_a_torn_config_json_is_named(tmp_path):
  lt.train(tiny_config(**{"train.steps": 2}), str(tmp_path), write_figures=False,
           print_fn=lambda s: None)
  text = (tmp_path / "config.json").read_text()
  (tmp_path / "config.json").write_text(text[:len(text) // 2])
  import pytest
  with pytest.raises(ValueError, match="config.json is not valid JSON"):
    runs.evaluate_workdir(str(tmp_path), log=lambda s: None, **SMALL)


def test_a_metric_that_fails_leaves_the_others_written(tmp_path, monkeypatch):
  wd = str(tmp_path)
  lt.train(tiny_config(**{"train.steps": 4}), wd, write_figures=False, print_fn=lambda s: None)

  def refuse(*a, **k):
    raise ValueError("DCI refused these codes")
  monkeypatch.setattr(suite, "dci", refuse)
  with pytest.raises(ValueError, match=r"dci could not be computed \(DCI refused these codes\); "
                                       r"the other metrics were written"):
    runs.evaluate_workdir(wd, metrics=("mig", "dci"), log=lambda s: None,
                           **dict(SMALL, intervention_train=0, intervention_eval=0))
  out = json.load(open(os.path.join(wd, "metrics.json")))
  assert np.isfinite(out["mig"]) and out["errors"] == {"dci": "DCI refused these codes"}


def test_members_scored_as_one_program_equal_members_scored_alone(tmp_path):
  import jax
  c = tiny_config(**{"sweep_strategy": "map", "train.steps": 4})
  with c.unlocked():
    c.sweep.seed = (0, 1)
  state, setup = lt.train(c, str(tmp_path), print_fn=lambda s: None, write_figures=False)
  model = setup.model
  reps = [lambda x, i=i: model.represent(jax.tree.map(lambda a: a[i], state.params), x)
          for i in range(2)]
  kw = dict(SMALL, metrics=("infomec", "mig", "dci"), log=lambda s: None)
  together = suite.evaluate_members(
      lambda x: jax.vmap(lambda p: model.represent(p, x))(state.params), setup.dataset,
      jax.random.key(0), reps, **kw)
  for i in range(2):
    alone = suite.evaluate(reps[i], setup.dataset, jax.random.key(0), **kw)
    for k in ("infom", "infoc", "infoe", "mig", "dci_disentanglement", "dci_completeness",
              "dci_informativeness_test"):
      assert together[i][k] == pytest.approx(alone[k], abs=2e-5), (i, k)
