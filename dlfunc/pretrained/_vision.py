"""ResNet and VGG weights from torchvision state_dicts and keras.applications models.

Both loaders return ``(model, variables)`` with
``model.apply(variables, x, train=False)`` reproducing the source network on
NHWC input (``x_torch.permute(0, 2, 3, 1)``), and share one head option, as
timm's ``num_classes``:

* ``num_classes=None``: keep the checkpoint's head;
* ``num_classes=0``: leave the head out (the model returns features);
* ``num_classes=k``: drop the checkpoint's head and attach a new,
  freshly initialised one with ``k`` outputs (``key`` seeds it).
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from dlfunc.models._layers import Dense
from dlfunc.models._resnet import ResNet, ResNet18, ResNet34, ResNet50, ResNet101, ResNet152
from dlfunc.models._vgg import VGG, VGG11, VGG11BN, VGG16, VGG16BN
from dlfunc.pretrained._core import (
  Entry,
  WeightLoadError,
  assign,
  keras_bn,
  keras_conv,
  read_checkpoint,
  template_of,
  torch_conv,
  torch_linear,
  torch_norm,
)

_EXAMPLE = (1, 32, 32, 3)  # parameter shapes of both families do not depend on the image size


# -- name maps ----------------------------------------------------------------------------------------------------


def _has_downsample(model: ResNet, stage: int, j: int) -> bool:
  return j == 0 and (stage > 0 or model.block == "bottleneck")


def torchvision_resnet_map(model: ResNet, head: bool = True) -> list[Entry]:
  """torchvision ResNet keys -> dlfunc :class:`~dlfunc.models.ResNet` variables.

  ``conv1``/``bn1``; ``layer{s}.{j}.conv{k}``/``.bn{k}``, ``.downsample.0`` (1x1 conv)
  and ``.downsample.1`` (BN) -> ``layer{s}_{j}/downsample_{conv,bn}``; ``fc``.
  """
  e = torch_conv("conv1", ["conv1"]) + torch_norm("bn1", ["bn1"])
  convs = 2 if model.block == "basic" else 3
  for s, n in enumerate(model.stage_sizes):
    for j in range(n):
      src, dst = f"layer{s + 1}.{j}", f"layer{s + 1}_{j}"
      for k in range(1, convs + 1):
        e += torch_conv(f"{src}.conv{k}", [dst, f"conv{k}"]) + torch_norm(f"{src}.bn{k}", [dst, f"bn{k}"])
      if _has_downsample(model, s, j):
        e += torch_conv(f"{src}.downsample.0", [dst, "downsample_conv"])
        e += torch_norm(f"{src}.downsample.1", [dst, "downsample_bn"])
  if head:
    e += torch_linear("fc", ["fc"])
  return e


def keras_resnet_map(model: ResNet, head: bool = True) -> list[Entry]:
  """keras.applications ResNet (v1) names -> dlfunc ``ResNet(variant="keras")`` variables.

  ``conv1_conv``/``conv1_bn``; ``conv{s+2}_block{j+1}_{k}_conv``/``_bn`` -> ``layer{s+1}_{j}/conv{k}``/``bn{k}``;
  the shortcut ``_0_conv``/``_0_bn`` -> ``downsample_{conv,bn}``; ``predictions`` -> ``fc``.
  """
  e = keras_conv("conv1_conv", ["conv1"]) + keras_bn("conv1_bn", ["bn1"])
  for s, n in enumerate(model.stage_sizes):
    for j in range(n):
      src, dst = f"conv{s + 2}_block{j + 1}", f"layer{s + 1}_{j}"
      for k in range(1, 4):
        e += keras_conv(f"{src}_{k}_conv", [dst, f"conv{k}"]) + keras_bn(f"{src}_{k}_bn", [dst, f"bn{k}"])
      if _has_downsample(model, s, j):
        e += keras_conv(f"{src}_0_conv", [dst, "downsample_conv"]) + keras_bn(f"{src}_0_bn", [dst, "downsample_bn"])
  if head:
    e += keras_conv("predictions", ["fc"])
  return e


def vgg_fc1_chw_to_hwc(w: np.ndarray) -> np.ndarray:
  """torchvision ``classifier.0.weight`` ``(out, C*7*7)`` in (C, H, W) order -> kernel ``(7*7*C, out)`` in (H, W, C).

  ``W.reshape(out, C, 7, 7).transpose(2, 3, 1, 0).reshape(49 * C, out)``.
  """
  if w.ndim != 2 or w.shape[1] % 49:
    return w.T
  out, cin = w.shape[0], w.shape[1] // 49
  return w.reshape(out, cin, 7, 7).transpose(2, 3, 1, 0).reshape(49 * cin, out)


def _vgg_blocks(model: VGG):
  from dlfunc.models._vgg import CONFIGS

  return CONFIGS[model.depth]


def torchvision_vgg_map(model: VGG, head: bool = True) -> list[Entry]:
  """torchvision VGG keys -> dlfunc :class:`~dlfunc.models.VGG` variables.

  ``features.{i}`` counts every module of ``nn.Sequential`` (conv, [BN,] ReLU, pools), so
  VGG-16 convs sit at 0, 2, 5, 7, 10, ... (3 per conv with BN); ``classifier.{0,3,6}`` -> ``fc1..fc3``,
  with ``classifier.0`` permuted from (C, H, W) to (H, W, C) rows (:func:`vgg_fc1_chw_to_hwc`).
  """
  e: list[Entry] = []
  idx = 0
  for b, block in enumerate(_vgg_blocks(model), start=1):
    for i in range(1, len(block) + 1):
      e += torch_conv(f"features.{idx}", [f"block{b}_conv{i}"], bias=True)
      if model.batch_norm:
        e += torch_norm(f"features.{idx + 1}", [f"block{b}_bn{i}"])
      idx += 3 if model.batch_norm else 2
    idx += 1  # max-pool
  if model.include_top:
    e += torch_linear("classifier.0", ["fc1"], convert=vgg_fc1_chw_to_hwc) + torch_linear("classifier.3", ["fc2"])
    if head:
      e += torch_linear("classifier.6", ["fc3"])
  return e


def keras_vgg_map(model: VGG, head: bool = True) -> list[Entry]:
  """keras.applications VGG names (``block{b}_conv{i}``, ``fc1``, ``fc2``, ``predictions``) -> dlfunc VGG."""
  e: list[Entry] = []
  for b, block in enumerate(_vgg_blocks(model), start=1):
    for i in range(1, len(block) + 1):
      e += keras_conv(f"block{b}_conv{i}", [f"block{b}_conv{i}"])
  if model.include_top:
    e += keras_conv("fc1", ["fc1"]) + keras_conv("fc2", ["fc2"])
    if head:
      e += keras_conv("predictions", ["fc3"])
  return e


# -- the loaders --------------------------------------------------------------------------------------------------

_TORCHVISION: dict[str, tuple[Callable[..., Any], str, str]] = {
  # name: (constructor, head key prefix, dlfunc head name)
  "resnet18": (ResNet18, "fc", "fc"),
  "resnet34": (ResNet34, "fc", "fc"),
  "resnet50": (ResNet50, "fc", "fc"),
  "resnet101": (ResNet101, "fc", "fc"),
  "resnet152": (ResNet152, "fc", "fc"),
  "vgg11": (VGG11, "classifier.6", "fc3"),
  "vgg11_bn": (VGG11BN, "classifier.6", "fc3"),
  "vgg16": (VGG16, "classifier.6", "fc3"),
  "vgg16_bn": (VGG16BN, "classifier.6", "fc3"),
}

_KERAS: dict[str, Callable[..., Any]] = {
  "resnet50": lambda n, top: ResNet50(n, variant="keras"),
  "resnet101": lambda n, top: ResNet101(n, variant="keras"),
  "resnet152": lambda n, top: ResNet152(n, variant="keras"),
  "vgg16": lambda n, top: VGG16(n, include_top=top),
}


def _name_map(model, family: str, head: bool) -> list[Entry]:
  if isinstance(model, ResNet):
    return (keras_resnet_map if family == "keras" else torchvision_resnet_map)(model, head)
  return (keras_vgg_map if family == "keras" else torchvision_vgg_map)(model, head)


def _build(make, source, head_key, head_name, num_classes, key, family, what, ignore, include_top=True):
  src_classes = int(np.shape(source[head_key])[0 if family == "torch" else -1]) if head_key in source else None
  keep = num_classes is None
  if keep:  # a torch checkpoint without its head is reported as such; a headless Keras model loads headless
    classes = src_classes if src_classes is not None else (1000 if family == "torch" else 0)
  else:
    classes = int(num_classes)
  model = make(classes, include_top) if family == "keras" else make(classes)
  template = template_of(model, jnp.zeros(_EXAMPLE), train=False)
  entries = _name_map(model, family, head=keep and classes > 0)
  fill = None
  if not keep and classes > 0 and head_name in template["params"]:
    fin = template["params"][head_name]["kernel"].shape[0]
    head = Dense(classes).init(key if key is not None else jax.random.key(0), jnp.zeros((1, fin)))
    fill = {"params": {head_name: head["params"]}}
  if fill is None and classes > 0 and head_name not in template["params"]:
    raise ValueError(f"{what}: the model has no classifier to put a {classes}-way head on; load it with a top.")
  prefix = head_key.rsplit("/", 1)[0] if family == "keras" else head_key.rsplit(".", 1)[0]
  skip = () if keep else (rf"^{re.escape(prefix)}[./]",)
  variables = assign(template, source, entries, ignore=ignore, skip=skip, fill=fill, what=what)
  return model, variables


def load_torchvision(name: str, state_dict_or_path, *, num_classes: int | None = None, key: jax.Array | None = None):
  """A torchvision ResNet/VGG checkpoint as a dlfunc model.

  Args:
    name: ``resnet18``, ``resnet34``, ``resnet50``, ``resnet101``, ``resnet152``,
      ``vgg11``, ``vgg11_bn``, ``vgg16``, ``vgg16_bn``.
    state_dict_or_path: a mapping of names to arrays (numpy or torch tensors,
      e.g. ``torchvision.models.resnet18().state_dict()``) or a ``.pth``
      (needs torch), ``.safetensors`` or ``.npz`` file.
    num_classes: ``None`` keeps the checkpoint's head, ``0`` drops it,
      ``k`` replaces it by a new ``k``-way head seeded by ``key``.

  Returns:
    ``(model, variables)``; feed NHWC images normalised as torchvision does
    (RGB in [0, 1], minus mean (0.485, 0.456, 0.406), divided by std
    (0.229, 0.224, 0.225)).

  Raises:
    WeightLoadError: wrong architecture, truncated checkpoint or mismatched
      shape; the message names the first offending key and both shapes.
  """
  if name not in _TORCHVISION:
    raise ValueError(f"load_torchvision: unknown architecture {name!r}; choose one of {sorted(_TORCHVISION)}.")
  source = state_dict_or_path
  if isinstance(source, (str, os.PathLike)):
    source = read_checkpoint(source)
  make, head_key, head_name = _TORCHVISION[name]
  return _build(
    make,
    source,
    f"{head_key}.weight",
    head_name,
    num_classes,
    key,
    "torch",
    f"torchvision {name} checkpoint",
    ignore=(r"num_batches_tracked$",),
  )


def keras_weights(model) -> dict[str, np.ndarray]:
  """``{"layer/weight": numpy array}`` for every weight of a Keras 3 model (``w.path``)."""
  import keras

  return {w.path: np.asarray(keras.ops.convert_to_numpy(w.value)) for w in model.weights}


def load_keras(keras_model_or_path, *, num_classes: int | None = None, key: jax.Array | None = None):
  """A keras.applications ResNet50/101/152 or VGG16 (model, ``.keras`` or ``.h5`` file) as a dlfunc model.

  The architecture is read from the Keras model's name (``resnet50``,
  ``vgg16``, ...); a model built with ``include_top=False`` gives a dlfunc
  model without head (ResNet: pooled features, i.e. Keras ``pooling="avg"``;
  VGG: the last feature map). Loading a file needs Keras 3.

  Returns:
    ``(model, variables)``. Keras' own logits come from
    ``classifier_activation=None``; feed the same (caffe-preprocessed) NHWC input.
  """
  kmodel = keras_model_or_path
  if isinstance(kmodel, (str, os.PathLike)):
    path = os.fspath(kmodel)
    if not os.path.exists(path):
      raise FileNotFoundError(f"load_keras: {path!r} does not exist; pass a Keras model or a .keras/.h5 file.")
    try:
      import keras
    except ImportError as e:
      raise ImportError("load_keras on a file needs Keras 3 (pip install keras).") from e
    try:
      kmodel = keras.saving.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001
      raise WeightLoadError(
        f"could not read Keras model {path!r} ({type(e).__name__}: {e}); "
        "the file is truncated or not a saved Keras model."
      ) from e
  name = str(getattr(kmodel, "name", "")).lower()
  if name not in _KERAS:
    raise ValueError(
      f"load_keras: cannot tell the architecture of Keras model {name!r}; "
      f"supported: {sorted(_KERAS)} (keras.applications names)."
    )
  source = keras_weights(kmodel)
  include_top = "predictions/kernel" in source or not name.startswith("vgg")
  return _build(
    _KERAS[name],
    source,
    "predictions/kernel",
    "fc3" if name.startswith("vgg") else "fc",
    num_classes,
    key,
    "keras",
    f"Keras {name}",
    ignore=(),
    include_top=include_top,
  )
