"""Weight converters: Keras 3 and PyTorch recurrent layers -> :mod:`dlfunc.nn` cell params.

Explicit name maps that check every shape. Keras already uses this layout
(``x W``, gates ``i f c o`` / ``z r h``); PyTorch stores ``W x`` (transposed),
two biases and, for the GRU, the gate order ``r z n``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from dlfunc.nn._checks import GATES, check_cell


def _np(a) -> np.ndarray:
  if hasattr(a, "detach"):  # a torch tensor
    a = a.detach().cpu().numpy()
  return np.asarray(a)


def _expect(what: str, a: np.ndarray, shape: tuple[int, ...]) -> None:
  if tuple(a.shape) != tuple(shape):
    raise ValueError(f"{what}: expected shape {tuple(shape)}, got {tuple(a.shape)}.")


def from_keras(cell: str, weights: Sequence[Any], dtype=jnp.float32) -> dict:
  """Cell params from a Keras 3 ``SimpleRNN``/``LSTM``/``GRU`` layer's ``get_weights()``.

  Args:
    cell: ``"rnn"`` (``SimpleRNN``), ``"lstm"`` or ``"gru"`` (``reset_after=True``,
      the Keras 3 default: its ``bias`` is ``(2, 3H)``, input bias then recurrent bias).
    weights: ``[kernel, recurrent_kernel, bias]`` (``layer.get_weights()``; the layer
      must use ``use_bias=True``).

  Example (``weights`` as ``keras.layers.LSTM(16)`` built on 3 features returns them)::

    >>> weights = [np.zeros((3, 64)), np.zeros((16, 64)), np.zeros(64)]
    >>> {k: v.shape for k, v in from_keras("lstm", weights).items()}
    {'kernel': (3, 64), 'recurrent_kernel': (16, 64), 'bias': (64,)}
  """
  cell = check_cell(cell)
  if len(weights) != 3:
    raise ValueError(
      f"from_keras({cell!r}): expected [kernel, recurrent_kernel, bias], got {len(weights)} arrays "
      f"(layers built with use_bias=False are not supported)."
    )
  kernel, rec, bias = (_np(w) for w in weights)
  h = rec.shape[0]
  g = GATES[cell] * h
  _expect(f"from_keras({cell!r}) kernel", kernel, (kernel.shape[0], g))
  _expect(f"from_keras({cell!r}) recurrent_kernel", rec, (h, g))
  p = {"kernel": kernel, "recurrent_kernel": rec}
  if cell == "gru":
    if bias.shape == (g,):
      raise ValueError(
        "from_keras('gru'): a (3H,) bias means reset_after=False, a different cell; "
        "rebuild the Keras GRU with reset_after=True (the default)."
      )
    _expect("from_keras('gru') bias", bias, (2, g))
    p["bias"], p["recurrent_bias"] = bias[0], bias[1]
  else:
    _expect(f"from_keras({cell!r}) bias", bias, (g,))
    p["bias"] = bias
  return {k: jnp.asarray(v, dtype) for k, v in p.items()}


def to_keras(cell: str, params: Mapping[str, Any]) -> list[np.ndarray]:
  """The inverse of :func:`from_keras`: a list for ``layer.set_weights(...)``."""
  cell = check_cell(cell)
  bias = np.asarray(params["bias"])
  if cell == "gru":
    bias = np.stack([bias, np.asarray(params["recurrent_bias"])])
  return [np.asarray(params["kernel"]), np.asarray(params["recurrent_kernel"]), bias]


def _gru_torch_order(a: np.ndarray, h: int) -> np.ndarray:
  """PyTorch GRU gates (r, z, n) -> (z, r, n) along axis 0."""
  r, z, n = a[:h], a[h : 2 * h], a[2 * h :]
  return np.concatenate([z, r, n], axis=0)


def from_torch(
  cell: str, state_dict: Mapping[str, Any], *, layer: int = 0, reverse: bool = False, dtype=jnp.float32
) -> dict:
  """Cell params from a PyTorch ``nn.RNN``/``nn.LSTM``/``nn.GRU`` ``state_dict()``.

  Args:
    cell: ``"rnn"``, ``"lstm"`` or ``"gru"``.
    state_dict: holds ``weight_ih_l{k}`` ``(G*H, F)``, ``weight_hh_l{k}`` ``(G*H, H)``,
      ``bias_ih_l{k}``, ``bias_hh_l{k}`` (``bias=True``, ``batch_first`` irrelevant).
    layer: ``k``, the stacked layer to read.
    reverse: read the backward direction of a bidirectional layer (suffix ``_reverse``).

  Returns:
    ``{"kernel", "recurrent_kernel", "bias"}`` (+ ``recurrent_bias`` for the GRU).
    For the RNN and LSTM ``bias = bias_ih + bias_hh``; the GRU keeps both, and
    its gates are reordered from PyTorch's ``r, z, n`` to ``z, r, n``.

  Warning:
    ``nn.RNN(nonlinearity='relu')`` needs ``activation=relu`` in :func:`unroll`.
    ``proj_size > 0`` LSTMs are not supported.
  """
  cell = check_cell(cell)
  sfx = f"_l{layer}" + ("_reverse" if reverse else "")
  names = [f"weight_ih{sfx}", f"weight_hh{sfx}", f"bias_ih{sfx}", f"bias_hh{sfx}"]
  missing = [n for n in names if n not in state_dict]
  if missing:
    raise KeyError(f"from_torch({cell!r}): state_dict lacks {missing}; it has {sorted(state_dict)[:8]}.")
  w_ih, w_hh, b_ih, b_hh = (_np(state_dict[n]) for n in names)
  h = w_hh.shape[1]
  g = GATES[cell] * h
  _expect(f"from_torch({cell!r}) {names[0]}", w_ih, (g, w_ih.shape[1]))
  _expect(f"from_torch({cell!r}) {names[1]}", w_hh, (g, h))
  _expect(f"from_torch({cell!r}) {names[2]}", b_ih, (g,))
  _expect(f"from_torch({cell!r}) {names[3]}", b_hh, (g,))
  if cell == "gru":
    w_ih, w_hh, b_ih, b_hh = (_gru_torch_order(a, h) for a in (w_ih, w_hh, b_ih, b_hh))
    p = {"kernel": w_ih.T, "recurrent_kernel": w_hh.T, "bias": b_ih, "recurrent_bias": b_hh}
  else:
    p = {"kernel": w_ih.T, "recurrent_kernel": w_hh.T, "bias": b_ih + b_hh}
  return {k: jnp.asarray(np.ascontiguousarray(v), dtype) for k, v in p.items()}


def from_torch_stack(
  cell: str, state_dict: Mapping[str, Any], *, num_layers: int = 1, bidirectional: bool = False, dtype=jnp.float32
) -> list:
  """All layers of a (possibly bidirectional) PyTorch recurrent module, for :func:`stacked`."""
  out = []
  for k in range(num_layers):
    fw = from_torch(cell, state_dict, layer=k, dtype=dtype)
    out.append(
      {"forward": fw, "backward": from_torch(cell, state_dict, layer=k, reverse=True, dtype=dtype)}
      if bidirectional
      else fw
    )
  return out
