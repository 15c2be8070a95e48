"""ResNet (He et al., 2015) in the layouts of torchvision and keras.applications.

Two variants share one module so that either family of checkpoints loads:

* ``variant="torchvision"`` (default): torchvision's ResNet. Convolutions
  have no bias; the bottleneck puts the stride on the 3x3 conv ("v1.5");
  BatchNorm epsilon 1e-5 and PyTorch momentum 0.1 (== 0.9 here).
* ``variant="keras"``: ``keras.applications.ResNet50/101/152`` ("v1"). The
  stride sits on the first 1x1 conv of the bottleneck, every conv has a bias,
  BatchNorm epsilon is 1.001e-5 and momentum 0.99.

Padding is explicit everywhere PyTorch pads explicitly (stem 7x7/2 pad 3,
3x3 pad 1, max-pool 3/2 pad 1): ``'SAME'`` pads (0, 1) for stride 2 on an
even size and would give different numbers.

Module names (what the weight loaders in :mod:`dlfunc.pretrained` map onto):
``conv1``, ``bn1``, ``layer{1..4}_{j}`` with ``conv{1,2[,3]}``, ``bn{1,2[,3]}``,
``downsample_conv``, ``downsample_bn``; the head is ``fc``.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as linen
import jax
import jax.numpy as jnp

from dlfunc import nn
from dlfunc.models._checks import check_nhwc
from dlfunc.models._layers import BatchNorm, Conv, Dense, precision

_VARIANTS = ("torchvision", "keras")
_PAD1 = ((1, 1), (1, 1))


def _bn_args(variant: str) -> dict:
  if variant == "keras":
    return {"epsilon": 1.001e-5, "momentum": 0.99}
  return {"epsilon": 1e-5, "momentum": 0.9}


def _conv_init():
  # torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu").
  return jax.nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class BasicBlock(linen.Module):
  """Two 3x3 convs with a residual connection (ResNet-18/34). Expansion 1."""

  features: int
  strides: int = 1
  variant: str = "torchvision"
  expansion = 1
  dtype: Any = None  # compute dtype; None: that of the inputs and parameters (float64 under x64), as in Flax
  param_dtype: Any = jnp.float32

  @linen.compact
  def __call__(self, x, train: bool = False):
    pr = precision(self)
    bias = self.variant == "keras"
    bn = _bn_args(self.variant)
    out = Conv(self.features, (3, 3), self.strides, _PAD1, use_bias=bias, kernel_init=_conv_init(), name="conv1", **pr)(
      x
    )
    out = nn.relu(BatchNorm(**bn, name="bn1", **pr)(out, train))
    out = Conv(self.features, (3, 3), 1, _PAD1, use_bias=bias, kernel_init=_conv_init(), name="conv2", **pr)(out)
    out = BatchNorm(**bn, name="bn2", **pr)(out, train)
    if self.strides != 1 or x.shape[-1] != self.features:
      x = Conv(
        self.features, (1, 1), self.strides, use_bias=bias, kernel_init=_conv_init(), name="downsample_conv", **pr
      )(x)
      x = BatchNorm(**bn, name="downsample_bn", **pr)(x, train)
    return nn.relu(out + x)


class Bottleneck(linen.Module):
  """1x1 reduce -> 3x3 -> 1x1 expand (x4), with a residual connection (ResNet-50/101).

  torchvision ("v1.5") strides the 3x3 conv; Keras ("v1") strides the first 1x1.
  """

  features: int
  strides: int = 1
  variant: str = "torchvision"
  expansion = 4
  dtype: Any = None  # compute dtype; None: that of the inputs and parameters (float64 under x64), as in Flax
  param_dtype: Any = jnp.float32

  @linen.compact
  def __call__(self, x, train: bool = False):
    pr = precision(self)
    keras = self.variant == "keras"
    bn = _bn_args(self.variant)
    s1, s2 = (self.strides, 1) if keras else (1, self.strides)
    out_features = self.features * self.expansion
    out = Conv(self.features, (1, 1), s1, use_bias=keras, kernel_init=_conv_init(), name="conv1", **pr)(x)
    out = nn.relu(BatchNorm(**bn, name="bn1", **pr)(out, train))
    out = Conv(self.features, (3, 3), s2, _PAD1, use_bias=keras, kernel_init=_conv_init(), name="conv2", **pr)(out)
    out = nn.relu(BatchNorm(**bn, name="bn2", **pr)(out, train))
    out = Conv(out_features, (1, 1), 1, use_bias=keras, kernel_init=_conv_init(), name="conv3", **pr)(out)
    out = BatchNorm(**bn, name="bn3", **pr)(out, train)
    if self.strides != 1 or x.shape[-1] != out_features:
      x = Conv(
        out_features, (1, 1), self.strides, use_bias=keras, kernel_init=_conv_init(), name="downsample_conv", **pr
      )(x)
      x = BatchNorm(**bn, name="downsample_bn", **pr)(x, train)
    return nn.relu(out + x)


_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(linen.Module):
  """A residual network over NHWC images. Returns logits (or pooled features).

  Args:
    stage_sizes: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
    block: ``"basic"`` or ``"bottleneck"``.
    num_classes: width of the ``fc`` head; ``0`` leaves the head out and
      returns the global-average-pooled features (as timm's ``num_classes=0``).
    variant: ``"torchvision"`` (v1.5) or ``"keras"`` (v1); see the module doc.
    width: channels of the first stage (64 in every published ResNet; smaller
      values give cheap models for tests and small data).
    stem: ``"imagenet"`` (7x7/2 conv + 3x3/2 max-pool) or ``"small"``
      (one 3x3/1 conv, no pool: for 8x8 or 32x32 images).

  ``apply(variables, x, train=False)`` uses the running BatchNorm statistics;
  ``train=True`` needs ``mutable=["batch_stats"]``.

  Warning:
    torchvision's ``resnet50`` and ``keras.applications.ResNet50`` are
    different networks (stride placement, conv biases, BN epsilon) and expect
    different input preprocessing (torch: RGB in [0, 1] normalised by the
    ImageNet mean/std; Keras: BGR minus the caffe mean). Load each checkpoint
    into its own variant.

  Example:
    >>> import jax
    >>> model = ResNet18(num_classes=10, width=8)
    >>> variables = model.init(jax.random.key(0), jnp.ones((1, 32, 32, 3)))
    >>> model.apply(variables, jnp.ones((2, 32, 32, 3))).shape
    (2, 10)
  """

  stage_sizes: Sequence[int]
  block: str = "basic"
  num_classes: int = 1000
  variant: str = "torchvision"
  width: int = 64
  stem: str = "imagenet"
  dtype: Any = None  # compute dtype; None: that of the inputs and parameters (float64 under x64), as in Flax
  param_dtype: Any = jnp.float32

  @linen.compact
  def __call__(self, x, train: bool = False):
    pr = precision(self)
    if self.variant not in _VARIANTS:
      raise ValueError(f"ResNet: variant must be one of {_VARIANTS}, got {self.variant!r}.")
    if self.block not in _BLOCKS:
      raise ValueError(f"ResNet: block must be 'basic' or 'bottleneck', got {self.block!r}.")
    x = jnp.asarray(x, jnp.float32)
    if x.ndim != 4:
      raise ValueError(f"ResNet expects images shaped (batch, height, width, channels), got shape {tuple(x.shape)}.")
    check_nhwc(type(self).__name__, x)
    keras = self.variant == "keras"
    if self.stem == "imagenet":
      x = Conv(self.width, (7, 7), 2, ((3, 3), (3, 3)), use_bias=keras, kernel_init=_conv_init(), name="conv1", **pr)(x)
      x = nn.relu(BatchNorm(**_bn_args(self.variant), name="bn1", **pr)(x, train))
      x = nn.max_pool(x, 3, 2, _PAD1)  # after ReLU, -inf and zero padding agree (Keras pads zeros)
    elif self.stem == "small":
      x = Conv(self.width, (3, 3), 1, _PAD1, use_bias=keras, kernel_init=_conv_init(), name="conv1", **pr)(x)
      x = nn.relu(BatchNorm(**_bn_args(self.variant), name="bn1", **pr)(x, train))
    else:
      raise ValueError(f"ResNet: stem must be 'imagenet' or 'small', got {self.stem!r}.")
    block = _BLOCKS[self.block]
    for i, n in enumerate(self.stage_sizes):
      for j in range(n):
        strides = 2 if i > 0 and j == 0 else 1
        x = block(self.width * 2**i, strides, self.variant, name=f"layer{i + 1}_{j}", **pr)(x, train)
    x = jnp.mean(x, axis=(1, 2))
    if self.num_classes == 0:
      return x
    return Dense(self.num_classes, name="fc", **pr)(x)


def ResNet18(num_classes: int = 1000, **kwargs) -> ResNet:
  """ResNet-18: basic blocks (2, 2, 2, 2), torchvision layout. See :class:`ResNet`."""
  return ResNet((2, 2, 2, 2), "basic", num_classes, **kwargs)


def ResNet34(num_classes: int = 1000, **kwargs) -> ResNet:
  """ResNet-34: basic blocks (3, 4, 6, 3), torchvision layout. See :class:`ResNet`."""
  return ResNet((3, 4, 6, 3), "basic", num_classes, **kwargs)


def ResNet50(num_classes: int = 1000, **kwargs) -> ResNet:
  """ResNet-50: bottlenecks (3, 4, 6, 3); ``variant="keras"`` for keras.applications. See :class:`ResNet`."""
  return ResNet((3, 4, 6, 3), "bottleneck", num_classes, **kwargs)


def ResNet101(num_classes: int = 1000, **kwargs) -> ResNet:
  """ResNet-101: bottlenecks (3, 4, 23, 3); ``variant="keras"`` for keras.applications. See :class:`ResNet`."""
  return ResNet((3, 4, 23, 3), "bottleneck", num_classes, **kwargs)


def ResNet152(num_classes: int = 1000, **kwargs) -> ResNet:
  """ResNet-152: bottlenecks (3, 8, 36, 3). See :class:`ResNet`."""
  return ResNet((3, 8, 36, 3), "bottleneck", num_classes, **kwargs)
