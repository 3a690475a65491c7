import glob
import os

import pytest

from configs import common
from lsx import train as lt

CONFIGS = sorted(p for p in glob.glob(os.path.join(os.path.dirname(__file__), "..", "configs", "*.py"))
                 if os.path.basename(p) not in ("__init__.py", "common.py"))


def _load(path, arg=""):
  return common.load(f"{path}:{arg}" if arg else path)


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.basename(p) for p in CONFIGS])
def test_every_config_builds_without_compiling(path):
  cfg = _load(path)
  if "method" in cfg:  # a direction-discovery config: its method and directions build
    import jax
    from experiments import discover
    from lsx import directions as ld
    assert cfg.method in discover.METHODS and set(cfg.compare.methods) <= set(discover.METHODS)
    dirs = ld.make_directions(cfg.directions.kind, cfg.directions.num, 10,
                              hidden=int(cfg.directions.hidden) or None)
    jax.eval_shape(dirs.init, jax.random.key(0))
    assert set(cfg.hp) >= {"lr"}
    assert _load(path, "smoke").train.steps < cfg.train.steps
    return
  if cfg.get("mode") == "joint":  # flows trained with a VAE: data, transforms, objective
    import jax
    from experiments import flows as fx
    ds, model, flow, init, *_ = fx.build_joint(cfg)
    jax.eval_shape(init)
    assert flow.num == len(cfg.transforms) and set(cfg.hp) >= {"lr", "beta"}
    assert _load(path, "smoke").train.steps < cfg.train.steps
    return
  if "vae_workdir" in cfg:  # a flows config: its pieces build, shapes only
    import jax
    from lsx import flows
    flow = flows.make_flow(10, cfg.num_potentials)
    shapes = jax.eval_shape(flow.init, jax.random.key(0))
    assert shapes["log_c"].shape == (cfg.num_potentials,)
    flows.make_flow_objective(flow, lambda z: z, (64, 64, 1), path_len=cfg.path_len,
                              laplacian_mode=cfg.laplacian)
    assert _load(path, "smoke").train.steps < cfg.train.steps
    return
  setup = lt.build(cfg)
  assert set(setup.hp) >= {"lr"}
  state = setup.abstract_state()  # shapes only, nothing allocated
  assert state.step.shape == ()


def test_smoke_arg_shrinks_and_unknown_arg_fails():
  path = [p for p in CONFIGS if p.endswith("betavae_sprites.py")][0]
  assert _load(path, "smoke").train.steps == 4
  with pytest.raises(ValueError, match="Unknown config argument 'big'"):
    _load(path, "big")


def test_config_reference_in_docs_is_current():
  import subprocess
  import sys
  root = os.path.join(os.path.dirname(__file__), "..")
  out = subprocess.run([sys.executable, os.path.join(root, "docs", "make_config_reference.py"),
                        "--check"], capture_output=True, text=True)
  assert out.returncode == 0, out.stdout + out.stderr
