"""Sequence models: recurrent layers and classifiers, and a 1-D CNN. They return logits.

The recurrent maths is :func:`dlfunc.nn.unroll` (a ``jax.lax.scan``); these
modules only keep the parameter books, named as in :mod:`dlfunc.nn`
(``kernel``, ``recurrent_kernel``, ``bias``, ``recurrent_bias``), so
``dlfunc.nn.from_keras`` / ``from_torch`` output drops straight in.
"""

from __future__ import annotations

from typing import Any, Sequence, Union

import flax.linen as linen
import jax.numpy as jnp

from dlfunc import nn
from dlfunc.nn._checks import GATES, check_cell

from dlfunc.models._layers import Conv, Dense, Dropout, precision


def _lstm_bias_init(hidden: int):
  def init(key, shape, dtype=jnp.float32):  # noqa: ARG001  (a Flax initializer's signature)
    return jnp.zeros(shape, dtype).at[hidden : 2 * hidden].set(1)  # Keras unit_forget_bias

  return init


class Recurrent(linen.Module):
  """One recurrent layer over ``(N, T, F)``: :func:`dlfunc.nn.unroll` with its own parameters.

  Initialised as Keras: Glorot-uniform ``kernel``, orthogonal ``recurrent_kernel``,
  zero biases (LSTM forget gate: one). Returns ``(N, T, H)`` when
  ``return_sequences`` else ``(N, H)``.
  """

  cell: str
  hidden_size: int
  reverse: bool = False
  return_sequences: bool = True
  zero_output_for_mask: bool = False
  implementation: str = "scan"
  dtype: Any = None  # compute dtype; None: that of the inputs and parameters (float64 under x64), as in Flax
  param_dtype: Any = jnp.float32

  @linen.compact
  def __call__(self, x, mask=None):
    cell = check_cell(self.cell)
    g = GATES[cell] * self.hidden_size
    if self.has_variable("params", "kernel"):
      f = self.get_variable("params", "kernel").shape[0]
      if x.shape[-1] != f:
        raise ValueError(
          f"{type(self).__name__} {self.name}: input has {x.shape[-1]} features (shape "
          f"{tuple(x.shape)}) but the layer was built for {f}; pass inputs shaped (..., {f})."
        )
    pd = self.param_dtype
    p = {
      "kernel": self.param("kernel", nn.glorot_uniform, (x.shape[-1], g), pd),
      "recurrent_kernel": self.param("recurrent_kernel", nn.orthogonal, (self.hidden_size, g), pd),
      "bias": self.param("bias", _lstm_bias_init(self.hidden_size) if cell == "lstm" else nn.zeros, (g,), pd),
    }
    if cell == "gru":
      p["recurrent_bias"] = self.param("recurrent_bias", nn.zeros, (g,), pd)
    # the compute dtype: the scan's matmuls and its carry (float32 master parameters are cast in)
    x = jnp.asarray(x)
    dtype = self.dtype if self.dtype is not None else jnp.result_type(x, *p.values())
    p = {k: v.astype(dtype) for k, v in p.items()}
    x = x.astype(dtype)
    y, _ = nn.unroll(
      cell,
      p,
      x,
      mask=mask,
      reverse=self.reverse,
      return_sequences=self.return_sequences,
      zero_output_for_mask=self.zero_output_for_mask,
      implementation=self.implementation,
    )
    return y


class Bidirectional(linen.Module):
  """Forward and backward :class:`Recurrent` layers (``forward``, ``backward``), outputs concatenated.

  Matches Keras ``Bidirectional(merge_mode="concat")`` and PyTorch ``bidirectional=True``.
  """

  cell: str
  hidden_size: int
  return_sequences: bool = True
  dtype: Any = None  # compute dtype; None: that of the inputs and parameters (float64 under x64), as in Flax
  param_dtype: Any = jnp.float32

  @linen.compact
  def __call__(self, x, mask=None):
    pr = precision(self)
    kw = dict(
      cell=self.cell, hidden_size=self.hidden_size, return_sequences=self.return_sequences, zero_output_for_mask=True
    )
    fw = Recurrent(**kw, name="forward", **pr)(x, mask)
    bw = Recurrent(**kw, reverse=True, name="backward", **pr)(x, mask)
    return jnp.concatenate([fw, bw], axis=-1)


def _sequences(name: str, x):
  x = jnp.asarray(x, jnp.float32)
  if x.ndim == 2:
    return x[..., None]
  if x.ndim != 3:
    raise ValueError(
      f"{name} expects sequences shaped (batch, time, features) or (batch, time), got shape {tuple(x.shape)}."
    )
  return x


