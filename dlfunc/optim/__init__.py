"""Optimizers as optax ``GradientTransformation`` s, built from small chained transforms.

``sgd``, ``rmsprop``, ``adam`` and ``adamw`` take the same arguments and
defaults as optax's functions of the same name, and are chains of dlfunc's own
transforms (``scale_by_adam``, ``scale_by_rms``, ``trace``, ``add_decayed_weights``,
``scale_by_learning_rate``). ``freeze`` / ``partition`` / ``labels_by_path``
freeze parameters and give groups their own learning rates for transfer learning.

Example::

  tx = dlfunc.optim.adam(1e-3)
  state = tx.init(params)
  updates, state = tx.update(grads, state, params)
  params = dlfunc.optim.apply_updates(params, updates)
"""

from dlfunc.optim._alias import adam, adamw, rmsprop, sgd
from dlfunc.optim._base import EmptyState, apply_updates, chain, identity, safe_increment, set_to_zero
from dlfunc.optim._freeze import (
  MaskedNode,
  MaskedState,
  PartitionState,
  freeze,
  labels_by_path,
  mask_by_path,
  masked,
  partition,
  paths,
)
from dlfunc.optim._registry import OPTIMIZER_NAMES, OPTIMIZERS, get_optimizer, register_optimizer
from dlfunc.optim._transforms import (
  AddDecayedWeightsState,
  ScaleByAdamState,
  ScaleByRmsState,
  ScaleByScheduleState,
  ScaleByStddevState,
  TraceState,
  add_decayed_weights,
  scale,
  scale_by_adam,
  scale_by_learning_rate,
  scale_by_rms,
  scale_by_stddev,
  trace,
)

__all__ = [
  "adam",
  "adamw",
  "rmsprop",
  "sgd",
  "OPTIMIZERS",
  "OPTIMIZER_NAMES",
  "get_optimizer",
  "register_optimizer",
  "EmptyState",
  "apply_updates",
  "chain",
  "identity",
  "safe_increment",
  "set_to_zero",
  "MaskedNode",
  "MaskedState",
  "PartitionState",
  "freeze",
  "labels_by_path",
  "mask_by_path",
  "masked",
  "partition",
  "paths",
  "AddDecayedWeightsState",
  "ScaleByAdamState",
  "ScaleByRmsState",
  "ScaleByScheduleState",
  "ScaleByStddevState",
  "TraceState",
  "add_decayed_weights",
  "scale",
  "scale_by_adam",
  "scale_by_learning_rate",
  "scale_by_rms",
  "scale_by_stddev",
  "trace",
]
