"""The fully connected layer, :math:`y = x W + b`, as a pure function ``dense(params, x)``.

Parameters are named as in Flax (``kernel`` ``(in, out)``, ``bias``).
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

Array = jax.Array


def dense(params: Mapping[str, Array], x: Array, *, dtype=None) -> Array:
  r"""Fully connected layer, :math:`y = x W + b`.

  Args:
    params: ``{"kernel": (in, out), "bias": (out,)}``; ``bias`` may be absent.
    x: ``(..., in)``.
    dtype: the compute dtype, e.g. ``jnp.bfloat16``: ``x``, ``kernel`` and ``bias``
      are cast to it first, so float32 parameters serve a bfloat16 matmul (mixed
      precision; the gradient reaches the parameters in float32). ``None``: the
      promoted type of ``x`` and ``kernel``, as ``jnp.matmul`` gives.

  Returns:
    ``(..., out)``.

  Warning:
    PyTorch's ``nn.Linear.weight`` is ``(out, in)``: transpose it to get ``kernel``.

  Example:
    >>> p = {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)}
    >>> dense(p, jnp.ones((4, 3))).shape
    (4, 2)
  """
  kernel = jnp.asarray(params["kernel"])
  x = jnp.asarray(x)
  if kernel.ndim != 2:
    raise ValueError(f"dense: the kernel must be (in, out), got shape {tuple(kernel.shape)}.")
  if x.ndim < 1 or x.shape[-1] != kernel.shape[0]:
    raise ValueError(
      f"dense: expected input (..., {kernel.shape[0]}) for kernel shape {tuple(kernel.shape)}, "
      f"got input shape {tuple(x.shape)}; flatten or reshape the input, or build the layer for this size."
    )
  bias = params.get("bias")
  if dtype is not None:
    x, kernel = x.astype(dtype), kernel.astype(dtype)
    bias = None if bias is None else jnp.asarray(bias).astype(dtype)
  y = jnp.matmul(x, kernel)
  return y if bias is None else y + bias
