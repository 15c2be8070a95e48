"""dlfunc.train: the train state, jit-compiled steps, ``fit``, checkpoints, data parallelism.

``train_step(state, (x, y)) -> (state, metrics)`` is one jit-compiled pure function
with the state's buffers donated; ``fit`` is the Python loop around it.
"""

from dlfunc.train._checkpoint import Checkpointer, tree_checksum
from dlfunc.train._distributed import initialize as initialize_distributed, is_main_process
from dlfunc.train._experiment import (
  MODELS,
  OPTIMIZERS,
  ModelSpec,
  TrainConfig,
  evaluate_workdir,
  register_model,
  register_optimizer,
  train_and_evaluate,
  write_figures,
)
from dlfunc.train._fit import EarlyStopping, TrainingDiverged, fit, train_epoch
from dlfunc.train._plot import (
  autoencoder_figures,
  plot_history,
  plot_latent,
  plot_reconstructions,
  plot_score_histogram,
)
from dlfunc.train._sharding import DataParallel, data_parallel
from dlfunc.train._state import TrainState, create_train_state, default_loss, eval_step, evaluate, train_step

__all__ = [
  "TrainState",
  "create_train_state",
  "train_step",
  "eval_step",
  "evaluate",
  "default_loss",
  "fit",
  "EarlyStopping",
  "TrainingDiverged",
  "train_epoch",
  "Checkpointer",
  "tree_checksum",
  "plot_history",
  "DataParallel",
  "data_parallel",
  "MODELS",
  "OPTIMIZERS",
  "ModelSpec",
  "TrainConfig",
  "register_model",
  "register_optimizer",
  "train_and_evaluate",
  "evaluate_workdir",
  "initialize_distributed",
  "is_main_process",
  "write_figures",
  "autoencoder_figures",
  "plot_latent",
  "plot_reconstructions",
  "plot_score_histogram",
]
