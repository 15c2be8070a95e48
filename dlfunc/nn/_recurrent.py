r"""Recurrent cells and their unroll over time, as pure functions.

A cell is a step function ``(params, carry, x_t) -> (carry, y_t)``; the
unroll runs it over the time axis with :func:`jax.lax.scan`, so the traced
program (and the compile time) does not grow with the sequence length.

Parameters are plain dicts in the Keras layout (``x W``, not ``W x``):

================  ===================  ======================  ==========================
cell              ``kernel``           ``recurrent_kernel``    biases
================  ===================  ======================  ==========================
``"rnn"``         ``(F, H)``           ``(H, H)``              ``bias (H,)``
``"lstm"``        ``(F, 4H)``          ``(H, 4H)``             ``bias (4H,)``
``"gru"``         ``(F, 3H)``          ``(H, 3H)``             ``bias (3H,)``, ``recurrent_bias (3H,)``
================  ===================  ======================  ==========================

Gate order along the ``G*H`` axis (the same as Keras):

* LSTM: input ``i``, forget ``f``, candidate ``g``, output ``o``  (PyTorch: the same).
* GRU: update ``z``, reset ``r``, candidate ``n``  (PyTorch: ``r, z, n`` -- the
  converters in :mod:`dlfunc.nn` permute it).

Equations (``σ`` the logistic sigmoid):

.. math::

   \text{rnn:}\quad h_t = \tanh(x_t W + h_{t-1} U + b)

   \text{lstm:}\quad [i, f, g, o] = x_t W + h_{t-1} U + b,\;
     c_t = σ(f) c_{t-1} + σ(i) \tanh(g),\; h_t = σ(o) \tanh(c_t)

   \text{gru:}\quad [x_z, x_r, x_n] = x_t W + b,\; [h_z, h_r, h_n] = h_{t-1} U + b^{rec},\;
     z = σ(x_z + h_z),\; r = σ(x_r + h_r),\; n = \tanh(x_n + r \odot h_n),\;
     h_t = z \odot h_{t-1} + (1 - z) \odot n

The GRU is the "reset after" variant (the reset gate multiplies the
*recurrent projection*, bias included): Keras 3 ``GRU(reset_after=True)``
(its default) and PyTorch ``nn.GRU``. PyTorch keeps two LSTM/RNN biases
(``b_ih + b_hh``); they enter only as a sum, so here they are one ``bias``.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence, cast

import jax
import jax.numpy as jnp

from dlfunc.nn._activations import tanh
from dlfunc.nn._checks import GATES, check_cell
from dlfunc.nn._initializers import glorot_uniform, zeros

Array = jax.Array
Params = Mapping[str, Array]
Carry = Any  # an array (rnn, gru) or an (h, c) tuple (lstm)

CELLS = ("rnn", "lstm", "gru")

# Gates use XLA's fused logistic (as Keras and Flax do): it has the cheap derivative
# s (1 - s), which makes the LSTM/GRU backward pass ~2x faster on CPU than
# dlfunc.nn.sigmoid's branch-free formula. A gate only needs absolute accuracy;
# the parity tests against Keras and PyTorch hold at rtol 1e-5.
_gate = jax.nn.sigmoid


def orthogonal(key, shape, dtype=jnp.float32) -> Array:
  """Orthogonal initializer (Keras' default ``recurrent_initializer``): rows or columns orthonormal.

  Drawn in float32 (at least) and cast: the QR factorisation has no 16-bit kernel.
  """
  work = jnp.promote_types(dtype, jnp.float32)
  return jax.nn.initializers.orthogonal()(key, tuple(shape), work).astype(dtype)


def init_cell(cell: str, key: jax.Array, input_size: int, hidden_size: int, dtype=jnp.float32) -> dict[str, Array]:
  """Fresh parameters for ``cell``, initialised as Keras does.

  ``kernel`` Glorot uniform, ``recurrent_kernel`` orthogonal, biases zero, and
  for the LSTM the forget-gate bias set to one (Keras ``unit_forget_bias=True``).

  Example:
    >>> p = init_cell("lstm", jax.random.key(0), 8, 16)
    >>> {k: v.shape for k, v in p.items()}
    {'kernel': (8, 64), 'recurrent_kernel': (16, 64), 'bias': (64,)}
  """
  cell = check_cell(cell)
  if int(hidden_size) <= 0 or int(input_size) <= 0:
    raise ValueError(f"init_cell: input_size and hidden_size must be positive, got {input_size} and {hidden_size}.")
  g = GATES[cell] * hidden_size
  k1, k2 = jax.random.split(key)
  p = {
    "kernel": glorot_uniform(k1, (input_size, g), dtype),
    "recurrent_kernel": orthogonal(k2, (hidden_size, g), dtype),
    "bias": zeros(None, (g,), dtype),
  }
  if cell == "lstm":
    p["bias"] = p["bias"].at[hidden_size : 2 * hidden_size].set(1)
  if cell == "gru":
    p["recurrent_bias"] = zeros(None, (g,), dtype)
  return p


def initial_carry(cell: str, batch_shape: Sequence[int], hidden_size: int, dtype=jnp.float32) -> Carry:
  """Zero state: ``h`` of shape ``(*batch_shape, H)``, or ``(h, c)`` for the LSTM."""
  cell = check_cell(cell)
  h = jnp.zeros((*tuple(batch_shape), hidden_size), dtype)
  return (h, h) if cell == "lstm" else h


def _hidden(params: Params) -> int:
  return params["recurrent_kernel"].shape[0]


def _check_params(cell: str, params: Params) -> None:
  missing = [
    k
    for k in ("kernel", "recurrent_kernel", "bias") + (("recurrent_bias",) if cell == "gru" else ())
    if k not in params
  ]
  if missing:
    raise ValueError(
      f"{cell}: params lack {missing}; expected keys kernel, recurrent_kernel, bias"
      f"{', recurrent_bias' if cell == 'gru' else ''} (build them with init_cell or a converter)."
    )
  h, g = params["recurrent_kernel"].shape[0], GATES[cell]
  if params["recurrent_kernel"].shape != (h, g * h) or params["kernel"].shape[-1] != g * h:
    raise ValueError(
      f"{cell}: recurrent_kernel must be (H, {g}H) and kernel (F, {g}H); got "
      f"{tuple(params['recurrent_kernel'].shape)} and {tuple(params['kernel'].shape)}."
    )


def _check_features(name: str, params: Params, x: Array) -> None:
  f = params["kernel"].shape[0]
  if x.shape[-1] != f:
    raise ValueError(
      f"{name}: input has {x.shape[-1]} features (shape {tuple(x.shape)}) but the kernel expects "
      f"{f}; pass inputs shaped (..., {f})."
    )


def _project(params: Params, x: Array) -> Array:
  """The input half of every gate, ``x W + b``."""
  return jnp.matmul(x, params["kernel"]) + params["bias"]


def _rnn_step(params, h, xw, activation=tanh):
  h = activation(xw + jnp.matmul(h, params["recurrent_kernel"]))
  return h, h


def _lstm_step(params, carry, xw):
  h, c = carry
  z = xw + jnp.matmul(h, params["recurrent_kernel"])
  i, f, g, o = jnp.split(z, 4, axis=-1)
  c = _gate(f) * c + _gate(i) * tanh(g)
  h = _gate(o) * tanh(c)
  return (h, c), h


def _gru_step(params, h, xw):
  hu = jnp.matmul(h, params["recurrent_kernel"]) + params["recurrent_bias"]
  xz, xr, xn = jnp.split(xw, 3, axis=-1)
  hz, hr, hn = jnp.split(hu, 3, axis=-1)
  z = _gate(xz + hz)
  r = _gate(xr + hr)
  n = tanh(xn + r * hn)
  h = z * h + (1 - z) * n
  return h, h


_STEPS = {"rnn": _rnn_step, "lstm": _lstm_step, "gru": _gru_step}


def _check_carry(name: str, cell: str, params: Params, carry: Carry, batch: tuple[int, ...]) -> None:
  want = (*batch, _hidden(params))
  parts = carry if cell == "lstm" else (carry,)
  if cell == "lstm" and (not isinstance(carry, (tuple, list)) or len(carry) != 2):
    raise ValueError(f"{name}: the LSTM carry is an (h, c) pair, got {type(carry).__name__}.")
  for part in parts:
    if tuple(jnp.shape(part)) != want:
      raise ValueError(f"{name}: carry has shape {tuple(jnp.shape(part))}, expected {want} (batch, hidden).")


def _cell(cell: str, params: Params, carry: Carry, x_t: Array, **kw):
  x_t = jnp.asarray(x_t)
  _check_params(cell, params)
  _check_features(f"{cell}_cell", params, x_t)
  _check_carry(f"{cell}_cell", cell, params, carry, tuple(x_t.shape[:-1]))
  return _STEPS[cell](params, carry, _project(params, x_t), **kw)


def rnn_cell(params: Params, carry: Array, x_t: Array, *, activation: Callable = tanh) -> tuple[Array, Array]:
  r"""One step of an Elman RNN, :math:`h_t = \tanh(x_t W + h_{t-1} U + b)`.

  Args:
    params: ``{"kernel": (F, H), "recurrent_kernel": (H, H), "bias": (H,)}``.
    carry: ``h_{t-1}``, ``(..., H)``.
    x_t: ``(..., F)``.
    activation: ``tanh`` (Keras ``SimpleRNN`` and PyTorch ``nn.RNN`` default) or e.g. ``relu``.

  Returns:
    ``(h_t, h_t)``: the new carry and the output.

  Example:
    >>> p = init_cell("rnn", jax.random.key(0), 3, 5)
    >>> h, y = rnn_cell(p, jnp.zeros((2, 5)), jnp.ones((2, 3)))
    >>> y.shape
    (2, 5)
  """
  return _cell("rnn", params, carry, x_t, activation=activation)


def lstm_cell(params: Params, carry: tuple[Array, Array], x_t: Array) -> tuple[tuple[Array, Array], Array]:
  r"""One LSTM step; gates in the order ``i, f, g, o`` (Keras and PyTorch agree).

  .. math:: [i, f, g, o] = x_t W + h_{t-1} U + b,\quad
     c_t = σ(f) c_{t-1} + σ(i)\tanh(g),\quad h_t = σ(o)\tanh(c_t)

  Args:
    params: ``{"kernel": (F, 4H), "recurrent_kernel": (H, 4H), "bias": (4H,)}``.
    carry: ``(h, c)``, each ``(..., H)``.
    x_t: ``(..., F)``.

  Returns:
    ``((h_t, c_t), h_t)``.

  Warning:
    PyTorch has two biases, ``bias_ih + bias_hh``; here they are one (their sum).
    Keras' LSTM returns ``[output, h, c]`` with ``return_state``; here the carry is ``(h, c)``.
  """
  return _cell("lstm", params, carry, x_t)


def gru_cell(params: Params, carry: Array, x_t: Array) -> tuple[Array, Array]:
  r"""One GRU step ("reset after", Keras 3 default and PyTorch); gates ``z, r, n``.

  .. math:: z = σ(x W_z + b_z + h U_z + b^{rec}_z),\;
     r = σ(x W_r + b_r + h U_r + b^{rec}_r),\;
     n = \tanh(x W_n + b_n + r \odot (h U_n + b^{rec}_n)),\;
     h_t = z \odot h_{t-1} + (1 - z) \odot n

  Args:
    params: ``{"kernel": (F, 3H), "recurrent_kernel": (H, 3H), "bias": (3H,),
      "recurrent_bias": (3H,)}``.
    carry: ``h_{t-1}``, ``(..., H)``.
    x_t: ``(..., F)``.

  Returns:
    ``(h_t, h_t)``.

  Warning:
    PyTorch orders the gates ``r, z, n``; :func:`gru_from_torch` reorders them.
    Keras' ``reset_after=False`` (the TF1 variant) is a different cell.
  """
  return _cell("gru", params, carry, x_t)


def _check_sequence(name: str, params: Params, x: Array, mask) -> tuple[Array, Array | None]:
  x = jnp.asarray(x)
  if x.ndim not in (2, 3):
    raise ValueError(
      f"{name}: expected a sequence (batch, time, features) or (time, features), got shape "
      f"{tuple(x.shape)}; a 2-D batch of scalars (batch, time) needs x[..., None]."
    )
  _check_features(name, params, x)
  if mask is not None:
    mask = jnp.asarray(mask)
    if mask.shape != x.shape[:-1]:
      raise ValueError(
        f"{name}: mask has shape {tuple(mask.shape)}, expected {tuple(x.shape[:-1])} "
        f"(the input's shape without its feature axis)."
      )
    mask = mask.astype(bool)
  return x, mask


def unroll(
  cell: str,
  params: Params,
  x: Array,
  *,
  initial_carry: Carry = None,
  mask: Array | None = None,
  reverse: bool = False,
  return_sequences: bool = True,
  zero_output_for_mask: bool = False,
  activation: Callable = tanh,
  implementation: str = "scan",
) -> tuple[Array, Carry]:
  r"""Run ``cell`` over the time axis with :func:`jax.lax.scan` (one traced step, any length).

  The scan body is the cell itself, traced once: the program (and compile
  time) is the same for ``T = 8`` and ``T = 512``. (Projecting all inputs in
  one matmul before the scan was measured *slower* on CPU: the ``(T, N, 4H)``
  buffer costs more memory traffic than the small per-step matmul.)

  Args:
    cell: ``"rnn"``, ``"lstm"`` or ``"gru"``.
    params: the cell's parameters (see the module docstring).
    x: ``(N, T, F)``, or one sequence ``(T, F)`` (so ``vmap`` works).
    initial_carry: the state before the first step (default zeros); for the
      LSTM an ``(h, c)`` pair, each ``(N, H)``.
    mask: ``(N, T)`` booleans, ``True`` for real steps. At a padded step the
      state is left unchanged, so the final carry is the state after the last
      real step (right-padded batches of variable length).
    reverse: run from the last step to the first. Outputs stay aligned with
      the input (``outputs[:, t]`` is the state after reading ``x[:, t:]``),
      as in a PyTorch/Keras bidirectional layer.
    return_sequences: return every step's output ``(N, T, H)``, or only the
      final one ``(N, H)`` (the final ``h``).
    zero_output_for_mask: output zeros at padded steps (PyTorch packed
      sequences, Keras ``Bidirectional``) instead of repeating the previous
      output (Keras' default).
    activation: the RNN cell's activation (ignored by LSTM and GRU).
    implementation: ``"scan"`` (default, every backend) or ``"cudnn"``: an
      LSTM without a mask on an NVIDIA GPU through cuDNN
      (``jax.experimental.rnn``, what Keras uses on a GPU); anything else falls
      back to the scan. The same maths, not bit-identical.

  Returns:
    ``(outputs, final_carry)``.

  Warning:
    Keras ``go_backwards=True`` returns its outputs in *processing* order
    (time reversed); flip them to compare with ``reverse=True`` here.

  Example:
    >>> p = init_cell("gru", jax.random.key(0), 8, 16)
    >>> y, h = unroll("gru", p, jnp.ones((4, 10, 8)))
    >>> y.shape, h.shape
    ((4, 10, 16), (4, 16))
  """
  cell = check_cell(cell)
  _check_params(cell, params)
  x, mask = _check_sequence(f"unroll({cell!r})", params, x, mask)
  batch = x.shape[:-2]
  if initial_carry is None:
    initial_carry = initial_carry_like(cell, params, batch, x.dtype)
  _check_carry(f"unroll({cell!r})", cell, params, initial_carry, tuple(batch))
  if implementation not in ("scan", "cudnn"):
    raise ValueError(f"unroll: implementation must be 'scan' or 'cudnn', got {implementation!r}.")
  if implementation == "cudnn" and cell == "lstm" and mask is None and x.ndim == 3 and _on_gpu():
    return _lstm_cudnn(params, x, initial_carry, reverse, return_sequences)
  step = _STEPS[cell]
  kw = {"activation": activation} if cell == "rnn" else {}
  xs = jnp.moveaxis(x, -2, 0)  # time-major (T, ..., F)

  if mask is None:

    def body(carry, x_t):
      carry, y = step(params, carry, _project(params, x_t), **kw)
      return carry, (y if return_sequences else None)

    carry, ys = jax.lax.scan(body, initial_carry, xs, reverse=reverse)
  else:
    ms = jnp.moveaxis(mask, -1, 0)[..., None]

    def masked_body(carry, inp):
      x_t, m_t = inp
      new, y = step(params, carry, _project(params, x_t), **kw)
      new = jax.tree_util.tree_map(lambda n, o: jnp.where(m_t, n, o), new, carry)
      held = new[0] if cell == "lstm" else new
      y = jnp.where(m_t, y, jnp.zeros_like(y) if zero_output_for_mask else held)
      return new, (y if return_sequences else None)

    carry, ys = jax.lax.scan(masked_body, initial_carry, (xs, ms), reverse=reverse)
  if not return_sequences:
    return (carry[0] if cell == "lstm" else carry), carry
  return jnp.moveaxis(ys, 0, -2), carry  # pyright: ignore[reportArgumentType]  (ys is an array: return_sequences)


def _on_gpu() -> bool:
  return jax.default_backend() == "gpu"


def _lstm_cudnn(params, x, carry, reverse, return_sequences):
  """The LSTM through cuDNN (``jax.experimental.rnn.lstm``); same gate order (i, f, g, o)."""
  from jax.experimental import rnn as jrnn

  h = _hidden(params)
  bias = params["bias"]
  weights = jnp.concatenate(
    [params["kernel"].T.ravel(), params["recurrent_kernel"].T.ravel(), bias, jnp.zeros_like(bias)]
  )
  if reverse:
    x = jnp.flip(x, axis=1)
  lengths = jnp.full((x.shape[0],), x.shape[1], jnp.int32)
  out: Any = jrnn.lstm(
    x,
    carry[0][None],
    carry[1][None],
    weights,
    lengths,
    input_size=x.shape[-1],
    hidden_size=h,
    num_layers=1,
    dropout=0.0,
    bidirectional=False,
  )
  y, h_n, c_n = out  # jax.experimental.rnn.lstm returns (y, h_n, c_n); its annotation is missing
  final = (h_n[0], c_n[0])
  if not return_sequences:
    return final[0], final
  return (jnp.flip(y, axis=1) if reverse else y), final


def initial_carry_like(cell: str, params: Params, batch_shape: Sequence[int], dtype=None) -> Carry:
  """Zero state sized from ``params`` (``H = recurrent_kernel.shape[0]``)."""
  dtype = params["recurrent_kernel"].dtype if dtype is None else dtype
  return initial_carry(cell, batch_shape, _hidden(params), dtype)


def bidirectional(
  cell: str,
  params: Mapping[str, Params],
  x: Array,
  *,
  initial_carry=None,
  mask: Array | None = None,
  return_sequences: bool = True,
  activation: Callable = tanh,
) -> tuple[Array, tuple[Carry, Carry]]:
  """A forward and a backward :func:`unroll`, outputs concatenated on the feature axis.

  Args:
    params: ``{"forward": cell params, "backward": cell params}``.
    initial_carry: ``(forward_carry, backward_carry)`` or ``None``.
    mask: as in :func:`unroll`; padded steps output zeros (as Keras'
      ``Bidirectional`` and PyTorch packed sequences).
    return_sequences: ``(N, T, 2H)`` outputs ``[forward_t, backward_t]``, or
      ``(N, 2H)``: the final forward ``h`` (after the last real step) and the
      final backward ``h`` (after reading back to step 0) -- Keras'
      ``Bidirectional(return_sequences=False)`` and ``torch.cat(h_n[-2:], -1)``.

  Returns:
    ``(outputs, (forward_carry, backward_carry))``.
  """
  if not isinstance(params, Mapping) or set(params) != {"forward", "backward"}:
    got = sorted(params) if isinstance(params, Mapping) else type(params).__name__
    raise ValueError(f"bidirectional: params must be {{'forward': ..., 'backward': ...}}, got {got}.")
  c_fw, c_bw = (None, None) if initial_carry is None else initial_carry
  kw: dict[str, Any] = dict(
    mask=mask, return_sequences=return_sequences, zero_output_for_mask=True, activation=activation
  )
  y_fw, c_fw = unroll(cell, params["forward"], x, initial_carry=c_fw, **kw)
  y_bw, c_bw = unroll(cell, params["backward"], x, initial_carry=c_bw, reverse=True, **kw)
  return jnp.concatenate([y_fw, y_bw], axis=-1), (c_fw, c_bw)


def stacked(
  cell: str,
  layers: Sequence[Params],
  x: Array,
  *,
  initial_carry: Sequence[Carry] | None = None,
  mask: Array | None = None,
  return_sequences: bool = True,
  activation: Callable = tanh,
) -> tuple[Array, list[Carry]]:
  """Layers of :func:`unroll` (or :func:`bidirectional`), each reading the previous one's sequence.

  Args:
    layers: one params dict per layer; a ``{"forward", "backward"}`` dict makes
      that layer bidirectional. Layer ``k + 1``'s ``kernel`` reads layer ``k``'s
      output width (``H``, or ``2H`` after a bidirectional layer).
    initial_carry: one carry per layer, or ``None``.
    return_sequences: applies to the last layer; inner layers always pass
      their full sequence on (as ``nn.LSTM(num_layers=...)`` does).

  Returns:
    ``(outputs, [final carry of each layer])``.
  """
  if len(layers) == 0:
    raise ValueError("stacked: needs at least one layer of params, got an empty sequence.")
  if initial_carry is not None and len(initial_carry) != len(layers):
    raise ValueError(f"stacked: got {len(initial_carry)} initial carries for {len(layers)} layers.")
  carries = []
  for k, p in enumerate(layers):
    last = k == len(layers) - 1
    c0 = None if initial_carry is None else initial_carry[k]
    kw: dict[str, Any] = dict(
      initial_carry=c0, mask=mask, return_sequences=return_sequences or not last, activation=activation
    )
    if isinstance(p, Mapping) and "forward" in p:
      x, c = bidirectional(cell, cast(Mapping[str, Params], p), x, **kw)  # a {forward, backward} pair
    else:
      x, c = unroll(cell, p, x, **kw)
    carries.append(c)
  return x, carries
