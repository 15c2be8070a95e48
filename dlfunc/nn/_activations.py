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
  Plain ``jnp.maximum(x, 0)`` would give 0.5 there (JAX splits the gradient of
  a tie), hence the custom JVP; NaN passes through (``maximum`` propagates it),
  so a diverging network shows up in its loss. Forward and backward are one
  elementwise op each, which XLA fuses into the neighbouring conv or matmul.

  Example:
    >>> import jax.numpy as jnp
    >>> relu(jnp.array([-2.0, 0.0, 3.0]))
    Array([0., 0., 3.], dtype=float32)
    >>> float(jax.grad(relu)(0.0))
    0.0
  """
  return _relu(jnp.asarray(x))


@jax.custom_jvp
def _relu(x: Array) -> Array:
  return jnp.maximum(x, jnp.zeros((), x.dtype))


@_relu.defjvp
def _relu_jvp(primals, tangents):
  (x,), (dx,) = primals, tangents
  return _relu(x), jnp.where(x > 0, dx, jnp.zeros((), dx.dtype))


def sigmoid(x: Array) -> Array:
  r"""Logistic sigmoid, :math:`\sigma(x) = 1 / (1 + e^{-x})`.

  Computed from :math:`e = e^{-|x|} \in (0, 1]`: :math:`1/(1+e)` for
  :math:`x \ge 0` and :math:`e/(1+e)` for :math:`x < 0`. Nothing overflows
  (the naive formula computes ``exp(1e4) = inf`` at ``x = -1e4``), and small
  results keep full relative precision (``sigmoid(-20)`` is about 2e-9, not
  the 0 that :math:`\tfrac12(1 + \tanh(x/2))` rounds to in float32).

  Example:
    >>> sigmoid(jnp.array([0.0]))
    Array([0.5], dtype=float32)
    >>> bool(sigmoid(jnp.array(-20.0)) > 0)
    True
  """
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.inexact):
    x = x.astype(jnp.result_type(float))
  e = jnp.exp(-jnp.abs(x))
  return jnp.where(x >= 0, 1.0, e) / (1.0 + e)


def tanh(x: Array) -> Array:
  r"""Hyperbolic tangent, :math:`(e^x - e^{-x}) / (e^x + e^{-x})`, in (-1, 1).

  Example:
    >>> tanh(jnp.array([-1e4, 0.0, 1e4]))
    Array([-1.,  0.,  1.], dtype=float32)
  """
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
  r""":math:`\log \sum_j e^{x_j}`, computed as :math:`m + \log\sum_j e^{x_j - m}`, :math:`m = \max_j x_j`.

  The shift by the maximum keeps ``exp`` from overflowing; it is held constant
  for differentiation (the result does not depend on it), and a row that is
  all ``-inf`` gives ``-inf`` rather than NaN.

  Warning:
    ``jax.scipy.special.logsumexp`` reduces over *every* axis by default
    (``axis=None``); this one over the last, like :func:`softmax`.

  Example:
    >>> float(logsumexp(jnp.array([1e4, 1e4])))  # 1e4 + log 2
    10000.693359375
  """
  x = jnp.asarray(x)
  m = jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
  m = jnp.where(jnp.isfinite(m), m, jnp.zeros((), m.dtype))
  out = m + jnp.log(jnp.sum(jnp.exp(x - m), axis=axis, keepdims=True))
  return out if keepdims else jnp.squeeze(out, axis=axis)


def log_softmax(x: Array, axis: int = -1) -> Array:
  r""":math:`x_i - \log\sum_j e^{x_j}`: the log of :func:`softmax`, without its underflow.

  ``jnp.log(softmax(x))`` gives ``-inf`` (and NaN gradients) once a probability
  underflows to 0, e.g. for logits ``[0, 1e4]``; this stays finite.

  Example:
    >>> log_softmax(jnp.array([0.0, 1e4]))
    Array([-10000.,      0.], dtype=float32)
  """
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

  Example:
    >>> gelu(jnp.array([-1e4, 0.0, 1.0]))
    Array([-0.       ,  0.       ,  0.8413447], dtype=float32)
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

  Example:
    >>> leaky_relu(jnp.array([-2.0, 3.0]))
    Array([-0.02,  3.  ], dtype=float32)
  """
  x = jnp.asarray(x)
  return jnp.where(x >= 0, x, negative_slope * x)


def elu(x: Array, alpha: float = 1.0) -> Array:
  r""":math:`x` for :math:`x > 0`, else :math:`\alpha(e^x - 1)`.

  ``expm1`` is evaluated on :math:`\min(x, 0)` so that the unused branch cannot
  overflow (which would poison the gradient with NaN at large positive x).
  The gradient at 0 is ``alpha`` (the left branch), as in ``jax.nn.elu``.

  Example:
    >>> elu(jnp.array([-1e4, 0.0, 2.0]))
    Array([-1.,  0.,  2.], dtype=float32)
  """
  x = jnp.asarray(x)
  safe = jnp.where(x > 0, jnp.zeros((), x.dtype), x)
  return jnp.where(x > 0, x, alpha * jnp.expm1(safe))
