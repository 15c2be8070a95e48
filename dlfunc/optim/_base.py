"""The plumbing every dlfunc optimizer is built from: states, chain, apply_updates.

An optimizer is an :class:`optax.GradientTransformation`: a NamedTuple of two
pure functions,

* ``init(params) -> state`` — the optimizer state is a pytree (a value), and
* ``update(grads, state, params=None, **extra_args) -> (updates, new_state)``.

As optax's own, every dlfunc optimizer is a ``GradientTransformationExtraArgs``:
``update`` accepts extra keyword arguments (a line search passes ``value=``,
``grad=``, ``value_fn=``) and hands them to the transforms inside it, which
ignore those they do not use.

Nothing is stored in an object; a training step threads ``state`` through.
Because the type is optax's own, every dlfunc transform mixes freely with
optax (``optax.chain``, ``optax.inject_hyperparams``, schedules, ...).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.core  # Tracer (jax imports it anyway; named so type checkers see the submodule)
import jax.numpy as jnp
import numpy as np
import optax

GradientTransformation = optax.GradientTransformation
GradientTransformationExtraArgs = optax.GradientTransformationExtraArgs
PyTree = Any
ScalarOrSchedule = Any  # a float, a 0-d array, or a schedule ``count -> float``


class EmptyState(NamedTuple):
  """The state of a transform that remembers nothing (no leaves at all)."""


def transformation(init_fn, update_fn) -> GradientTransformationExtraArgs:
  """A transform from ``init_fn(params)`` and ``update_fn(updates, state, params=None)``.

  Its ``update`` also accepts extra keyword arguments and ignores them, as
  optax's transforms do (``optax.with_extra_args_support``).
  """
  return optax.with_extra_args_support(GradientTransformation(init_fn, update_fn))


def identity() -> GradientTransformation:
  """The transform that returns the updates unchanged and keeps no state."""

  def init_fn(params):
    del params
    return EmptyState()

  def update_fn(updates, state, params=None):
    del params
    return updates, state

  return transformation(init_fn, update_fn)


def set_to_zero() -> GradientTransformation:
  """The transform that turns every update into zeros and keeps no state.

  Used for frozen parameters: no moment buffers are allocated for them, and
  ``apply_updates`` leaves them bit-identical. The zeros are *negative* zeros:
  in IEEE arithmetic ``x + (-0.0)`` is ``x`` for every ``x``, while
  ``-0.0 + 0.0`` would flip a stored ``-0.0`` to ``+0.0``.
  """

  def init_fn(params):
    del params
    return EmptyState()

  def update_fn(updates, state, params=None):
    del params
    return jax.tree.map(lambda u: jnp.full_like(u, -0.0), updates), state

  return transformation(init_fn, update_fn)


def chain(*transforms: GradientTransformation) -> GradientTransformation:
  r"""Compose transforms: the updates flow through each one in order.

  ``chain(f, g).update`` computes :math:`u = g(f(\nabla))`. The state is a
  ``tuple`` holding one state per transform (as ``optax.chain``), so
  ``adam`` is ``chain(scale_by_adam(b1, b2, eps), scale_by_learning_rate(lr))``
  and its state is ``(ScaleByAdamState(count, mu, nu), EmptyState())``.
  Extra keyword arguments of ``update`` go to every transform (as in optax).

  Args:
    *transforms: ``optax.GradientTransformation`` s (dlfunc's or optax's).

  Returns:
    One ``optax.GradientTransformation``.
  """
  for i, t in enumerate(transforms):
    if not (hasattr(t, "init") and hasattr(t, "update")):
      raise TypeError(
        f"chain: argument {i} is a {type(t).__name__}, not a GradientTransformation "
        "(an object with .init and .update); build it with e.g. dlfunc.optim.scale_by_adam()."
      )
  transforms = tuple(optax.with_extra_args_support(t) for t in transforms)

  def init_fn(params):
    return tuple(t.init(params) for t in transforms)

  def update_fn(updates, state, params=None, **extra_args):
    new_states = []
    for t, s in zip(transforms, state):
      updates, s = t.update(updates, s, params, **extra_args)
      new_states.append(s)
    return updates, tuple(new_states)

  return GradientTransformationExtraArgs(init_fn, update_fn)


def apply_updates(params: PyTree, updates: PyTree) -> PyTree:
  r"""Return :math:`\theta + u` leaf by leaf, keeping each parameter's dtype.

  Same as ``optax.apply_updates``. The optimizer's updates already carry the
  minus sign (``u = -\eta \cdot \ldots``), so this is always an addition.
  """
  return jax.tree.map(lambda p, u: jnp.asarray(p + u).astype(jnp.asarray(p).dtype), params, updates)


def safe_increment(count: jax.Array) -> jax.Array:
  """``count + 1`` for an int32 step counter, saturating instead of wrapping at 2**31 - 1."""
  max_value = jnp.iinfo(count.dtype).max
  return jnp.where(count < max_value, count + 1, max_value)


def zero_count() -> jax.Array:
  """A fresh step counter: shape ``()``, dtype ``int32`` (as in optax)."""
  return jnp.zeros([], jnp.int32)


def _concrete(value: Any) -> float | None:
  """``float(value)`` for a Python or concrete number; ``None`` for a tracer or a schedule."""
  if callable(value) or isinstance(value, jax.core.Tracer):
    return None
  try:
    arr = np.asarray(value)
  except Exception:  # noqa: BLE001 - anything we cannot read is checked by the caller's math
    return None
  if arr.shape != () or not np.issubdtype(arr.dtype, np.number):
    raise TypeError(f"expected a number, got {value!r} of type {type(value).__name__}")
  return float(arr)


def check_learning_rate(name: str, learning_rate: ScalarOrSchedule) -> None:
  """Raise a one-line ValueError unless ``learning_rate`` is a positive finite number or a schedule."""
  if learning_rate is None:
    raise ValueError(f"{name}: learning_rate is required; pass a positive float such as 1e-3 or an optax schedule.")
  try:
    lr = _concrete(learning_rate)
  except TypeError as e:
    raise TypeError(f"{name}: learning_rate must be a positive float or an optax schedule; {e}.") from None
  if lr is not None and not (lr > 0 and math.isfinite(lr)):
    raise ValueError(
      f"{name}: learning_rate must be a positive finite number, got {lr}; "
      "pass e.g. learning_rate=1e-3 (or an optax schedule)."
    )


def check_range(
  name: str,
  arg: str,
  value: Any,
  low: float,
  high: float | None = None,
  *,
  high_inclusive: bool = False,
  allow_none: bool = False,
) -> None:
  """Raise a one-line ValueError unless ``low <= value < high`` (or ``<= high``)."""
  if value is None and allow_none:
    return
  try:
    v = _concrete(value)
  except TypeError as e:
    raise TypeError(f"{name}: {arg} {e}.") from None
  if v is None:
    return
  upper_ok = True if high is None else (v <= high if high_inclusive else v < high)
  if not (v >= low and upper_ok):
    if high is None:
      rng = f">= {low}"
    else:
      rng = f"in [{low}, {high}{']' if high_inclusive else ')'}"
    raise ValueError(f"{name}: {arg} must be {rng}, got {v}.")
