"""A workdir's records (lsx.records): one atomic write, and the inspector every run starts
from — each state it refuses named, with nothing in the workdir changed."""
import json
import os

import pytest
from conftest import tiny_config

from lsx import records
from lsx import train as lt
from lsx.train import checkpoint as ckpt

QUIET = lambda s: None


def _snapshot(root) -> dict:
  """{relative path: bytes} of every file under root (directories by name)."""
  out = {}
  for r, dirs, files in os.walk(root):
    for d in dirs:
      out[os.path.relpath(os.path.join(r, d), root) + "/"] = b""
    for f in files:
      p = os.path.join(r, f)
      out[os.path.relpath(p, root)] = open(p, "rb").read()
  return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A finished tiny run (steps 4 and 8 checkpointed): copied by the tests that alter it."""
  wd = str(tmp_path_factory.mktemp("trained"))
  lt.train(tiny_config(), wd, write_figures=False, print_fn=QUIET)
  return wd


def _copy(src, dst):
  import shutil
  shutil.copytree(src, dst)
  return str(dst)


def test_atomic_write_replaces_whole_and_leaves_no_temporary(tmp_path):
  p = str(tmp_path / "a.json")
  records.write_json(p, {"x": 1})
  records.write_json(p, [1, 2])
  assert json.load(open(p)) == [1, 2] and os.listdir(tmp_path) == ["a.json"]
  records.atomic_write(p, b"\x00\x01")
  assert open(p, "rb").read() == b"\x00\x01"


def test_inspect_reads_what_a_run_holds(trained):
  st = records.inspect_workdir(trained)
  assert st.exists and st.trained and st.checkpoint_steps == (4, 8)
  assert st.unverified_steps == () and st.latest_step == 8 and st.total_steps == 8
  assert st.family == "autoencoder" and st.metric_rows == 4 and st.last_metric_step == 8
  assert st.failed == {}
  fresh = records.inspect_workdir(os.path.join(trained, "nope"))
  assert not fresh.exists and fresh.config is None and not fresh.trained


@pytest.mark.parametrize("what, make, match", [
    ("checkpoints is a file", lambda wd: open(os.path.join(wd, "checkpoints"), "w").close(),
     r"checkpoints is a file where the run's checkpoints directory belongs"),
    ("config.json a list", lambda wd: open(os.path.join(wd, "config.json"), "w").write("[1]"),
     r"config.json holds a JSON list, not the config object"),
    ("config.json a directory", lambda wd: os.mkdir(os.path.join(wd, "config.json")),
     r"config.json is a directory where the run's config.json belongs"),
    ("metrics row a list", lambda wd: open(os.path.join(wd, "metrics.jsonl"), "w").write(
        '{"step": 2, "loss": 1.0}\n[3, 4]\n'), r"metrics.jsonl line 2 is not a metrics row"),
    ("metrics step a string", lambda wd: open(os.path.join(wd, "metrics.jsonl"), "w").write(
        '{"step": "two"}\n'), r"line 1 is not a metrics row"),
    ("nonfinite.json a list", lambda wd: open(os.path.join(wd, "nonfinite.json"), "w").write(
        "[0]"), r"nonfinite.json is not the \{member: step\} record"),
    ("nonfinite.json steps not numbers", lambda wd: open(
        os.path.join(wd, "nonfinite.json"), "w").write('{"0": "soon"}'),
     r"nonfinite.json is not the \{member: step\}"),
])
def test_a_workdir_of_the_wrong_shape_is_refused_before_anything_is_written(
    tmp_path, what, make, match):
  wd = str(tmp_path / "wd")
  os.makedirs(wd)
  make(wd)
  before = _snapshot(wd)
  with pytest.raises(records.WorkdirError, match=match):
    records.inspect_workdir(wd)
  with pytest.raises(records.WorkdirError, match=match):
    lt.train(tiny_config(), wd, print_fn=QUIET)
  assert _snapshot(wd) == before, what


def test_records_of_another_config_without_checkpoints_are_not_overwritten(trained, tmp_path):
  wd = _copy(trained, tmp_path / "wd")
  import shutil
  shutil.rmtree(os.path.join(wd, "checkpoints"))  # deleted to save space
  before = _snapshot(wd)
  with pytest.raises(records.WorkdirError, match=r"records of another run .*hp.beta.*"
                                                 r"a fresh run\s+would overwrite them"):
    lt.train(tiny_config(**{"hp.beta": 4.0}), wd, print_fn=QUIET)
  assert _snapshot(wd) == before
  # the same config may start again from step 0 (its records are its own)
  state, _ = lt.train(tiny_config(**{"train.steps": 2}), wd, write_figures=False,
                      print_fn=QUIET)
  assert int(state.step) == 2


def test_a_checkpoint_past_the_requested_steps_is_refused(trained, tmp_path):
  wd = _copy(trained, tmp_path / "wd")
  before = _snapshot(wd)
  with pytest.raises(records.WorkdirError, match=r"checkpoint at step 8, past train.steps=4"):
    lt.train(tiny_config(**{"train.steps": 4}), wd, print_fn=QUIET)
  assert _snapshot(wd) == before


def test_a_step_without_checksums_beside_steps_with_them_is_unverified(trained, tmp_path):
  wd = _copy(trained, tmp_path / "wd")
  os.remove(os.path.join(wd, "checkpoints", "8", "checksums.json"))
  assert records.inspect_workdir(wd).unverified_steps == (8,)
  with pytest.raises(ckpt.CorruptCheckpointError,
                     match=r"step 8\) is corrupt: it has no checksums.json while step 4 has one"
                           r".*--skip_corrupt_checkpoint"):
    lt.load_run(wd)


def test_checksums_left_pending_by_a_kill_are_moved_in_on_restore(trained, tmp_path):
  """A kill between orbax's save and the checksums' move leaves them pending beside
  checkpoints/: the restore completes the move and verifies the step."""
  wd = _copy(trained, tmp_path / "wd")
  src = os.path.join(wd, "checkpoints", "8", "checksums.json")
  os.replace(src, os.path.join(wd, ".checksums-8.pending"))
  _, state = lt.load_run(wd)
  assert int(state.step) == 8 and os.path.exists(src)
  assert not os.path.exists(os.path.join(wd, ".checksums-8.pending"))


def test_a_failed_extract_leaves_no_partial_output(tmp_path, monkeypatch):
  c = tiny_config(**{"train.steps": 2})
  with c.unlocked():
    c.sweep.seed = (0, 1)
  wd = str(tmp_path / "sweep")
  lt.train(c, wd, write_figures=False, print_fn=QUIET)
  out = str(tmp_path / "member")

  def boom(*a, **k):
    raise OSError("disk full")
  monkeypatch.setattr(ckpt, "save", boom)
  with pytest.raises(OSError, match="disk full"):
    lt.extract_member(wd, 1, out)
  assert not os.path.exists(out)
  assert [n for n in os.listdir(tmp_path) if "partial" in n] == []
  monkeypatch.undo()
  lt.extract_member(wd, 1, out)
  assert records.inspect_workdir(out).checkpoint_steps == (2,)


def test_downstream_commands_name_the_run_they_were_given(trained, tmp_path):
  """Each command reads the family and shape it needs from the inspector, before loading."""
  from lsx.runs import load_decoder
  from lsx.runs import evaluate_workdir
  wd = _copy(trained, tmp_path / "wd")
  cfg_path = os.path.join(wd, "config.json")
  cfg = json.load(open(cfg_path))
  cfg["family"] = "directions"
  records.write_json(cfg_path, cfg)
  before = _snapshot(wd)
  with pytest.raises(records.WorkdirError, match=r"holds a 'directions' run \(learned "
                                                 r"directions, .*\): experiments.evaluate reads "
                                                 r"an autoencoder or a relative"):
    evaluate_workdir(wd, metrics=("mig",), num_samples=20, num_test=20)
  with pytest.raises(records.WorkdirError, match=r"'directions' run .*reads an autoencoder"):
    load_decoder(wd)
  with pytest.raises(records.WorkdirError, match=r"single run, not a sweep: extract_member"):
    lt.extract_member(wd, 0, str(tmp_path / "out"))
  assert _snapshot(wd) == before and not os.path.exists(tmp_path / "out")
  # shapes of sweeps: a decoder must be one model, a comparison two or more
  cfg["family"], cfg["sweep"] = "autoencoder", {"mode": "product", "seed": [0, 1], "hp": {}}
  records.write_json(cfg_path, cfg)
  with pytest.raises(records.WorkdirError, match=r"holds a sweep; a decoder's directions reads "
                                                 r"a single run: extract one member"):
    load_decoder(wd)
  assert records.num_members(cfg) == 2
  assert records.num_members({"sweep": {"mode": "zip", "seed": [0, 1, 2],
                                        "hp": {"beta": [1, 2, 3]}}}) == 3
  assert records.num_members({"sweep": {"seed": [0, 1], "hp": {"beta": [1, 2, 3]}}}) == 6
  assert records.num_members({"sweep": {"seed": [], "hp": {}}}) == 1
  with pytest.raises(FileNotFoundError, match=r"nope does not exist, so it has no config.json"):
    records.require_run(str(tmp_path / "nope"), "x")


def test_failures_outside_the_input_are_one_line_with_cause_and_fix(tmp_path):
  """An interrupt, a full disk, out of memory and an unexpected exception through the
  experiments' runner (lsx.cli.run): one `error:` line each, no traceback on stderr."""
  import errno
  import subprocess
  import sys
  from lsx import cli
  assert "rerun the same command to resume" in cli.failure_line(KeyboardInterrupt())
  disk = cli.failure_line(OSError(errno.ENOSPC, "No space left on device", "/w/ckpt/10"))
  assert "no space left on the device writing /w/ckpt/10; free space and rerun" in disk
  oom = cli.failure_line(RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to "
                                      "allocate 12.50GiB."))
  assert oom.startswith("out of memory (the program needs 12.50GiB): lower train.batch_size")
  assert cli.failure_line(RuntimeError("something else")) is None
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  for raise_, code, match in (("KeyboardInterrupt()", 130, "error: interrupted; rerun"),
                              ("RuntimeError('boom')", 1, "error: RuntimeError: boom \\(an "
                                                          "unexpected failure; the full "
                                                          "traceback is in (\\S+);")):
    prog = (f"from lsx import cli\ndef main(argv):\n  raise {raise_}\ncli.run(main)\n")
    r = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, cwd=root,
                       timeout=120)
    assert r.returncode == code and "Traceback" not in r.stderr, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    import re
    m = re.search(match, lines[0])
    assert len(lines) == 1 and m, r.stderr
    if m.groups():  # the traceback file holds the full traceback
      path = m.group(1)
      assert "RuntimeError: boom" in open(path).read()
      os.remove(path)


