"""Training: the one runner every family trains through.

`train(config, workdir)` builds the run's `Setup` for `config.family` (`FAMILIES`:
'autoencoder', 'directions', 'flows'), then runs scanned chunks of the pure step with
orbax checkpoints and exact resume, a non-finite guard, metrics.jsonl and progress, as
one run or a sweep (`lsx.train.sweep`) under any strategy.
"""
from lsx.records import (WorkdirError, WorkdirState, config_from_json, config_to_json,
                         inspect_workdir, read_metrics, write_config)
from lsx.train import sweep
from lsx.train.loop import (FAMILIES, NonFiniteError, Setup, build, check_train,
                            ensure_trained, extract_member, load_run, make_run_optimizer,
                            resolve_hp, train, write_run_figures)
from lsx.train.state import (GroupOptimizer, TrainState, make_optimizer, make_train_chunk,
                             make_train_step, objective_optimizer)

__all__ = ["TrainState", "make_optimizer", "make_train_step", "make_train_chunk", "Setup",
           "build", "train", "resolve_hp", "NonFiniteError", "write_run_figures", "load_run",
           "config_from_json", "config_to_json", "write_config", "extract_member", "sweep",
           "FAMILIES", "check_train", "read_metrics", "ensure_trained", "make_run_optimizer",
           "GroupOptimizer", "objective_optimizer", "inspect_workdir", "WorkdirState",
           "WorkdirError"]
