"""The fully connected layer, :math:`y = x W + b`, as a pure function ``dense(params, x)``.

Parameters are named as in Flax (``kernel`` ``(in, out)``, ``bias``).
"""

from __future__ import annotations

import functools
import math
from typing import Mapping

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

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
  if _wide_grad_pays(x, kernel):
    y = _matmul_wide(x.reshape(-1, x.shape[-1]), kernel).reshape(*x.shape[:-1], kernel.shape[-1])
  else:
    y = jnp.matmul(x, kernel)
  return y if bias is None else y + bias


def _wide_grad_pays(x, kernel) -> bool:
  """Whether :func:`_matmul_wide` is the faster way to this layer's kernel gradient.

  On the CPU, in float32 (other dtypes keep the plain path), for inputs at least
  8 times wider than the batch, e.g. the CNN's ``Dense(10)`` on 21632 flattened
  features at batch 64 (its Adam train step: 1.14x with this, CPU time on one
  core; the seed MLP's layers, 784 and 128 features at batch 128, keep the
  plain path).
  """
  rows = math.prod(x.shape[:-1])
  return (
    x.ndim >= 2
    and rows >= 1
    and x.shape[-1] >= 8 * rows
    and x.dtype == jnp.float32
    and kernel.dtype == jnp.float32
    and jax.default_backend() == "cpu"
  )


@jax.custom_jvp
def _matmul_wide(x, kernel):
  """``x @ kernel`` for 2-D ``x``, with the kernel gradient computed as ``(g^T x)^T``.

  Plain autodiff gives the kernel gradient as ``x^T g``, an ``(in, out)``
  product that XLA CPU computes slowly when ``in`` is large and ``out`` small;
  ``g^T x`` (``(out, in)``, then transposed) holds the same sums (float32
  rounding aside) and runs faster. The optimization barrier keeps XLA from
  folding the transpose back into the product.
  """
  return x @ kernel


@functools.partial(_matmul_wide.defjvp, symbolic_zeros=True)
def _matmul_wide_jvp(primals, tangents):
  x, kernel = primals
  dx, dkernel = tangents
  y = x @ kernel
  dy = None
  if not isinstance(dkernel, SymbolicZero):
    # Reverse mode reads this backwards: the product g^T x, then the barrier, then the transpose.
    dy = (jax.lax.optimization_barrier(dkernel.T) @ x.T).T
  if not isinstance(dx, SymbolicZero):
    dy = dx @ kernel if dy is None else dy + dx @ kernel
  return y, jnp.zeros_like(y) if dy is None else dy
