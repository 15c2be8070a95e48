"""VGG (Simonyan & Zisserman, 2014): VGG-11 (config A) and VGG-16 (config D), with or without batch norm.

Layout (both torchvision and keras.applications): stacks of 3x3 convs with
padding 1 and ReLU, a 2x2/2 max-pool after each block, then three dense
layers ``fc1`` (4096) -> ``fc2`` (4096) -> ``fc3`` (the head). torchvision
average-pools the features adaptively to 7x7 first, so any input size of at
least 32 pixels works; at 224x224 that pooling is the identity, which is
all Keras supports.

Module names: ``block{b}_conv{i}`` (and ``block{b}_bn{i}`` with batch norm),
``fc1``, ``fc2``, ``fc3``.

Warning:
  This module flattens the 7x7x512 map in NHWC order (H, W, C), as Keras
  does. torchvision flattens NCHW (C, H, W); :func:`dlfunc.pretrained.load_torchvision`
  permutes the rows of ``classifier.0.weight`` once so a torch checkpoint gives
  the same numbers.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as linen
import jax
import jax.numpy as jnp

from dlfunc import nn
from dlfunc.models._checks import check_nhwc
from dlfunc.models._layers import BatchNorm, Conv, Dense, Dropout, precision

# Channels per conv, block by block (torchvision's cfgs "A" and "D").
CONFIGS = {
  11: ((64,), (128,), (256, 256), (512, 512), (512, 512)),
  13: ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
  16: ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
  19: ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}


def adaptive_avg_pool(x: jax.Array, output_size: Sequence[int]) -> jax.Array:
  """PyTorch's ``AdaptiveAvgPool2d`` on NHWC input.

  Output cell ``i`` averages input rows ``floor(i H / h)`` to ``ceil((i + 1) H / h)``
  (bins overlap when ``H`` is not a multiple of ``h``; small inputs are repeated).
  """
  n, height, width, c = x.shape
  oh, ow = output_size
  if (height, width) == (oh, ow):
    return x
  if height % oh == 0 and width % ow == 0:
    return x.reshape(n, oh, height // oh, ow, width // ow, c).mean(axis=(2, 4))
  rows = []
  for i in range(oh):
    r0, r1 = (i * height) // oh, math.ceil((i + 1) * height / oh)
    cols = []
    for j in range(ow):
      c0, c1 = (j * width) // ow, math.ceil((j + 1) * width / ow)
      cols.append(x[:, r0:r1, c0:c1, :].mean(axis=(1, 2)))
    rows.append(jnp.stack(cols, axis=1))
  return jnp.stack(rows, axis=1)


class VGG(linen.Module):
  """VGG over NHWC images; returns logits.

  Args:
    depth: 11, 13, 16 or 19 (torchvision configs A, B, D, E).
    batch_norm: a BatchNorm after every conv (torchvision's ``vgg16_bn``).
    num_classes: width of the head ``fc3``; ``0`` leaves it out and returns
      the ``fc2`` activations (the usual transfer-learning features).
    include_top: ``False`` leaves out the whole classifier (``fc1``..``fc3``)
      and returns the feature map after the last max-pool, like
      ``keras.applications.VGG16(include_top=False)``.
    fc_width: width of ``fc1`` and ``fc2`` (4096 in the published models).
    dropout_rate: dropout after ``fc1`` and ``fc2`` in training (torchvision:
      0.5; Keras' VGG has none).
  """

  depth: int = 16
  batch_norm: bool = False
  num_classes: int = 1000
  include_top: bool = True
  fc_width: int = 4096
  dropout_rate: float = 0.5
  dtype: Any = None  # compute dtype; None: that of the inputs and parameters (float64 under x64), as in Flax
  param_dtype: Any = jnp.float32

  @linen.compact
  def __call__(self, x, train: bool = False):
    pr = precision(self)
    if self.depth not in CONFIGS:
      raise ValueError(f"VGG: depth must be one of {sorted(CONFIGS)}, got {self.depth}.")
    x = jnp.asarray(x, jnp.float32)
    if x.ndim != 4:
      raise ValueError(f"VGG expects images shaped (batch, height, width, channels), got shape {tuple(x.shape)}.")
    check_nhwc(type(self).__name__, x)
    for b, block in enumerate(CONFIGS[self.depth], start=1):
      for i, features in enumerate(block, start=1):
        x = Conv(
          features,
          (3, 3),
          1,
          ((1, 1), (1, 1)),
          name=f"block{b}_conv{i}",
          kernel_init=jax.nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
          **pr,
        )(x)
        if self.batch_norm:
          x = BatchNorm(momentum=0.9, epsilon=1e-5, name=f"block{b}_bn{i}", **pr)(x, train)
        x = nn.relu(x)
      x = nn.max_pool(x, 2, 2)
    if not self.include_top:
      return x
    x = nn.flatten(adaptive_avg_pool(x, (7, 7)))
    x = nn.relu(Dense(self.fc_width, name="fc1", **pr)(x))
    x = Dropout(self.dropout_rate)(x, train)
    x = nn.relu(Dense(self.fc_width, name="fc2", **pr)(x))
    x = Dropout(self.dropout_rate)(x, train)
    if self.num_classes == 0:
      return x
    return Dense(self.num_classes, name="fc3", **pr)(x)


def VGG11(num_classes: int = 1000, **kwargs) -> VGG:
  """VGG-11 (config A). See :class:`VGG`."""
  return VGG(11, False, num_classes, **kwargs)


def VGG11BN(num_classes: int = 1000, **kwargs) -> VGG:
  """VGG-11 with batch norm (torchvision ``vgg11_bn``). See :class:`VGG`."""
  return VGG(11, True, num_classes, **kwargs)


def VGG16(num_classes: int = 1000, **kwargs) -> VGG:
  """VGG-16 (config D). See :class:`VGG`."""
  return VGG(16, False, num_classes, **kwargs)


def VGG16BN(num_classes: int = 1000, **kwargs) -> VGG:
  """VGG-16 with batch norm (torchvision ``vgg16_bn``). See :class:`VGG`."""
  return VGG(16, True, num_classes, **kwargs)
