"""Argument checks and normalisers shared by the layers of :mod:`dlfunc.nn` (and by ``losses`` and ``models``).

Public within the package: other dlfunc modules import these names from here,
never a layer module's private helpers. Each error says what to change, in one line.
"""

from __future__ import annotations

from typing import Sequence, Union

import jax
import jax.numpy as jnp

Array = jax.Array
Padding = Union[str, int, Sequence[tuple[int, int]]]

# Gates per recurrent cell: the kernels' last axis is ``GATES[cell] * hidden``.
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def check_rank(name: str, x: Array, rank: int, layout: str) -> None:
  """Raise unless ``x`` has rank ``rank``; ``layout`` names the expected axes in the message."""
  if x.ndim != rank:
    raise ValueError(
      f"{name}: expected a rank-{rank} input {layout}, got shape {tuple(x.shape)}; "
      f"reshape the input (for one example, add a batch axis with x[None])."
    )


def check_nwc(name: str, x: Array) -> Array:
  """``x`` as an array, checked to be a channels-last sequence ``(N, L, C)``."""
  x = jnp.asarray(x)
  if x.ndim != 3:
    raise ValueError(
      f"{name}: expected a rank-3 input (batch, length, channels), got shape {tuple(x.shape)}; "
      f"for one channel use x[..., None]."
    )
  return x


def ntuple(v, n: int, what: str) -> tuple[int, ...]:
  """An int or a sequence of ``n`` ints as an ``n``-tuple (strides, dilation, window)."""
  if isinstance(v, int):
    return (v,) * n
  v = tuple(int(i) for i in v)
  if len(v) != n:
    raise ValueError(f"{what} must be an int or a sequence of {n} ints, got {v}.")
  return v


def padding_pairs(padding: Padding, n: int) -> str | list[tuple[int, int]]:
  """``'SAME'``/``'VALID'`` (upper-cased) or ``n`` explicit ``(low, high)`` pairs."""
  if isinstance(padding, str):
    p = padding.upper()
    if p not in ("SAME", "VALID"):
      raise ValueError(f"padding must be 'SAME', 'VALID', an int or {n} (low, high) pairs, got {padding!r}.")
    return p
  if isinstance(padding, int):
    return [(padding, padding)] * n
  pads = [tuple(int(i) for i in p) for p in padding]
  if len(pads) != n or any(len(p) != 2 for p in pads):
    raise ValueError(f"explicit padding needs {n} (low, high) pairs, got {padding!r}.")
  return [(lo, hi) for lo, hi in pads]


def concrete_range(x: Array) -> tuple[int, int]:
  """``(min, max)`` of integer ``x`` when its values are known (outside ``jit``); ``(0, 0)`` when traced or empty.

  Lets a function reject out-of-range indices with a clear message eagerly,
  while under ``jit`` (values unknown) it must handle them without raising.
  """
  try:
    return (int(x.min()), int(x.max())) if x.size else (0, 0)
  except jax.errors.ConcretizationTypeError:
    return 0, 0


def check_cell(cell: str) -> str:
  """The lower-cased cell name, checked to be ``'rnn'``, ``'lstm'`` or ``'gru'``."""
  if not isinstance(cell, str) or cell.lower() not in GATES:
    raise ValueError(f"unknown recurrent cell {cell!r}; expected one of 'rnn', 'lstm', 'gru'.")
  return cell.lower()