class RNNClassifier(linen.Module):
  """Recurrent classifier: ``num_layers`` recurrent layers, a readout, then ``Dense(num_classes)``.

  Args:
    cell: ``"gru"``, ``"lstm"`` or ``"rnn"``.
    hidden_size: units per direction.
    num_classes: output width (logits).
    num_layers: stacked recurrent layers; inner ones pass their full sequence on.
    bidirectional: each layer reads both ways (its width doubles).
    readout: ``"last"`` (the final state: Keras ``return_sequences=False``),
      ``"mean"`` (average of all steps, padded steps excluded) or ``"all"``
      (every step's output, flattened, into the head).
    dropout_rate: dropout on the readout (``dropout`` rng when training).
    implementation: ``"scan"`` or ``"cudnn"`` (LSTM on an NVIDIA GPU; see :func:`dlfunc.nn.unroll`).

  Input ``(N, T, F)``; ``(N, T)`` means ``F = 1``. ``mask`` ``(N, T)`` marks real
  steps of right-padded sequences.

  Keras equivalent (``readout="last"``)::

      Sequential([GRU(64), Dense(10)])

  Example:
    >>> import jax
    >>> m = RNNClassifier("gru", hidden_size=8, num_classes=10)
    >>> v = m.init(jax.random.key(0), jnp.ones((1, 8, 8)))
    >>> m.apply(v, jnp.ones((4, 8, 8))).shape
    (4, 10)
  """

  cell: str = "gru"
  hidden_size: int = 64
  num_classes: int = 10
  num_layers: int = 1
  bidirectional: bool = False
  readout: str = "last"
  dropout_rate: float = 0.0
  implementation: str = "scan"
  dtype: Any = None  # compute dtype; None: that of the inputs and parameters (float64 under x64), as in Flax
  param_dtype: Any = jnp.float32

  @linen.compact
  def __call__(self, x, mask=None, train: bool = False):
    pr = precision(self)
    check_cell(self.cell)
    if self.readout not in ("last", "mean", "all"):
      raise ValueError(f"RNNClassifier: readout must be 'last', 'mean' or 'all', got {self.readout!r}.")
    if self.num_layers < 1 or self.hidden_size < 1:
      raise ValueError(
        f"RNNClassifier: num_layers and hidden_size must be >= 1, got {self.num_layers} and {self.hidden_size}."
      )
    x = _sequences("RNNClassifier", x)
    for k in range(self.num_layers):
      seq = k < self.num_layers - 1 or self.readout != "last"
      if self.bidirectional:
        x = Bidirectional(self.cell, self.hidden_size, return_sequences=seq, name=f"layer_{k}", **pr)(x, mask)
      else:
        x = Recurrent(
          self.cell, self.hidden_size, return_sequences=seq, implementation=self.implementation, name=f"layer_{k}", **pr
        )(x, mask)
    if self.readout == "mean":
      if mask is None:
        x = jnp.mean(x, axis=1)
      else:
        m = jnp.asarray(mask, x.dtype)[..., None]
        x = jnp.sum(x * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1.0)
    elif self.readout == "all":
      x = nn.flatten(x)
    x = Dropout(self.dropout_rate)(x, train=train)
    return Dense(self.num_classes, name="head", **pr)(x)


def _ints(v, n: int, what: str) -> tuple[int, ...]:
  if isinstance(v, int):
    return (v,) * n
  v = tuple(v)
  if len(v) != n:
    raise ValueError(f"CNN1D: {what} needs one entry per conv layer ({n}), got {v}.")
  return v


class CNN1D(linen.Module):
  """1-D CNN: ``[conv1d -> ReLU]`` per entry of ``channels``, then flatten and ``Dense(num_classes)``.

  Args:
    channels: output channels of each conv.
    kernel_sizes, strides: one per conv (or one int for all).
    padding: an int (that many zeros on each side of every conv, PyTorch's
      ``Conv1d(padding=...)``), or ``'SAME'`` / ``'VALID'``.
    num_classes: output width (logits).

  Input ``(N, L, C)`` (NWC); ``(N, L)`` means one channel. For ``digits-seq``
  the 8 rows are the length axis and the 8 pixels of a row the channels.

  PyTorch equivalent (NCL)::

      Sequential(Conv1d(8, 32, 3, padding=1), ReLU(), Conv1d(32, 64, 3, padding=1), ReLU(),
                 Flatten(), Linear(64 * 8, 10))
  """

  channels: Sequence[int] = (32, 64)
  kernel_sizes: Union[int, Sequence[int]] = 3
  strides: Union[int, Sequence[int]] = 1
  padding: Any = 1
  num_classes: int = 10
  dtype: Any = None  # compute dtype; None: that of the inputs and parameters (float64 under x64), as in Flax
  param_dtype: Any = jnp.float32

  @linen.compact
  def __call__(self, x, train: bool = False):  # noqa: ARG002  (every model takes train)
    pr = precision(self)
    x = _sequences("CNN1D", x)
    n = len(self.channels)
    ks, ss = _ints(self.kernel_sizes, n, "kernel_sizes"), _ints(self.strides, n, "strides")
    for c, k, s in zip(self.channels, ks, ss):
      x = nn.relu(Conv(c, (k,), strides=s, padding=self.padding, kernel_init=nn.he_uniform, **pr)(x))
    return Dense(self.num_classes, **pr)(nn.flatten(x))
