import glob
import os

import pytest

from configs import common
from lsx import train as lt

CONFIGS = sorted(p for p in glob.glob(os.path.join(os.path.dirname(__file__), "..", "configs", "*.py"))
                 if os.path.basename(p) not in ("__init__.py", "common.py", "claims.py",
                                                "hspace_sprites.py", "hspace_scenes.py"))
# configs/claims.py and hspace_*.py configure experiments.claims and .hspace, not a run:
# tests/test_claims.py and tests/test_diffusion.py


def _load(path, arg=""):
  return common.load(f"{path}:{arg}" if arg else path)


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.basename(p) for p in CONFIGS])
def test_every_config_builds_without_compiling(path):
  cfg = _load(path)
  assert _load(path, "smoke").train.steps < cfg.train.steps
  assert set(cfg.hp) >= {"lr"} and "name" in cfg.optim and "seed" in cfg.sweep  # one schema
  if cfg.family == "directions":  # its method and directions build (the decoder is not trained)
    import jax
    from lsx.directions import family
    assert set(cfg.compare.methods) <= set(family.METHODS)
    assert set(cfg.hp) == {"lr", "weight_decay"} | set(family.method_hp(cfg.directions.method))
    dirs = ld_make(cfg)
    jax.eval_shape(dirs.init, jax.random.key(0))
    return
  if cfg.family == "flows" and cfg.flows.mode == "posthoc":  # needs a trained decoder
    import jax
    from lsx import flows
    f = cfg.flows
    flow = flows.make_flow(10, f.num_potentials, net=f.potential_net, speed=f.speed)
    speed = "c" if f.speed == "direct" else "log_c"
    assert jax.eval_shape(flow.init, jax.random.key(0))[speed].shape == (f.num_potentials,)
    assert f.codes in ("encoder", "prior") and f.classifier in flows.CLASSIFIERS
    return
  if cfg.family == "sae" and cfg.source.kind != "toy":  # activations that are not here
    with cfg.unlocked():
      cfg.source.workdir = cfg.source.paths = "/nonexistent/acts*"
    with pytest.raises(FileNotFoundError, match="holds no trained run|no activation shards"):
      lt.build(cfg)
    return
  setup = lt.build(cfg)  # autoencoders, joint flows, SAEs on toy data: data, model, objective
  state = setup.abstract_state()  # shapes only, nothing allocated
  assert state.step.shape == ()


def ld_make(cfg):
  from lsx import directions as ld
  return ld.make_directions(cfg.directions.kind, cfg.directions.num, 10,
                            hidden=int(cfg.directions.hidden) or None)


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
