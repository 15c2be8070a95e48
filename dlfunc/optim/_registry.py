"""Optimizers by name: the one registry behind ``get_optimizer``, ``TrainConfig`` and ``dlfunc train --optimizer``.

``OPTIMIZERS`` maps a name to ``make(learning_rate, **kwargs) -> GradientTransformation``;
``register_optimizer`` adds one, and every user of names (the library's
:func:`get_optimizer`, :func:`dlfunc.transfer.finetune_optimizer`,
:class:`dlfunc.train.TrainConfig`, the CLI's ``--optimizer``) sees it.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from dlfunc.optim._alias import adam, adamw, rmsprop, sgd
from dlfunc.optim._base import GradientTransformation, ScalarOrSchedule

#: Registry: optimizer name -> ``make(learning_rate, **kwargs) -> GradientTransformation``.
#: ``momentum`` is ``sgd`` with ``momentum=0.9`` unless the caller passes another value.
OPTIMIZERS: dict[str, Callable[..., GradientTransformation]] = {
  "sgd": sgd,
  "momentum": functools.partial(sgd, momentum=0.9),
  "rmsprop": rmsprop,
  "adam": adam,
  "adamw": adamw,
}
#: The built-in names, in the order above (registered ones are in :data:`OPTIMIZERS`).
OPTIMIZER_NAMES = tuple(OPTIMIZERS)


def register_optimizer(name: str, make: Callable[..., GradientTransformation], *, overwrite: bool = False) -> None:
  """Adds ``make(learning_rate, **kwargs) -> GradientTransformation`` under ``name``.

  The name then works in :func:`get_optimizer`, ``TrainConfig(optimizer=name)``
  and ``dlfunc train --optimizer name``. Example::

    register_optimizer("nesterov", functools.partial(dlfunc.optim.sgd, momentum=0.9, nesterov=True))
  """
  if name in OPTIMIZERS and not overwrite:
    raise ValueError(f"optimizer {name!r} is already registered; pass overwrite=True to replace it.")
  OPTIMIZERS[name] = make


def get_optimizer(name: str, learning_rate: ScalarOrSchedule, **kwargs: Any) -> GradientTransformation:
  """Build an optimizer by name, e.g. for a command line: ``get_optimizer("adam", 1e-3)``.

  Names (:data:`OPTIMIZERS`): ``sgd``, ``momentum`` (``sgd`` with
  ``momentum=0.9`` unless given), ``rmsprop``, ``adam``, ``adamw``, and any added
  by :func:`register_optimizer`; case does not matter. Extra keyword arguments
  go to the optimizer.
  """
  key = name if name in OPTIMIZERS else str(name).lower()
  if key not in OPTIMIZERS:
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}.")
  return OPTIMIZERS[key](learning_rate, **kwargs)
