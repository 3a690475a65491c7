"""Training: the engine every family's run goes through.

`lsx.train.loop.train` runs a built `Setup` (lsx.train.setup): scanned chunks of the pure
step with orbax checkpoints and exact resume, a non-finite guard, metrics.jsonl and
progress, as one run or a sweep (`lsx.train.sweep`) under any strategy. It knows no
family: `lsx.runs` holds the family table ('autoencoder', 'directions', 'flows', 'sae',
'relative_ae', 'relative_decoder', 'diffusion', 'h_directions') and builds a run's Setup
from its config.

The run API (`train(config, workdir)`, `build`, `load_run`, `ensure_trained`,
`extract_member`, `FAMILIES`) is re-exported here from `lsx.runs`, loaded on first use
(lsx.runs imports the families, which import this package's engine).
"""
from lsx.records import (WorkdirError, WorkdirState, config_from_json, config_to_json,
                         inspect_workdir, read_metrics, write_config)
from lsx.train import sweep
from lsx.train.loop import NonFiniteError
from lsx.train.setup import Setup, make_run_optimizer, resolve_hp
from lsx.train.state import (GroupOptimizer, TrainState, make_optimizer, make_train_chunk,
                             make_train_step, objective_optimizer)

_RUNS = ("build", "train", "load_run", "ensure_trained", "extract_member", "FAMILIES",
         "write_run_figures")

__all__ = ["TrainState", "make_optimizer", "make_train_step", "make_train_chunk", "Setup",
           "resolve_hp", "NonFiniteError", "config_from_json", "config_to_json",
           "write_config", "sweep", "read_metrics", "make_run_optimizer", "GroupOptimizer",
           "objective_optimizer", "inspect_workdir", "WorkdirState", "WorkdirError", *_RUNS]


def __getattr__(name):
  if name in _RUNS:
    if name == "write_run_figures":
      from lsx.models import family
      return family.write_run_figures
    from lsx import runs
    return getattr(runs, name)
  raise AttributeError(f"module 'lsx.train' has no attribute {name!r}")
