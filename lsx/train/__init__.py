"""Training: TrainState, pure steps, scanned chunks, the host loop, checkpoints."""
from lsx.train import sweep
from lsx.train.loop import (NonFiniteError, Setup, build, config_from_json, config_to_json,
                            extract_member, load_run, resolve_hp, train, write_config,
                            write_run_figures)
from lsx.train.state import TrainState, make_optimizer, make_train_chunk, make_train_step

__all__ = ["TrainState", "make_optimizer", "make_train_step", "make_train_chunk", "Setup",
           "build", "train", "resolve_hp", "NonFiniteError", "write_run_figures", "load_run",
           "config_from_json", "config_to_json", "write_config", "extract_member", "sweep"]
