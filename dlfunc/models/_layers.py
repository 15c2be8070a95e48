"""Flax Linen layers that keep the parameter books and call :mod:`dlfunc.nn` for the maths.

Parameter and collection names follow Flax (``kernel``, ``bias``, ``scale``,
``batch_stats/{mean,var}``), so checkpoints and weight loaders map one to one.

Mixed precision, as in Flax: every layer takes ``dtype``, the dtype it computes
in (``None``: the promoted type of its input and parameters), and
``param_dtype``, the dtype of its parameters (float32 by default). With
``dtype=jnp.bfloat16`` and float32 parameters, matmuls and convolutions run in
bfloat16 while the parameters (and so the optimizer's updates) stay float32
master copies; normalisation statistics are always computed and kept in float32.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as linen
import jax
import jax.core  # Tracer (jax imports it anyway; named so type checkers see the submodule)
import jax.numpy as jnp

from dlfunc import nn

Initializer = Callable[..., Any]


def _check_features(module: linen.Module, x, axis_size: int, what: str) -> None:
  """At apply time, compare the input's feature size with the kernel made at init."""
  if module.has_variable("params", "kernel"):
    kernel = module.get_variable("params", "kernel")
    if axis_size != kernel.shape[-2]:
      raise ValueError(
        f"{type(module).__name__} {module.name}: expected input {what} {kernel.shape[-2]} as at init "
        f"(kernel {tuple(kernel.shape)}), got input shape {tuple(x.shape)}; reshape the input or "
        f"init the model for this size."
      )


class Dense(linen.Module):
  """Linen wrapper of :func:`dlfunc.nn.dense`. Kernel init defaults to Glorot uniform (Keras)."""

  features: int
  use_bias: bool = True
  kernel_init: Initializer = nn.glorot_uniform
  bias_init: Initializer = nn.zeros
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @linen.compact
  def __call__(self, x):
    _check_features(self, x, x.shape[-1], "features (last axis)")
    p = {"kernel": self.param("kernel", self.kernel_init, (x.shape[-1], self.features), self.param_dtype)}
    if self.use_bias:
      p["bias"] = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
    return nn.dense(p, x, dtype=self.dtype)


class Conv(linen.Module):
  """Linen wrapper of :func:`dlfunc.nn.conv` (channels last; 1-D, 2-D or 3-D by ``len(kernel_size)``)."""

  features: int
  kernel_size: Sequence[int]
  strides: Any = 1
  padding: Any = "VALID"
  dilation: Any = 1
  groups: int = 1
  use_bias: bool = True
  kernel_init: Initializer = nn.glorot_uniform
  bias_init: Initializer = nn.zeros
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @linen.compact
  def __call__(self, x):
    ks = tuple(self.kernel_size)
    if x.ndim != len(ks) + 2:
      raise ValueError(
        f"Conv with a {len(ks)}-D kernel expects input (batch, {len(ks)} spatial axes, channels), "
        f"got shape {tuple(x.shape)}."
      )
    _check_features(self, x, x.shape[-1] // self.groups, "channels per group (last axis)")
    shape = (*ks, x.shape[-1] // self.groups, self.features)
    p = {"kernel": self.param("kernel", self.kernel_init, shape, self.param_dtype)}
    if self.use_bias:
      p["bias"] = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
    return nn.conv(
      p, x, strides=self.strides, padding=self.padding, dilation=self.dilation, groups=self.groups, dtype=self.dtype
    )


class BatchNorm(linen.Module):
  """Linen wrapper of :func:`dlfunc.nn.batch_norm`; running statistics live in ``batch_stats``.

  ``train=True`` needs ``mutable=["batch_stats"]`` in ``apply``. Statistics are not
  updated during ``init``. ``momentum`` follows Keras/Flax (PyTorch 0.1 == 0.9 here).
  """

  momentum: float = 0.99
  epsilon: float = 1e-5
  use_scale: bool = True
  use_bias: bool = True
  dtype: Any = None  # of the output (None: the input's); the statistics are float32 whatever it is
  param_dtype: Any = jnp.float32

  @linen.compact
  def __call__(self, x, train: bool = False):
    c = x.shape[-1]
    mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
    var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
    p = {}
    if self.use_scale:
      p["scale"] = self.param("scale", nn.ones, (c,), self.param_dtype)
    if self.use_bias:
      p["bias"] = self.param("bias", nn.zeros, (c,), self.param_dtype)
    y, new = nn.batch_norm(
      p, {"mean": mean.value, "var": var.value}, x, train=train, momentum=self.momentum, eps=self.epsilon
    )
    if train and not self.is_initializing():
      mean.value, var.value = new["mean"], new["var"]
    return y if self.dtype is None else y.astype(self.dtype)


class LayerNorm(linen.Module):
  """Linen wrapper of :func:`dlfunc.nn.layer_norm` over the last axis."""

  epsilon: float = 1e-5
  use_scale: bool = True
  use_bias: bool = True
  dtype: Any = None  # of the output (None: the input's); statistics in at least float32
  param_dtype: Any = jnp.float32

  @linen.compact
  def __call__(self, x):
    d = x.shape[-1]
    p = {}
    if self.use_scale:
      p["scale"] = self.param("scale", nn.ones, (d,), self.param_dtype)
    if self.use_bias:
      p["bias"] = self.param("bias", nn.zeros, (d,), self.param_dtype)
    y = nn.layer_norm(p, x, eps=self.epsilon)
    return y if self.dtype is None else y.astype(self.dtype)


class Dropout(linen.Module):
  """Linen wrapper of :func:`dlfunc.nn.dropout`; draws its key from the ``dropout`` rng stream."""

  rate: float

  @linen.compact
  def __call__(self, x, train: bool = False):
    if isinstance(train, jax.core.Tracer):  # nn.dropout says: train must be a Python bool
      return nn.dropout(x, self.rate, train=train)
    if not train or self.rate == 0.0:
      return x
    return nn.dropout(x, self.rate, key=self.make_rng("dropout"), train=True)


class Embed(linen.Module):
  """Linen wrapper of :func:`dlfunc.nn.embedding`."""

  num_embeddings: int
  features: int
  embedding_init: Initializer = nn.glorot_uniform
  dtype: Any = None  # of the looked-up rows (None: the table's)
  param_dtype: Any = jnp.float32

  @linen.compact
  def __call__(self, ids):
    table = self.param("embedding", self.embedding_init, (self.num_embeddings, self.features), self.param_dtype)
    y = nn.embedding({"embedding": table}, ids)
    return y if self.dtype is None else y.astype(self.dtype)


def precision(module: linen.Module) -> dict[str, Any]:
  """``{"dtype": ..., "param_dtype": ...}`` of a model, to pass on to each of its layers."""
  return {"dtype": module.dtype, "param_dtype": module.param_dtype}
