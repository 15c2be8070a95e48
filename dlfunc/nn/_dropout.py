"""Inverted dropout as a pure function: the random key is an argument, never hidden state."""

from __future__ import annotations

import jax
import jax.core  # Tracer (jax imports it anyway; named so type checkers see the submodule)
import jax.numpy as jnp

Array = jax.Array


def dropout(x: Array, rate: float, *, key: jax.Array | None = None, train: bool = True) -> Array:
  r"""Inverted dropout: zero each element with probability ``rate``, scale the rest by :math:`1/(1-\text{rate})`.

  Args:
    x: input.
    rate: the probability of *dropping* an element (as in Keras and PyTorch),
      in ``[0, 1)``.
    key: a ``jax.random`` key; required when training with ``rate > 0``.
    train: a Python bool (it chooses the program, so under ``jit`` it is a
      static argument); when ``False`` this is the identity, so the expected
      activation is the same in training and inference.

  Warning:
    ``jax.example_libraries.stax.Dropout(rate)`` takes the *keep* probability.

  Example:
    >>> y = dropout(jnp.ones(10_000), 0.25, key=jax.random.key(0))
    >>> round(float((y == 0).mean()), 2), float(y.max())  # ~25% dropped, the rest scaled by 1/0.75
    (0.25, 1.3333333730697632)
    >>> dropout(jnp.ones(3), 0.25, train=False)
    Array([1., 1., 1.], dtype=float32)
  """
  if not 0.0 <= rate < 1.0:
    raise ValueError(f"dropout: rate is the drop probability and must be in [0, 1), got {rate}.")
  x = jnp.asarray(x)
  if isinstance(train, jax.core.Tracer):
    raise TypeError(
      "dropout: train must be a Python bool, got a traced value; pass it to jax.jit as a static "
      "argument (static_argnames=('train',)) or choose it outside the jitted function."
    )
  if not train or rate == 0.0:
    return x
  if key is None:
    raise ValueError(
      "dropout: training with rate > 0 needs a key; pass key=jax.random.key(...) "
      "(in a Flax model: rngs={'dropout': key})."
    )
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), jnp.zeros((), x.dtype))
