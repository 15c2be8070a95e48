r"""Normalisation layers: :func:`batch_norm` (with running statistics) and :func:`layer_norm`.

Parameters ``scale`` (:math:`\gamma`) and ``bias`` (:math:`\beta`), named as in Flax.
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

Array = jax.Array


def batch_norm(
  params: Mapping[str, Array],
  stats: Mapping[str, Array],
  x: Array,
  *,
  train: bool,
  momentum: float = 0.99,
  eps: float = 1e-5,
  axis: int = -1,
) -> tuple[Array, dict[str, Array]]:
  r"""Batch normalization, :math:`y = \gamma (x - \mu) / \sqrt{\sigma^2 + \epsilon} + \beta`.

  Args:
    params: ``{"scale": (C,), "bias": (C,)}`` (:math:`\gamma`, :math:`\beta`).
    stats: running statistics ``{"mean": (C,), "var": (C,)}``.
    x: input whose feature axis is ``axis`` (channels last by default).
    train: ``True`` normalises with the batch's statistics and returns updated
      running statistics ``momentum * old + (1 - momentum) * batch`` (biased
      batch variance, as Keras and Flax); ``False`` uses the running statistics
      and returns them unchanged.
    momentum: weight of the old running value (Keras/Flax convention).
    eps: added to the variance.

  Returns:
    ``(y, new_stats)``.

  Warning:
    PyTorch's ``momentum=0.1`` is the weight of the *new* value (== 0.9 here),
    and PyTorch keeps the unbiased variance in ``running_var``. Keras'
    ``BatchNormalization`` defaults to ``epsilon=1e-3``.

  Example:
    >>> params = {"scale": jnp.ones(2), "bias": jnp.zeros(2)}
    >>> stats = {"mean": jnp.zeros(2), "var": jnp.ones(2)}
    >>> x = jnp.array([[0.0, 10.0], [2.0, 30.0]])
    >>> y, new = batch_norm(params, stats, x, train=True, momentum=0.9)
    >>> new["mean"]  # 0.9 * 0 + 0.1 * batch mean
    Array([0.1, 2. ], dtype=float32)
    >>> y, same = batch_norm(params, new, x, train=False)  # eval: running statistics, unchanged
  """
  x = jnp.asarray(x)
  axis = axis % x.ndim
  c = x.shape[axis]
  for what, tree in (("params", params), ("stats", stats)):
    for name, v in tree.items():
      if tuple(jnp.shape(v)) != (c,):
        raise ValueError(
          f"batch_norm: expected {what}[{name!r}] of shape ({c},) for input {tuple(x.shape)} "
          f"with features on axis {axis}, got {tuple(jnp.shape(v))}."
        )
  reduce = tuple(i for i in range(x.ndim) if i != axis)
  shape = [1] * x.ndim
  shape[axis] = x.shape[axis]
  # Statistics in at least float32 (bfloat16 activations keep float32 running statistics, as in Flax);
  # the output has the input's dtype and the new statistics the old ones' dtypes.
  out_dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
  cdtype = out_dtype if jnp.finfo(out_dtype).bits >= 32 else jnp.float32
  xc = x.astype(cdtype)
  if train:
    mean = jnp.mean(xc, axis=reduce)
    var = jnp.mean(jnp.square(xc - mean.reshape(shape)), axis=reduce)
    new_stats = {}
    for k, batch in (("mean", mean), ("var", var)):
      old = jnp.asarray(stats[k])
      new_stats[k] = (momentum * old.astype(cdtype) + (1.0 - momentum) * batch).astype(old.dtype)
  else:
    mean, var = jnp.asarray(stats["mean"]).astype(cdtype), jnp.asarray(stats["var"]).astype(cdtype)
    new_stats = dict(stats)
  y = (xc - mean.reshape(shape)) * jax.lax.rsqrt(var.reshape(shape) + eps)
  if "scale" in params:
    y = y * jnp.asarray(params["scale"]).astype(cdtype).reshape(shape)
  if "bias" in params:
    y = y + jnp.asarray(params["bias"]).astype(cdtype).reshape(shape)
  y = y.astype(out_dtype)
  return y, new_stats


def layer_norm(params: Mapping[str, Array], x: Array, *, eps: float = 1e-5, axis: int = -1) -> Array:
  r"""Layer normalization over one axis (the last by default), per example:
  :math:`\gamma (x - \mu) / \sqrt{\sigma^2 + \epsilon} + \beta`, with :math:`\mu, \sigma^2`
  the mean and (biased) variance over ``axis``.

  Args:
    params: ``{"scale": (D,), "bias": (D,)}`` (either may be absent), ``D = x.shape[axis]``.
    x: input; no batch statistics are involved, so train and eval are the same.
      bfloat16/float16 inputs are normalised in float32 and returned in their dtype.
    eps: added to the variance. PyTorch's default is 1e-5 (used here), Keras' 1e-3,
      Flax's 1e-6, BERT's 1e-12: pass the one of the model you port.
    axis: the axis normalised over.

  Example:
    >>> y = layer_norm({}, jnp.array([[1.0, 2.0, 3.0]]))
    >>> [round(float(v), 4) for v in y[0]]
    [-1.2247, 0.0, 1.2247]
  """
  x = jnp.asarray(x)
  axis = axis % x.ndim if x.ndim else 0
  d = x.shape[axis] if x.ndim else 0
  shape = [1] * x.ndim
  if x.ndim:
    shape[axis] = d
  for name, v in params.items():
    if tuple(jnp.shape(v)) != (d,):
      raise ValueError(
        f"layer_norm: expected params[{name!r}] of shape ({d},) for input {tuple(x.shape)} "
        f"normalised over axis {axis}, got {tuple(jnp.shape(v))}."
      )
  # 16-bit inputs (mixed precision) are normalised in float32 and returned in their own dtype, as batch_norm does.
  low = jnp.issubdtype(x.dtype, jnp.floating) and jnp.finfo(x.dtype).bits < 32
  xc = x.astype(jnp.float32) if low else x
  mean = jnp.mean(xc, axis=axis, keepdims=True)
  var = jnp.mean(jnp.square(xc - mean), axis=axis, keepdims=True)
  y = (xc - mean) * jax.lax.rsqrt(var + eps)
  if "scale" in params:
    y = y * jnp.reshape(params["scale"], shape)
  if "bias" in params:
    y = y + jnp.reshape(params["bias"], shape)
  return y.astype(x.dtype) if low else y
