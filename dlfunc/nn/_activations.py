"""Activation functions: arrays in, arrays out.

Every function here is pure, works under ``jax.jit``, ``jax.grad`` and
``jax.vmap``, and stays finite (value and gradient) at inputs of magnitude 1e4.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

Array = jax.Array


def relu(x: Array) -> Array:
  r"""Rectified linear unit, :math:`\max(x, 0)`.

  The gradient at exactly 0 is 0 (as in ``jax.nn.relu``, PyTorch and Keras).

  Example:
    >>> import jax.numpy as jnp
    >>> relu(jnp.array([-2.0, 0.0, 3.0]))
    Array([0., 0., 3.], dtype=float32)
  """
  x = jnp.asarray(x)
  return jnp.maximum(x, jnp.zeros((), x.dtype))


def sigmoid(x: Array) -> Array:
  r"""Logistic sigmoid, :math:`\sigma(x) = 1 / (1 + e^{-x})`.

  Computed as :math:`\tfrac12(1 + \tanh(x/2))`, which never overflows: the naive
  formula gives ``inf`` in ``exp(-x)`` for ``x = -1e4``.

  Example:
    >>> sigmoid(jnp.array([0.0]))
    Array([0.5], dtype=float32)
  """
  x = jnp.asarray(x)
  return 0.5 * (jnp.tanh(0.5 * x) + 1.0)


def tanh(x: Array) -> Array:
  r"""Hyperbolic tangent, :math:`(e^x - e^{-x}) / (e^x + e^{-x})`, in (-1, 1)."""
  return jnp.tanh(jnp.asarray(x))


def softmax(x: Array, axis: int = -1) -> Array:
  r"""Softmax along ``axis``: :math:`e^{x_i - m} / \sum_j e^{x_j - m}`, :math:`m = \max_j x_j`.

  Subtracting the maximum leaves the result unchanged mathematically and keeps
  ``exp`` from overflowing for logits like 1e3 or 1e4.

  Example:
    >>> softmax(jnp.array([1000.0, 1000.0]))
    Array([0.5, 0.5], dtype=float32)
  """
  x = jnp.asarray(x)
  shifted = x - jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
  e = jnp.exp(shifted)
  return e / jnp.sum(e, axis=axis, keepdims=True)


def logsumexp(x: Array, axis: int = -1, keepdims: bool = False) -> Array:
  r""":math:`\log \sum_j e^{x_j}`, computed as :math:`m + \log\sum_j e^{x_j - m}`."""
  x = jnp.asarray(x)
  m = jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
  out = m + jnp.log(jnp.sum(jnp.exp(x - m), axis=axis, keepdims=True))
  return out if keepdims else jnp.squeeze(out, axis=axis)


def log_softmax(x: Array, axis: int = -1) -> Array:
  r""":math:`x_i - \log\sum_j e^{x_j}`: the log of :func:`softmax`, without its underflow."""
  x = jnp.asarray(x)
  return x - logsumexp(x, axis=axis, keepdims=True)


def gelu(x: Array, approximate: bool = False) -> Array:
  r"""Gaussian error linear unit, :math:`x\,\Phi(x)`.

  Args:
    x: input array.
    approximate: ``False`` (default) gives the exact erf form
      :math:`\tfrac{x}{2}(1 + \mathrm{erf}(x/\sqrt2))` used by BERT and by
      ``torch.nn.GELU()``; ``True`` the tanh approximation.

  Warning:
    ``jax.nn.gelu`` defaults to ``approximate=True``; dlfunc defaults to the
    exact form, like PyTorch and Keras.
  """
  x = jnp.asarray(x)
  if approximate:
    c = math.sqrt(2.0 / math.pi)
    return 0.5 * x * (1.0 + jnp.tanh(c * (x + 0.044715 * x**3)))
  return 0.5 * x * (1.0 + jax.lax.erf(x / math.sqrt(2.0)))


def leaky_relu(x: Array, negative_slope: float = 0.01) -> Array:
  r""":math:`x` for :math:`x \ge 0`, else ``negative_slope * x``.

  Warning:
    PyTorch's default slope is 0.01 (as here and in ``jax.nn``); Keras'
    ``LeakyReLU`` defaults to 0.3 (``negative_slope`` in Keras 3).
  """
  x = jnp.asarray(x)
  return jnp.where(x >= 0, x, negative_slope * x)


def elu(x: Array, alpha: float = 1.0) -> Array:
  r""":math:`x` for :math:`x > 0`, else :math:`\alpha(e^x - 1)`.

  ``expm1`` is evaluated on :math:`\min(x, 0)` so that the unused branch cannot
  overflow (which would poison the gradient with NaN at large positive x).
  """
  x = jnp.asarray(x)
  safe = jnp.minimum(x, 0.0)
  return jnp.where(x > 0, x, alpha * jnp.expm1(safe))
