"""Max and average pooling over the spatial axes of channels-last inputs ``(N, *spatial, C)``.

``strides`` defaults to ``window`` (as in Keras and PyTorch).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from dlfunc.nn._checks import Padding, check_nwc, ntuple, padding_pairs

Array = jax.Array


def _pool(x, init, op, window, strides, padding, n):
  window = ntuple(window, n, "window")
  strides = window if strides is None else ntuple(strides, n, "strides")
  pad = padding_pairs(padding, n)
  if not isinstance(pad, str):
    pad = [(0, 0)] + list(pad) + [(0, 0)]
  return jax.lax.reduce_window(x, init, op, (1, *window, 1), (1, *strides, 1), pad)


def max_pool(x: Array, window=2, strides=None, padding: Padding = "VALID") -> Array:
  """Max pooling over the spatial axes of a channels-last input ``(N, *spatial, C)``.

  ``strides`` defaults to ``window`` (as in Keras and PyTorch). Padded cells
  count as ``-inf``, so they never win.

  Warning:
    ``flax.linen.max_pool`` / ``avg_pool`` default to ``strides=1`` (overlapping
    windows); pass ``strides=window`` there to get the same result.

  Example:
    >>> max_pool(jnp.arange(16.0).reshape(1, 4, 4, 1))[0, :, :, 0]
    Array([[ 5.,  7.],
           [13., 15.]], dtype=float32)
  """
  x = jnp.asarray(x)
  n = x.ndim - 2
  if n < 1:
    raise ValueError(f"max_pool: expected (batch, *spatial, channels), got shape {tuple(x.shape)}.")
  # The init value must be a concrete numpy scalar, not a jnp array: under jit a
  # jnp constant is traced, and reduce_window then falls back to its generic,
  # non-differentiable form instead of reduce_window_max.
  if jnp.issubdtype(x.dtype, jnp.inexact):
    init = np.array(-np.inf, x.dtype)
  else:
    init = np.array(jnp.iinfo(x.dtype).min, x.dtype)
  return _pool(x, init, jax.lax.max, window, strides, padding, n)


def avg_pool(x: Array, window=2, strides=None, padding: Padding = "VALID", count_include_pad: bool = False) -> Array:
  """Average pooling over the spatial axes of a channels-last input.

  Args:
    count_include_pad: with padding, whether the padded zeros count in the
      denominator. ``False`` (default) matches Keras ``AveragePooling2D``;
      PyTorch's ``AvgPool2d`` and ``flax.linen.avg_pool`` default to ``True``.

  Example:
    >>> avg_pool(jnp.arange(16.0).reshape(1, 4, 4, 1))[0, :, :, 0]
    Array([[ 2.5,  4.5],
           [10.5, 12.5]], dtype=float32)
  """
  x = jnp.asarray(x)
  n = x.ndim - 2
  if n < 1:
    raise ValueError(f"avg_pool: expected (batch, *spatial, channels), got shape {tuple(x.shape)}.")
  if not jnp.issubdtype(x.dtype, jnp.inexact):
    x = x.astype(jnp.result_type(float))
  sums = _pool(x, np.zeros((), x.dtype), jax.lax.add, window, strides, padding, n)
  if count_include_pad or (isinstance(padding, str) and padding.upper() == "VALID"):
    return sums / float(math.prod(ntuple(window, n, "window")))
  ones = jnp.ones((1, *x.shape[1:-1], 1), x.dtype)
  counts = _pool(ones, np.zeros((), x.dtype), jax.lax.add, window, strides, padding, n)
  return sums / counts


def max_pool1d(x: Array, window: int = 2, strides: int | None = None, padding: Padding = "VALID") -> Array:
  """Max pooling over the length axis of ``(N, L, C)``; ``strides`` defaults to ``window``.

  Example:
    >>> max_pool1d(jnp.arange(6.0).reshape(1, 6, 1), 2)[0, :, 0]
    Array([1., 3., 5.], dtype=float32)
  """
  return max_pool(check_nwc("max_pool1d", x), window, strides, padding)


def avg_pool1d(
  x: Array, window: int = 2, strides: int | None = None, padding: Padding = "VALID", count_include_pad: bool = False
) -> Array:
  """Average pooling over the length axis of ``(N, L, C)``; ``strides`` defaults to ``window``.

  With padding, ``count_include_pad=False`` (default) matches Keras
  ``AveragePooling1D``; PyTorch's ``AvgPool1d`` defaults to ``True``.
  """
  return avg_pool(check_nwc("avg_pool1d", x), window, strides, padding, count_include_pad)
