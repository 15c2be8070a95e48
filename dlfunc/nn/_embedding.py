"""Embedding lookup: rows of a ``(vocab, dim)`` table for integer ids, never wrapping out-of-range ids."""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

from dlfunc.nn._checks import concrete_range

Array = jax.Array


def embedding(params: Mapping[str, Array], ids: Array) -> Array:
  """Look up rows of ``params["embedding"]`` (``(vocab, dim)``) for integer ``ids``.

  Returns ``ids.shape + (dim,)``. An id outside ``[0, vocab)`` is an error when
  ``ids`` is a concrete array; under ``jit`` it cannot be checked and gives a row
  of NaN (never a silent wrap-around or clamp), so a training loop sees a NaN loss.

  Warning:
    Keras and Flax (``jnp.take``) wrap negative ids to the end of the table;
    PyTorch raises. dlfunc never wraps.

  Example:
    >>> table = {"embedding": jnp.arange(6.0).reshape(3, 2)}
    >>> embedding(table, jnp.array([[2, 0]]))
    Array([[[4., 5.],
            [0., 1.]]], dtype=float32)
  """
  ids = jnp.asarray(ids)
  table = jnp.asarray(params["embedding"])
  if not jnp.issubdtype(ids.dtype, jnp.integer):
    raise TypeError(f"embedding: ids must be integers, got dtype {ids.dtype}; cast with ids.astype(jnp.int32).")
  if table.ndim != 2:
    raise ValueError(f"embedding: the table must be (vocab, dim), got shape {tuple(table.shape)}.")
  vocab = table.shape[0]
  lo, hi = concrete_range(ids)  # traced ids (inside jit) are not checked: they give NaN rows below instead
  if lo < 0 or hi >= vocab:
    raise ValueError(
      f"embedding: ids must be in [0, {vocab}) for a table of shape {tuple(table.shape)}, got ids from {lo} to {hi}."
    )
  ids = jnp.where(ids < 0, vocab, ids)  # out of range: filled with NaN, never wrapped
  return jnp.take(table, ids, axis=0, mode="fill")
