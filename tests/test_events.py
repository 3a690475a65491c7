"""TensorBoard event files (lsx.train.events), read back through the real viewer: a
`tensorboard` server on localhost serves a tiny run's scalars, images and a sweep's
hparams, which must equal metrics.jsonl, the workdir's figures and the swept values."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import tiny_config
from lsx import commands, runs
from lsx.train import events

pytest.importorskip("tensorboardX")
pytest.importorskip("tensorboard")
QUIET = dict(print_fn=lambda s: None)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  root = tmp_path_factory.mktemp("events")
  run = str(root / "run")
  runs.train(tiny_config(), run, **QUIET)
  c = tiny_config(**{"train.steps": 4})
  with c.unlocked():
    c.sweep.seed, c.sweep.hp = (0, 1), {"beta": (1.0, 4.0)}
  sweep = str(root / "sweep")
  runs.train(c, sweep, **QUIET)
  return run, sweep


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


class Viewer:
  """A tensorboard server on `logdir`, stopped on exit."""

  def __init__(self, logdir):
    self.port = _free_port()
    self.proc = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--port",
         str(self.port), "--host", "localhost", "--reload_interval", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

  def get(self, path, body=None):
    url = f"http://localhost:{self.port}{path}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data,
                                 headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=10) as r:
      return json.loads(r.read())

  def wait(self, path, ready, timeout=90):
    end, last = time.time() + timeout, None
    while time.time() < end:
      assert self.proc.poll() is None, self.proc.stderr.read().decode()[-2000:]
      try:
        last = self.get(path)
        if ready(last):
          return last
      except OSError:
        pass
      time.sleep(0.5)
    raise AssertionError(f"the viewer did not serve {path}: {last}")

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.proc.terminate()
    self.proc.wait(timeout=30)


def _metrics(workdir):
  return [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]


def test_the_viewer_serves_a_runs_scalars_and_figures(trained):
  run, _ = trained
  rows = _metrics(run)
  with Viewer(os.path.join(run, "tb")) as tb:
    tags = tb.wait("/data/plugin/scalars/tags", lambda t: "." in t and "loss" in t["."])
    assert set(tags["."]) == set(rows[0]) - {"step"}
    for key in ("loss", "kl"):
      got = tb.get(f"/data/plugin/scalars/scalars?tag={key}&run=.")
      assert [int(s) for _, s, _ in got] == [r["step"] for r in rows]
      assert [v for _, _, v in got] == pytest.approx([r[key] for r in rows], rel=1e-6)
    images = tb.wait("/data/plugin/images/tags", lambda t: "." in t)
    pngs = {os.path.splitext(f)[0] for f in os.listdir(run) if f.endswith(".png")}
    assert set(images["."]) == pngs == {"reconstructions", "traversals"}
    text = tb.get("/data/plugin/text/tags")
    assert text["."] == ["config/text_summary"]  # tensorboardX's tag for add_text


def test_a_sweep_is_one_run_per_member_with_its_hparams(trained):
  _, sweep = trained
  rows = _metrics(sweep)
  names = ["0 beta=1 seed=0", "1 beta=1 seed=1", "2 beta=4 seed=0", "3 beta=4 seed=1"]
  assert sorted(os.listdir(os.path.join(sweep, "tb"))) == names
  with Viewer(os.path.join(sweep, "tb")) as tb:
    tb.wait("/data/plugin/scalars/tags", lambda t: set(names) <= set(t))
    for i, name in enumerate(names):
      got = tb.get(f"/data/plugin/scalars/scalars?tag=loss&run={urllib.parse.quote(name)}")
      assert [v for _, _, v in got] == pytest.approx([r["loss"][i] for r in rows], rel=1e-6)
    groups = tb.get("/data/plugin/hparams/session_groups", {
        "experimentName": "", "startIndex": 0, "sliceSize": 100,
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS"]})["sessionGroups"]
    by_name = {g["name"]: g for g in groups}
    assert sorted(by_name) == names
    assert by_name["3 beta=4 seed=1"]["hparams"] == {"beta": 4.0, "seed": 1.0}
    final = {m["name"]["tag"]: m["value"] for m in by_name["2 beta=4 seed=0"]["metricValues"]}
    assert final["final/loss"] == pytest.approx(rows[-1]["loss"][2], rel=1e-6)


def test_rebuild_writes_an_existing_runs_events_again(trained, tmp_path, capsys):
  import shutil
  from tensorboard.backend.event_processing import event_accumulator as ea
  run = str(tmp_path / "copy")
  shutil.copytree(trained[0], run)
  shutil.rmtree(os.path.join(run, "tb"))
  assert commands.main(["tensorboard", run]) == 0
  assert "tensorboard --logdir" in capsys.readouterr().out
  acc = ea.EventAccumulator(os.path.join(run, "tb"), size_guidance={"images": 0})
  acc.Reload()
  assert [e.value for e in acc.Scalars("loss")] == pytest.approx(
      [r["loss"] for r in _metrics(run)], rel=1e-6)
  assert commands.main(["tensorboard", str(tmp_path / "nope")]) == 2
  assert "no config.json" in capsys.readouterr().err


def test_a_resumed_run_purges_the_events_past_its_checkpoint(tmp_path):
  from tensorboard.backend.event_processing import event_accumulator as ea
  wd = str(tmp_path / "r")
  runs.train(tiny_config(), wd, stop_after_chunks=3, **QUIET)  # steps 2, 4, 6; checkpoint 4
  runs.train(tiny_config(), wd, **QUIET)  # resumes from 4: its 6 and 8 replace the old 6
  acc = ea.EventAccumulator(os.path.join(wd, "tb"), purge_orphaned_data=True)
  acc.Reload()
  got = [(e.step, e.value) for e in acc.Scalars("loss")]
  want = [(r["step"], r["loss"]) for r in _metrics(wd)]
  assert [s for s, _ in got] == [s for s, _ in want] == [2, 4, 6, 8]
  assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6)


def test_without_tensorboardx_the_run_says_once_how_to_turn_events_on(monkeypatch, tmp_path):
  said = []
  monkeypatch.setattr(events, "available", lambda: False)
  monkeypatch.setattr(events, "_told", [False])
  runs.train(tiny_config(**{"train.steps": 2}), str(tmp_path / "a"), print_fn=said.append)
  runs.train(tiny_config(**{"train.steps": 2}), str(tmp_path / "b"), print_fn=said.append)
  assert sum(events.INSTALL in s for s in said) == 1
  assert not os.path.exists(tmp_path / "a" / "tb")
  assert os.path.exists(tmp_path / "a" / "metrics.jsonl")


# --- figures that explain themselves (lsx.viz.labelled): labels read back from the PNGs

def test_every_figure_a_run_and_a_sweep_write_is_labelled(trained):
  from lsx import viz
  run, sweep = trained
  pngs = [os.path.join(d, f) for d in (run, sweep) for f in sorted(os.listdir(d))
          if f.endswith(".png")]
  assert {os.path.basename(p) for p in pngs} >= {"traversals.png", "reconstructions.png",
                                                  "sweep.png"}
  for p in pngs:
    labels = viz.read_labels(p)
    assert labels and labels["axes"], f"{p} carries no labels"
    for ax in labels["axes"]:
      assert ax["title"] or ax["xlabel"] or ax["ylabel"] or labels["title"], (p, ax)
  trav = viz.read_labels(os.path.join(run, "traversals.png"))
  rows = trav["axes"][0]["rows"]
  kl = [float(r.split("KL ")[1].split()[0]) for r in rows]
  assert [r.split()[0] for r in rows] and sorted(kl, reverse=True) == kl  # by KL, z<j> named
  assert sorted(r.split()[0] for r in rows) == [f"z{j}" for j in range(4)]
  cols = trav["axes"][0]["columns"]
  assert len(cols) == 27 and cols[4] == "0" and cols[0] == "-3.0σ"
  assert trav["axes"][0]["texts"] == ["anchor 1", "anchor 2", "anchor 3"]
  rec = viz.read_labels(os.path.join(run, "reconstructions.png"))["axes"][0]
  assert rec["rows"] == ["data", "reconstruction"] and len(rec["columns"]) == 8
  assert "error" in rec["xlabel"]
  sw = viz.read_labels(os.path.join(sweep, "sweep.png"))["axes"]
  assert {a["xlabel"] for a in sw} == {"hp.beta"} and {a["ylabel"] for a in sw} >= {"loss"}
  from PIL import Image
  with Image.open(os.path.join(run, "traversals.gif")) as gif:
    assert gif.n_frames == 2 * 9 - 2  # forth and back over the 9 steps


def test_direction_rows_name_the_factor_each_moves_and_counts_must_match(tmp_path):
  import numpy as np
  from lsx import data, viz
  from lsx.traversal_eval import direction_labels
  ds = data.Sprites(size=32)
  names = [n for n, o in zip(ds.factor_names, __import__("lsx").metrics.ordinal_mask(ds)) if o]
  r = np.zeros((3, len(names)))
  r[0, 1], r[1, 0], r[1, 2] = 1.0, 0.3, 0.9  # direction 2 moves nothing
  labels = direction_labels({"R": r}, ds)
  assert labels == [f"direction 0: {names[1]} (100%)", f"direction 1: {names[2]} (75%)",
                    "direction 2: moves no factor"]
  frames = np.random.default_rng(0).uniform(size=(3, 2, 5, 8, 8, 1))
  path = viz.save_traversal_grid(frames, str(tmp_path / "d.png"), row_labels=labels,
                                 title="t")
  got = viz.read_labels(path)
  assert got["axes"][0]["rows"] == labels and got["title"] == "t"
  assert got["axes"][0]["columns"] == ["-2", "-1", "0", "1", "2"] * 2
  assert os.path.exists(tmp_path / "d.gif")
  with pytest.raises(ValueError, match="need 3 row labels"):
    viz.save_traversal_grid(frames, str(tmp_path / "e.png"), row_labels=labels[:2])
