"""Reshapes between layer families: :func:`flatten` (images to feature vectors)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def flatten(x: Array) -> Array:
  """``(N, ...) -> (N, prod(...))``, row-major (channels last, as Keras ``Flatten``).

  Warning:
    PyTorch flattens NCHW tensors, so the order of features differs from a
    torch model's; permute the next dense kernel when porting weights.

  Example:
    >>> flatten(jnp.ones((2, 5, 5, 3))).shape
    (2, 75)
  """
  x = jnp.asarray(x)
  if x.ndim < 1:
    raise ValueError("flatten: expected (batch, ...), got a scalar; there is no batch axis to keep.")
  return x.reshape((x.shape[0], -1))
