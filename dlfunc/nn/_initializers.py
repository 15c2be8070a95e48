"""Weight initializers: ``init(key, shape, dtype=float32) -> array``.

Fans follow the Keras/Flax convention: for a dense kernel ``(in, out)``,
fan_in = in and fan_out = out; for a convolution kernel ``(*spatial, in, out)``
(HWIO), each is multiplied by the receptive-field size.
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp

Array = jax.Array


def _fans(shape: Sequence[int]) -> tuple[float, float]:
  if len(shape) < 1:
    raise ValueError("initializers need a shape with at least one axis; got a scalar shape ().")
  if len(shape) == 1:
    return float(shape[0]), float(shape[0])
  receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
  return float(shape[-2] * receptive), float(shape[-1] * receptive)


def _uniform(key, shape, dtype, limit):
  return jax.random.uniform(key, tuple(shape), dtype, -limit, limit)


def _truncated_normal(key, shape, dtype, std):
  # Keras/Flax truncate at two standard deviations and rescale so the
  # standard deviation after truncation is ``std``.
  stddev = std / 0.87962566103423978
  return stddev * jax.random.truncated_normal(key, -2.0, 2.0, tuple(shape), dtype)


def glorot_uniform(key, shape, dtype=jnp.float32) -> Array:
  r"""Glorot/Xavier uniform: :math:`U(-l, l)`, :math:`l = \sqrt{6 / (\text{fan\_in} + \text{fan\_out})}`.

  The Keras default for ``Dense`` and ``Conv2D`` kernels.

  Example:
    >>> w = glorot_uniform(jax.random.key(0), (784, 128))
    >>> bool(abs(w).max() <= (6 / (784 + 128)) ** 0.5)
    True
  """
  fan_in, fan_out = _fans(shape)
  return _uniform(key, shape, dtype, math.sqrt(6.0 / (fan_in + fan_out)))


def glorot_normal(key, shape, dtype=jnp.float32) -> Array:
  r"""Glorot/Xavier normal, truncated at 2 sd: std :math:`\sqrt{2 / (\text{fan\_in} + \text{fan\_out})}`."""
  fan_in, fan_out = _fans(shape)
  return _truncated_normal(key, shape, dtype, math.sqrt(2.0 / (fan_in + fan_out)))


def he_uniform(key, shape, dtype=jnp.float32) -> Array:
  r"""He/Kaiming uniform: :math:`U(-l, l)`, :math:`l = \sqrt{6 / \text{fan\_in}}` (for ReLU nets)."""
  fan_in, _ = _fans(shape)
  return _uniform(key, shape, dtype, math.sqrt(6.0 / fan_in))


def he_normal(key, shape, dtype=jnp.float32) -> Array:
  r"""He/Kaiming normal, truncated at 2 sd: std :math:`\sqrt{2 / \text{fan\_in}}`."""
  fan_in, _ = _fans(shape)
  return _truncated_normal(key, shape, dtype, math.sqrt(2.0 / fan_in))


def lecun_uniform(key, shape, dtype=jnp.float32) -> Array:
  r"""LeCun uniform: :math:`l = \sqrt{3 / \text{fan\_in}}`."""
  fan_in, _ = _fans(shape)
  return _uniform(key, shape, dtype, math.sqrt(3.0 / fan_in))


def lecun_normal(key, shape, dtype=jnp.float32) -> Array:
  r"""LeCun normal, truncated at 2 sd: std :math:`\sqrt{1 / \text{fan\_in}}` (Flax's default kernel init)."""
  fan_in, _ = _fans(shape)
  return _truncated_normal(key, shape, dtype, math.sqrt(1.0 / fan_in))


def zeros(key, shape, dtype=jnp.float32) -> Array:
  """All zeros (the usual bias init). ``key`` is ignored."""
  del key
  return jnp.zeros(tuple(shape), dtype)


def ones(key, shape, dtype=jnp.float32) -> Array:
  """All ones (batch/layer-norm scale). ``key`` is ignored."""
  del key
  return jnp.ones(tuple(shape), dtype)


# PyTorch names.
xavier_uniform = glorot_uniform
xavier_normal = glorot_normal
kaiming_uniform = he_uniform
kaiming_normal = he_normal
