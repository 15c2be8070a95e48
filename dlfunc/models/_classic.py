"""The seed models: a dense MLP, a one-conv CNN and LeNet. They return logits.

Each takes ``dtype`` (the compute dtype of its layers, e.g. ``jnp.bfloat16``)
and ``param_dtype`` (of its parameters), both float32 by default, as Flax's
layers do: ``MLP(dtype=jnp.bfloat16)`` trains in mixed precision with float32
master parameters; its logits are bfloat16, and :mod:`dlfunc.losses` computes
the loss in float32.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as linen
import jax.numpy as jnp

from dlfunc import nn
from dlfunc.models._checks import check_nhwc
from dlfunc.models._layers import BatchNorm, Conv, Dense, Dropout, precision


def _images(name: str, x):
  """(N, H, W, C) stays; (N, H, W) gains a channel axis; anything else is an error."""
  if x.ndim == 3:
    return x[..., None]
  if x.ndim != 4:
    raise ValueError(
      f"{name} expects images shaped (batch, height, width, channels) or (batch, height, width), "
      f"got shape {tuple(x.shape)}."
    )
  check_nhwc(name, x)
  return x


class MLP(linen.Module):
  """The seed MLP: flatten -> Dense(128) + ReLU -> Dense(10). Returns logits.

  Keras equivalent (softmax folded into the loss)::

      Sequential([Flatten(), Dense(128, activation="relu"), Dense(10, activation="softmax")])

  Args:
    hidden: widths of the hidden layers.
    num_classes: output width.
    activation: applied after every hidden layer.
    dropout_rate: dropout after each hidden activation (0 disables it).
    dtype: the compute dtype (``jnp.bfloat16`` for mixed precision).
    param_dtype: the parameters' dtype.

  Example:
    >>> import jax
    >>> model = MLP()
    >>> variables = model.init(jax.random.key(0), jnp.ones((1, 8, 8, 1)))
    >>> model.apply(variables, jnp.ones((2, 8, 8, 1))).shape
    (2, 10)
  """

  hidden: Sequence[int] = (128,)
  num_classes: int = 10
  activation: Callable = nn.relu
  dropout_rate: float = 0.0
  dtype: Any = None  # compute dtype; None: that of the inputs and parameters (float64 under x64), as in Flax
  param_dtype: Any = jnp.float32

  @linen.compact
  def __call__(self, x, train: bool = False):
    pr = precision(self)
    x = nn.flatten(jnp.asarray(x, jnp.float32).reshape((x.shape[0], -1)))
    for width in self.hidden:
      x = self.activation(Dense(width, **pr)(x))
      if self.dropout_rate:
        x = Dropout(self.dropout_rate)(x, train=train)
    return Dense(self.num_classes, **pr)(x)


class CNN(linen.Module):
  """The seed CNN: Conv(32, 3x3, VALID) + ReLU -> flatten -> Dense(10). Returns logits.

  The input size is inferred at ``init``. PyTorch equivalent::

      class CNN(nn.Module):
          def __init__(self):
              super().__init__()
              self.conv1 = nn.Conv2d(1, 32, kernel_size=3)   # no activation= argument here
              self.fc1 = nn.Linear(32 * 26 * 26, 10)
          def forward(self, x):
              x = F.relu(self.conv1(x))                      # the ReLU belongs in forward
              return self.fc1(x.flatten(1))

  Note:
    The seed notebook wrote ``nn.Conv2d(1, 32, kernel_size=3, activation=F.relu)``;
    PyTorch rejects that (``Conv2d`` has no ``activation`` argument): the ReLU is
    applied in ``forward``, as above and as here. PyTorch also flattens NCHW, so
    ``fc1``'s rows are ordered differently from this model's NHWC flatten.
  """

  features: int = 32
  kernel_size: int = 3
  num_classes: int = 10
  dtype: Any = None  # compute dtype; None: that of the inputs and parameters (float64 under x64), as in Flax
  param_dtype: Any = jnp.float32

  @linen.compact
  def __call__(self, x, train: bool = False):  # noqa: ARG002  (every model takes train)
    pr = precision(self)
    x = _images("CNN", jnp.asarray(x, jnp.float32))
    x = nn.relu(Conv(self.features, (self.kernel_size, self.kernel_size), padding="VALID", **pr)(x))
    return Dense(self.num_classes, **pr)(nn.flatten(x))


class LeNet(linen.Module):
  """A LeNet-style CNN: two [conv 3x3 SAME -> batch norm -> ReLU -> max-pool 2] blocks,
  then Dense(128) + ReLU -> dropout -> Dense(num_classes). Returns logits.

  ``train=True`` uses batch statistics and dropout: call
  ``apply(variables, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"])``.
  """

  features: Sequence[int] = (32, 64)
  hidden: int = 128
  num_classes: int = 10
  dropout_rate: float = 0.25
  bn_momentum: float = 0.9
  dtype: Any = None  # compute dtype; None: that of the inputs and parameters (float64 under x64), as in Flax
  param_dtype: Any = jnp.float32

  @linen.compact
  def __call__(self, x, train: bool = False):
    pr = precision(self)
    x = _images("LeNet", jnp.asarray(x, jnp.float32))
    for f in self.features:
      x = Conv(f, (3, 3), padding="SAME", use_bias=False, kernel_init=nn.he_normal, **pr)(x)
      x = BatchNorm(momentum=self.bn_momentum, **pr)(x, train=train)
      x = nn.max_pool(nn.relu(x), 2, padding="SAME")
    x = nn.relu(Dense(self.hidden, kernel_init=nn.he_normal, **pr)(nn.flatten(x)))
    x = Dropout(self.dropout_rate)(x, train=train)
    return Dense(self.num_classes, **pr)(x)
