"""Layers as pure functions: ``f(params, x, ...) -> y``.

Parameters are plain dicts named as in Flax (``kernel``, ``bias``, ``scale``,
``embedding``), so a Flax Linen module can hold them and a weight loader can
fill them. Images are NHWC and convolution kernels HWIO.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence, Union

import jax
import jax.numpy as jnp

Array = jax.Array
Padding = Union[str, int, Sequence[tuple[int, int]]]


def _check_rank(name: str, x: Array, rank: int, layout: str) -> None:
  if x.ndim != rank:
    raise ValueError(
        f"{name}: expected a rank-{rank} input {layout}, got shape {tuple(x.shape)}; "
        f"reshape the input (for one example, add a batch axis with x[None])."
    )


def _tuple(v, n: int, what: str) -> tuple[int, ...]:
  if isinstance(v, int):
    return (v,) * n
  v = tuple(int(i) for i in v)
  if len(v) != n:
    raise ValueError(f"{what} must be an int or a sequence of {n} ints, got {v}.")
  return v


def _padding(padding: Padding, n: int):
  if isinstance(padding, str):
    p = padding.upper()
    if p not in ("SAME", "VALID"):
      raise ValueError(f"padding must be 'SAME', 'VALID', an int or {n} (low, high) pairs, got {padding!r}.")
    return p
  if isinstance(padding, int):
    return [(padding, padding)] * n
  pads = [tuple(int(i) for i in p) for p in padding]
  if len(pads) != n or any(len(p) != 2 for p in pads):
    raise ValueError(f"explicit padding needs {n} (low, high) pairs, got {padding!r}.")
  return pads


def dense(params: Mapping[str, Array], x: Array) -> Array:
  r"""Fully connected layer, :math:`y = x W + b`.

  Args:
    params: ``{"kernel": (in, out), "bias": (out,)}``; ``bias`` may be absent.
    x: ``(..., in)``.

  Returns:
    ``(..., out)``.

  Warning:
    PyTorch's ``nn.Linear.weight`` is ``(out, in)``: transpose it to get ``kernel``.

  Example:
    >>> p = {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)}
    >>> dense(p, jnp.ones((4, 3))).shape
    (4, 2)
  """
  kernel = params["kernel"]
  x = jnp.asarray(x)
  if x.shape[-1] != kernel.shape[0]:
    raise ValueError(
        f"dense: input has {x.shape[-1]} features (shape {tuple(x.shape)}) but the kernel "
        f"expects {kernel.shape[0]} (kernel shape {tuple(kernel.shape)})."
    )
  y = jnp.matmul(x, kernel)
  bias = params.get("bias")
  return y if bias is None else y + bias


def conv(params: Mapping[str, Array], x: Array, *, strides=1, padding: Padding = "VALID",
         dilation=1, groups: int = 1) -> Array:
  """N-d convolution over channels-last input (``NWC``, ``NHWC``, ...).

  Cross-correlation, as in every deep-learning library. ``kernel`` is
  ``(*window, in // groups, out)``. See :func:`conv2d`.
  """
  kernel = params["kernel"]
  n = kernel.ndim - 2
  x = jnp.asarray(x)
  _check_rank(f"conv{n}d", x, n + 2, "(batch, *spatial, channels)")
  if x.shape[-1] != kernel.shape[-2] * groups:
    raise ValueError(
        f"conv{n}d: input has {x.shape[-1]} channels (shape {tuple(x.shape)}) but the kernel "
        f"{tuple(kernel.shape)} expects {kernel.shape[-2] * groups}."
    )
  spatial = "".join("DHW"[3 - n:]) if n <= 3 else None
  dn = jax.lax.conv_dimension_numbers(
      x.shape, kernel.shape, (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"))
  y = jax.lax.conv_general_dilated(
      x, kernel,
      window_strides=_tuple(strides, n, "strides"),
      padding=_padding(padding, n),
      rhs_dilation=_tuple(dilation, n, "dilation"),
      dimension_numbers=dn,
      feature_group_count=groups,
  )
  bias = params.get("bias")
  return y if bias is None else y + bias


def conv2d(params: Mapping[str, Array], x: Array, *, strides=1, padding: Padding = "VALID",
           dilation=1, groups: int = 1) -> Array:
  r"""2-D convolution, NHWC input and HWIO kernel.

  Args:
    params: ``{"kernel": (kh, kw, in, out), "bias": (out,)}`` (bias optional).
    x: ``(N, H, W, C)``.
    strides, dilation: an int or an ``(sh, sw)`` pair.
    padding: ``'VALID'`` (none), ``'SAME'`` (output size ``ceil(H / stride)``),
      an int (that many zeros on every side) or ``((top, bottom), (left, right))``.

  Warning:
    PyTorch pads symmetrically and explicitly; ``'SAME'`` with stride 2 on an
    even size pads (0, 1) and gives different numbers. Port torch layers with
    explicit pairs, e.g. ``padding=((1, 1), (1, 1))``. Torch weights are OIHW:
    ``w.transpose(2, 3, 1, 0)`` gives HWIO.
  """
  if params["kernel"].ndim != 4:
    raise ValueError(f"conv2d: the kernel must be (kh, kw, in, out), got shape {tuple(params['kernel'].shape)}.")
  return conv(params, x, strides=strides, padding=padding, dilation=dilation, groups=groups)


def _pool(x, init, op, window, strides, padding, n):
  window = _tuple(window, n, "window")
  strides = window if strides is None else _tuple(strides, n, "strides")
  pad = _padding(padding, n)
  if not isinstance(pad, str):
    pad = [(0, 0)] + list(pad) + [(0, 0)]
  return jax.lax.reduce_window(x, init, op, (1, *window, 1), (1, *strides, 1), pad)


def max_pool(x: Array, window=2, strides=None, padding: Padding = "VALID") -> Array:
  """Max pooling over the spatial axes of a channels-last input ``(N, *spatial, C)``.

  ``strides`` defaults to ``window`` (as in Keras and PyTorch). Padded cells
  count as ``-inf``, so they never win.
  """
  x = jnp.asarray(x)
  n = x.ndim - 2
  if n < 1:
    raise ValueError(f"max_pool: expected (batch, *spatial, channels), got shape {tuple(x.shape)}.")
  return _pool(x, -jnp.inf, jax.lax.max, window, strides, padding, n)


def avg_pool(x: Array, window=2, strides=None, padding: Padding = "VALID",
             count_include_pad: bool = False) -> Array:
  """Average pooling over the spatial axes of a channels-last input.

  Args:
    count_include_pad: with padding, whether the padded zeros count in the
      denominator. ``False`` (default) matches Keras ``AveragePooling2D``;
      PyTorch's ``AvgPool2d`` defaults to ``True``.
  """
  x = jnp.asarray(x)
  n = x.ndim - 2
  if n < 1:
    raise ValueError(f"avg_pool: expected (batch, *spatial, channels), got shape {tuple(x.shape)}.")
  sums = _pool(x, 0.0, jax.lax.add, window, strides, padding, n)
  if count_include_pad or (isinstance(padding, str) and padding.upper() == "VALID"):
    return sums / float(math.prod(_tuple(window, n, "window")))
  counts = _pool(jnp.ones((1, *x.shape[1:-1], 1), x.dtype), 0.0, jax.lax.add, window, strides, padding, n)
  return sums / counts


def flatten(x: Array) -> Array:
  """``(N, ...) -> (N, prod(...))``, row-major (channels last, as Keras ``Flatten``).

  Warning:
    PyTorch flattens NCHW tensors, so the order of features differs from a
    torch model's; permute the next dense kernel when porting weights.
  """
  x = jnp.asarray(x)
  return x.reshape((x.shape[0], -1))


def dropout(x: Array, rate: float, *, key: jax.Array | None = None, train: bool = True) -> Array:
  r"""Inverted dropout: zero each element with probability ``rate``, scale the rest by :math:`1/(1-\text{rate})`.

  Args:
    x: input.
    rate: the probability of *dropping* an element (as in Keras and PyTorch),
      in ``[0, 1)``.
    key: a ``jax.random`` key; required when training with ``rate > 0``.
    train: when ``False`` this is the identity, so the expected activation is
      the same in training and inference.
  """
  if not 0.0 <= rate < 1.0:
    raise ValueError(f"dropout: rate is the drop probability and must be in [0, 1), got {rate}.")
  x = jnp.asarray(x)
  if not train or rate == 0.0:
    return x
  if key is None:
    raise ValueError("dropout: training with rate > 0 needs a key; pass key=jax.random.key(...) "
                     "(in a Flax model: rngs={'dropout': key}).")
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), jnp.zeros((), x.dtype))


def batch_norm(params: Mapping[str, Array], stats: Mapping[str, Array], x: Array, *,
               train: bool, momentum: float = 0.99, eps: float = 1e-5,
               axis: int = -1) -> tuple[Array, dict[str, Array]]:
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
  """
  x = jnp.asarray(x)
  axis = axis % x.ndim
  reduce = tuple(i for i in range(x.ndim) if i != axis)
  shape = [1] * x.ndim
  shape[axis] = x.shape[axis]
  if train:
    mean = jnp.mean(x, axis=reduce)
    var = jnp.mean(jnp.square(x - mean.reshape(shape)), axis=reduce)
    new_stats = {
        "mean": momentum * stats["mean"] + (1.0 - momentum) * mean,
        "var": momentum * stats["var"] + (1.0 - momentum) * var,
    }
  else:
    mean, var = stats["mean"], stats["var"]
    new_stats = dict(stats)
  y = (x - mean.reshape(shape)) * jax.lax.rsqrt(var.reshape(shape) + eps)
  if "scale" in params:
    y = y * params["scale"].reshape(shape)
  if "bias" in params:
    y = y + params["bias"].reshape(shape)
  return y, new_stats


def layer_norm(params: Mapping[str, Array], x: Array, *, eps: float = 1e-5, axis: int = -1) -> Array:
  r"""Layer normalization over the last axis: :math:`\gamma (x - \mu) / \sqrt{\sigma^2 + \epsilon} + \beta`.

  Args:
    params: ``{"scale": (D,), "bias": (D,)}`` (either may be absent).
    eps: PyTorch's default is 1e-5 (used here), Keras' 1e-3, Flax's 1e-6, BERT's 1e-12.
  """
  x = jnp.asarray(x)
  mean = jnp.mean(x, axis=axis, keepdims=True)
  var = jnp.mean(jnp.square(x - mean), axis=axis, keepdims=True)
  y = (x - mean) * jax.lax.rsqrt(var + eps)
  if "scale" in params:
    y = y * params["scale"]
  if "bias" in params:
    y = y + params["bias"]
  return y


def embedding(params: Mapping[str, Array], ids: Array) -> Array:
  """Look up rows of ``params["embedding"]`` (``(vocab, dim)``) for integer ``ids``.

  Returns ``ids.shape + (dim,)``. Out-of-range ids are clamped by XLA under jit;
  check them beforehand if they can occur.
  """
  ids = jnp.asarray(ids)
  if not jnp.issubdtype(ids.dtype, jnp.integer):
    raise TypeError(f"embedding: ids must be integers, got dtype {ids.dtype}; cast with ids.astype(jnp.int32).")
  return jnp.take(params["embedding"], ids, axis=0)