def test_lsx_command_runs_table_and_dispatch(trained, tmp_path):
  """`lsx runs DIR`: one row per workdir from the inspector; `lsx <command>` runs the
  experiment script with the same flags and errors."""
  import subprocess
  import sys
  from lsx import commands
  root = tmp_path / "runs"
  done = _copy(trained, root / "done")
  stopped = _copy(trained, root / "group" / "stopped")
  import shutil
  shutil.rmtree(os.path.join(stopped, "checkpoints", "8"))
  os.makedirs(root / "not_a_run" / "x")
  # a run whose lock a live process (this one) holds
  running = _copy(trained, root / "live")
  records.write_json(os.path.join(running, ".lock"), {"pid": os.getpid(),
                                                       "host": __import__("socket").gethostname()})
  rows = {r["workdir"]: r for r in commands.runs_table(str(root))}
  assert set(rows) == {"done", os.path.join("group", "stopped"), "live"}
  assert rows["done"]["status"] == "finished" and rows["done"]["step"] == "8/8"
  assert rows["done"]["family"] == "autoencoder" and rows["done"]["members"] == 1
  assert float(rows["done"]["loss"]) == pytest.approx(lt.read_metrics(done)[-1]["loss"], rel=1e-3)
  assert rows[os.path.join("group", "stopped")]["status"] == "stopped"
  assert rows[os.path.join("group", "stopped")]["step"] == "4/8"
  assert rows["live"]["status"] == "running"
  table = commands.format_table(list(rows.values()))
  assert table.splitlines()[0].split()[:3] == ["workdir", "family", "step"]
  assert commands.main(["runs", str(tmp_path / "nope")]) == 2
  assert commands.main(["trian"]) == 2
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  r = subprocess.run([sys.executable, "-m", "lsx", "evaluate", "--workdir", str(tmp_path / "no")],
                     capture_output=True, text=True, cwd=repo, timeout=120)
  assert r.returncode == 2 and "no config.json" in r.stderr and "Traceback" not in r.stderr
  r = subprocess.run([sys.executable, "-m", "lsx", "runs", str(root), "--json"],
                     capture_output=True, text=True, cwd=repo, timeout=120)
  assert r.returncode == 0 and len(json.loads(r.stdout)) == 3
