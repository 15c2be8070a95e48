"""The loader core: an explicit name map from checkpoint keys to dlfunc variables.

Every loader in :mod:`dlfunc.pretrained` reduces to three steps:

1. read the checkpoint into a plain mapping ``name -> numpy array``
   (:func:`read_checkpoint`: ``.safetensors``, ``.npz``, ``.pth``/``.pt``/``.bin``);
2. write down, per architecture, a list of :class:`Entry` — checkpoint key,
   destination path in the Flax variables and the layout conversion;
3. :func:`assign` checks the whole map against the checkpoint and the model
   (every key present, nothing unexpected, every shape equal, every model
   leaf filled) and only then builds the variables, so a bad checkpoint is
   never half-loaded. (big_vision's ``models/common.py`` habit.)
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np


class WeightLoadError(ValueError):
  """A checkpoint does not fit the model: missing / unexpected keys or a shape mismatch."""


class Entry(NamedTuple):
  """One line of a name map.

  Attributes:
    key: the checkpoint's name (``"layer1.0.conv1.weight"``).
    path: where it goes in the Flax variables,
      ``("params", "layer1_0", "conv1", "kernel")``.
    convert: the layout conversion (:func:`conv_oihw`, :func:`linear_t`, :func:`same`).
  """

  key: str
  path: tuple[str, ...]
  convert: Callable[[np.ndarray], np.ndarray]


# -- layout conversions -------------------------------------------------------------------------------------------


def same(w: np.ndarray) -> np.ndarray:
  """No change (Keras kernels, biases, norm vectors, embedding tables)."""
  return w


def conv_oihw(w: np.ndarray) -> np.ndarray:
  """PyTorch conv weight ``(out, in, kh, kw)`` -> HWIO kernel ``(kh, kw, in, out)``."""
  return w.transpose(2, 3, 1, 0) if w.ndim == 4 else w


def linear_t(w: np.ndarray) -> np.ndarray:
  """PyTorch ``nn.Linear.weight`` ``(out, in)`` -> kernel ``(in, out)``."""
  return w.T if w.ndim == 2 else w


# -- name-map building blocks -------------------------------------------------------------------------------------


def torch_conv(key: str, path: Sequence[str], bias: bool = False) -> list[Entry]:
  """``{key}.weight`` (OIHW) [and ``{key}.bias``] -> ``params/{path}/kernel`` [``bias``]."""
  out = [Entry(f"{key}.weight", ("params", *path, "kernel"), conv_oihw)]
  if bias:
    out.append(Entry(f"{key}.bias", ("params", *path, "bias"), same))
  return out


def torch_linear(key: str, path: Sequence[str], convert=linear_t) -> list[Entry]:
  """``{key}.weight`` (out, in) and ``{key}.bias`` -> ``params/{path}/{kernel,bias}``."""
  return [
    Entry(f"{key}.weight", ("params", *path, "kernel"), convert),
    Entry(f"{key}.bias", ("params", *path, "bias"), same),
  ]


def torch_norm(key: str, path: Sequence[str], running: bool = True) -> list[Entry]:
  """BatchNorm/LayerNorm ``weight``/``bias`` -> ``scale``/``bias``; BN running stats -> ``batch_stats``."""
  out = [
    Entry(f"{key}.weight", ("params", *path, "scale"), same),
    Entry(f"{key}.bias", ("params", *path, "bias"), same),
  ]
  if running:
    out += [
      Entry(f"{key}.running_mean", ("batch_stats", *path, "mean"), same),
      Entry(f"{key}.running_var", ("batch_stats", *path, "var"), same),
    ]
  return out


def keras_conv(name: str, path: Sequence[str], bias: bool = True) -> list[Entry]:
  """Keras ``{name}/kernel`` (already HWIO) [and ``{name}/bias``]."""
  out = [Entry(f"{name}/kernel", ("params", *path, "kernel"), same)]
  if bias:
    out.append(Entry(f"{name}/bias", ("params", *path, "bias"), same))
  return out


def keras_bn(name: str, path: Sequence[str]) -> list[Entry]:
  """Keras ``gamma``/``beta``/``moving_mean``/``moving_variance``."""
  return [
    Entry(f"{name}/gamma", ("params", *path, "scale"), same),
    Entry(f"{name}/beta", ("params", *path, "bias"), same),
    Entry(f"{name}/moving_mean", ("batch_stats", *path, "mean"), same),
    Entry(f"{name}/moving_variance", ("batch_stats", *path, "var"), same),
  ]


# -- reading ------------------------------------------------------------------------------------------------------


def to_numpy(value: Any) -> np.ndarray:
  """A numpy array from a numpy/JAX array or a (CPU or GPU) torch tensor."""
  if hasattr(value, "detach"):  # torch.Tensor, without importing torch
    value = value.detach().cpu()
    if str(value.dtype) == "torch.bfloat16":
      value = value.float()
    return value.numpy()
  return np.asarray(value)


def read_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Read a checkpoint file into ``{name: numpy array}``.

  ``.safetensors`` (needs ``safetensors``), ``.npz`` (numpy) and
  ``.pth``/``.pt``/``.bin`` (needs torch; read with ``weights_only=True``).
  A file that cannot be read (truncated, wrong format) raises
  :class:`WeightLoadError` naming the file.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"checkpoint {path!r} does not exist; pass the path of a .safetensors, .npz or .pth file.")
  ext = os.path.splitext(path)[1].lower()
  try:
    if ext == ".safetensors":
      from safetensors.numpy import load_file

      return dict(load_file(path))
    if ext == ".npz":
      with open(path, "rb") as f, np.load(f, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
    if ext in (".pth", ".pt", ".bin"):
      try:
        import torch  # pyright: ignore[reportMissingImports]  (optional: only for .pt files)
      except ImportError as e:
        raise ImportError(
          f"reading {path!r} needs PyTorch (pip install torch); or convert it once to .safetensors "
          "or .npz, which dlfunc reads without torch."
        ) from e
      state = torch.load(path, map_location="cpu", weights_only=True)
      if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
      return {k: to_numpy(v) for k, v in state.items()}
  except (ImportError, FileNotFoundError):
    raise
  except Exception as e:  # noqa: BLE001 - every reader has its own exception types
    raise WeightLoadError(
      f"could not read checkpoint {path!r} ({type(e).__name__}: {e}); "
      "the file is truncated or not in the format its extension says."
    ) from e
  raise WeightLoadError(f"unknown checkpoint extension {ext!r} for {path!r}; use .safetensors, .npz or .pth.")


# -- assigning ----------------------------------------------------------------------------------------------------


def _leaves(tree: Mapping, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, Mapping):
      out.update(_leaves(v, prefix + (k,)))
    else:
      out[prefix + (k,)] = v
  return out


def _shape(x) -> tuple[int, ...]:
  return tuple(int(d) for d in np.shape(x))


def assign(
  template: Mapping,
  source: Mapping[str, Any],
  entries: Iterable[Entry],
  *,
  ignore: Sequence[str] = (),
  skip: Sequence[str] = (),
  fill: Mapping | None = None,
  what: str = "checkpoint",
) -> dict:
  """Build Flax variables from ``source`` through the name map ``entries``.

  Args:
    template: the model's variables or their shapes (``jax.eval_shape(model.init, ...)``).
    source: ``{checkpoint key: array}`` (numpy, JAX or torch).
    entries: the name map.
    ignore: regexes of checkpoint keys that carry nothing to load
      (``num_batches_tracked``, ``position_ids``).
    skip: regexes of checkpoint keys left out on purpose (the old head).
    fill: variables for model leaves the map does not cover (a new head);
      anything else left uncovered is an error.
    what: the checkpoint's name for messages.

  Returns:
    A nested dict of ``jnp`` arrays shaped like ``template``.

  Raises:
    WeightLoadError: listing missing and unexpected keys (the first of each
      with its shape) or the first shape mismatch (key, destination and both
      shapes). Nothing is returned half-loaded.
  """
  entries = list(entries)
  ignore_re = [re.compile(p) for p in ignore]
  skip_re = [re.compile(p) for p in skip]
  keys = [k for k in source if not any(r.search(k) for r in ignore_re) and not any(r.search(k) for r in skip_re)]
  wanted = {e.key for e in entries}
  missing = [e for e in entries if e.key not in source]
  unexpected = [k for k in keys if k not in wanted]
  targets = _leaves(template)
  if missing or unexpected:
    parts = []
    if missing:
      e = missing[0]
      exp = _shape(targets[e.path]) if e.path in targets else "?"
      parts.append(
        f"{len(missing)} missing key(s), first {e.key!r} (model {'/'.join(e.path)} expects shape {exp}, "
        "the checkpoint has none)"
      )
    if unexpected:
      k = unexpected[0]
      parts.append(f"{len(unexpected)} unexpected key(s), first {k!r} with shape {_shape(source[k])}")
    raise WeightLoadError(
      f"{what} does not match the model: "
      + "; ".join(parts)
      + ". Is it a checkpoint of another architecture, or truncated?"
    )
  values = {}
  for e in entries:
    if e.path not in targets:
      raise WeightLoadError(f"{what}: name map sends {e.key!r} to {'/'.join(e.path)}, which the model does not have.")
    raw = to_numpy(source[e.key])
    arr = e.convert(raw)
    want = _shape(targets[e.path])
    if arr.shape != want:
      conv = "" if e.convert is same else f" ({_shape(raw)} before {e.convert.__name__})"
      raise WeightLoadError(
        f"{what}: shape mismatch at {e.key!r} -> {'/'.join(e.path)}: checkpoint gives "
        f"{arr.shape}{conv}, model expects {want}. Check the architecture and number of classes."
      )
    values[e.path] = arr
  fill_leaves = _leaves(fill) if fill is not None else {}
  out: dict = {}
  for path, leaf in targets.items():
    if path in values:
      value = jnp.asarray(values[path], dtype=leaf.dtype)
    elif path in fill_leaves:
      value = jnp.asarray(fill_leaves[path])
    else:
      raise WeightLoadError(
        f"{what}: nothing loads model variable {'/'.join(path)} (shape {_shape(leaf)}); "
        "the name map is incomplete for this architecture."
      )
    node = out
    for k in path[:-1]:
      node = node.setdefault(k, {})
    node[path[-1]] = value
  return out


def template_of(model, *example_args, **kwargs) -> dict:
  """Shapes and dtypes of ``model.init`` without computing anything (``jax.eval_shape``)."""
  return jax.eval_shape(lambda *args: model.init(jax.random.key(0), *args, **kwargs), *example_args)
