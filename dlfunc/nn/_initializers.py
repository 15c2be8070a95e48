r"""Weight initializers: ``init(key, shape, dtype=float32) -> array``.

Fans follow the Keras/Flax convention: for a dense kernel ``(in, out)``,
fan_in = in and fan_out = out; for a convolution kernel ``(*spatial, in, out)``
(HWIO), each is multiplied by the receptive-field size. A 1-D shape ``(n,)``
has fan_in = fan_out = n (as Keras).

The ``*_normal`` initializers draw from a normal truncated at two standard
deviations and rescaled so that the truncated distribution has the stated
standard deviation, as Keras and ``jax.nn.initializers`` do.

Warning:
  PyTorch's ``kaiming_normal_`` / ``xavier_normal_`` are *not* truncated, and its
  ``nn.Linear`` / ``nn.Conv2d`` default is :math:`U(-1/\sqrt{\text{fan\_in}}, 1/\sqrt{\text{fan\_in}})`
  (``kaiming_uniform_(a=sqrt(5))``), not He uniform.
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
  shape = tuple(int(d) for d in shape)
  if len(shape) == 1:
    fan_in = fan_out = shape[0]
  else:
    receptive = math.prod(shape[:-2])
    fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
  if fan_in <= 0 or fan_out <= 0:
    raise ValueError(f"initializers need positive fans; shape {shape} gives fan_in={fan_in}, fan_out={fan_out}.")
  return float(fan_in), float(fan_out)


def _uniform(key, shape, dtype, limit):
  # U(-1, 1) scaled by ``limit``: the same draws as ``jax.nn.initializers`` for the same key.
  return jax.random.uniform(key, tuple(shape), dtype, -1.0, 1.0) * jnp.asarray(limit, dtype)


def _truncated_normal(key, shape, dtype, std):
  # Keras/Flax truncate at two standard deviations and rescale so the
  # standard deviation after truncation is ``std``.
  stddev = std / 0.87962566103423978
  return jax.random.truncated_normal(key, -2.0, 2.0, tuple(shape), dtype) * jnp.asarray(stddev, dtype)


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
  r"""He/Kaiming uniform: :math:`U(-l, l)`, :math:`l = \sqrt{6 / \text{fan\_in}}` (for ReLU nets).

  Example:
    >>> w = he_uniform(jax.random.key(0), (3, 3, 16, 32))  # HWIO: fan_in = 3 * 3 * 16
    >>> bool(abs(w).max() <= (6 / 144) ** 0.5)
    True
  """
  fan_in, _ = _fans(shape)
  return _uniform(key, shape, dtype, math.sqrt(6.0 / fan_in))


def he_normal(key, shape, dtype=jnp.float32) -> Array:
  r"""He/Kaiming normal, truncated at 2 sd: std :math:`\sqrt{2 / \text{fan\_in}}`.

  Example:
    >>> w = he_normal(jax.random.key(0), (512, 256))
    >>> round(float(w.std()) / (2 / 512) ** 0.5, 1)
    1.0
  """
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
