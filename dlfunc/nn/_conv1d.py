"""1-D convolution and pooling over channels-last sequences ``(N, L, C)`` (NWC).

Thin, checked front-ends to :func:`dlfunc.nn.conv`, :func:`~dlfunc.nn.max_pool`
and :func:`~dlfunc.nn.avg_pool`, which handle any number of spatial axes.
"""
from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

from dlfunc.nn._layers import Padding, avg_pool, conv, max_pool

Array = jax.Array


def _nwc(name: str, x: Array) -> Array:
  x = jnp.asarray(x)
  if x.ndim != 3:
    raise ValueError(f"{name}: expected a rank-3 input (batch, length, channels), got shape {tuple(x.shape)}; "
                     f"for one channel use x[..., None].")
  return x


def conv1d(params: Mapping[str, Array], x: Array, *, strides: int = 1, padding: Padding = "VALID",
           dilation: int = 1, groups: int = 1) -> Array:
  r"""1-D convolution (cross-correlation), NWC input and WIO kernel.

  :math:`y[n, l, o] = b_o + \sum_{k, i} x[n, l s + k d, i]\, w[k, i, o]` (stride ``s``, dilation ``d``).

  Args:
    params: ``{"kernel": (k, in // groups, out), "bias": (out,)}`` (bias optional).
    x: ``(N, L, C)``.
    strides, dilation: ints (or 1-tuples).
    padding: ``'VALID'``, ``'SAME'``, an int (zeros on both ends) or ``[(low, high)]``.

  Returns:
    ``(N, L_out, out)`` with :math:`L_{out} = \lfloor (L + p_{lo} + p_{hi} - d(k-1) - 1) / s \rfloor + 1`.

  Warning:
    PyTorch ``nn.Conv1d`` is NCL with weight ``(out, in, k)``: use
    ``w.permute(2, 1, 0)`` for the kernel and ``x.transpose(0, 2, 1)`` for inputs.
    Keras ``Conv1D`` kernels are already ``(k, in, out)``.

  Example:
    >>> p = {"kernel": jnp.ones((3, 2, 4)), "bias": jnp.zeros(4)}
    >>> conv1d(p, jnp.ones((1, 10, 2)), padding=1).shape
    (1, 10, 4)
  """
  kernel = params["kernel"]
  if kernel.ndim != 3:
    raise ValueError(f"conv1d: the kernel must be (width, in, out), got shape {tuple(kernel.shape)}.")
  return conv(params, _nwc("conv1d", x), strides=strides, padding=padding, dilation=dilation, groups=groups)


def max_pool1d(x: Array, window: int = 2, strides: int | None = None, padding: Padding = "VALID") -> Array:
  """Max pooling over the length axis of ``(N, L, C)``; ``strides`` defaults to ``window``.

  Example:
    >>> max_pool1d(jnp.arange(6.0).reshape(1, 6, 1), 2)[0, :, 0]
    Array([1., 3., 5.], dtype=float32)
  """
  return max_pool(_nwc("max_pool1d", x), window, strides, padding)


def avg_pool1d(x: Array, window: int = 2, strides: int | None = None, padding: Padding = "VALID",
               count_include_pad: bool = False) -> Array:
  """Average pooling over the length axis of ``(N, L, C)``; ``strides`` defaults to ``window``.

  With padding, ``count_include_pad=False`` (default) matches Keras
  ``AveragePooling1D``; PyTorch's ``AvgPool1d`` defaults to ``True``.
  """
  return avg_pool(_nwc("avg_pool1d", x), window, strides, padding, count_include_pad)
