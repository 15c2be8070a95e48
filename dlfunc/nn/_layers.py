"""Layers as pure functions: ``f(params, x, ...) -> y``.

Parameters are plain dicts named as in Flax (``kernel``, ``bias``, ``scale``,
``embedding``), so a Flax Linen module can hold them and a weight loader can
fill them. Images are NHWC and convolution kernels HWIO.
"""
from __future__ import annotations

import itertools
import math
from typing import Mapping, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

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


def concrete_range(x: Array) -> tuple[int, int]:
  """``(min, max)`` of integer ``x`` when its values are known (outside ``jit``); ``(0, 0)`` when traced or empty.

  Lets a function reject out-of-range indices with a clear message eagerly,
  while under ``jit`` (values unknown) it must handle them without raising.
  """
  try:
    return (int(x.min()), int(x.max())) if x.size else (0, 0)
  except jax.errors.ConcretizationTypeError:
    return 0, 0


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
  kernel = jnp.asarray(params["kernel"])
  x = jnp.asarray(x)
  if kernel.ndim != 2:
    raise ValueError(f"dense: the kernel must be (in, out), got shape {tuple(kernel.shape)}.")
  if x.ndim < 1 or x.shape[-1] != kernel.shape[0]:
    raise ValueError(
        f"dense: expected input (..., {kernel.shape[0]}) for kernel shape {tuple(kernel.shape)}, "
        f"got input shape {tuple(x.shape)}; flatten or reshape the input, or build the layer for this size."
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
  kernel = jnp.asarray(params["kernel"])
  n = kernel.ndim - 2
  if not 1 <= n <= 3:
    raise ValueError(f"conv: the kernel must be (*window, in, out) with 1 to 3 window axes, "
                     f"got shape {tuple(kernel.shape)}.")
  x = jnp.asarray(x)
  _check_rank(f"conv{n}d", x, n + 2, "(batch, *spatial, channels)")
  if x.shape[-1] != kernel.shape[-2] * groups:
    raise ValueError(
        f"conv{n}d: input has {x.shape[-1]} channels (shape {tuple(x.shape)}) but the kernel "
        f"{tuple(kernel.shape)} expects {kernel.shape[-2] * groups}."
    )
  if not jnp.issubdtype(x.dtype, jnp.inexact):  # e.g. uint8 images
    x = x.astype(kernel.dtype)
  dtype = jnp.result_type(x, kernel)
  x, kernel = x.astype(dtype), kernel.astype(dtype)
  strides, dilation, pads = _tuple(strides, n, "strides"), _tuple(dilation, n, "dilation"), _padding(padding, n)
  extent = [(k - 1) * d + 1 for k, d in zip(kernel.shape[:n], dilation)]
  if isinstance(pads, str):
    pads = jax.lax.padtype_to_pads(x.shape[1:-1], extent, strides, pads)
  out = [(size + lo + hi - e) // s + 1 for size, (lo, hi), e, s in zip(x.shape[1:-1], pads, extent, strides)]
  small = any(min(size, o) < e for size, o, e in zip(x.shape[1:-1], out, extent))
  if small and groups == 1 and min(min(p) for p in pads) >= 0:   # negative padding (cropping): lax's own path
    y = _conv_by_taps(x, kernel, strides, pads, dilation, extent, out)
  else:
    spatial = "DHW"[3 - n:]
    dn = jax.lax.conv_dimension_numbers(
        x.shape, kernel.shape, (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"))
    y = jax.lax.conv_general_dilated(
        x, kernel, window_strides=strides, padding=pads, rhs_dilation=dilation,
        dimension_numbers=dn, feature_group_count=groups)
  bias = params.get("bias")
  return y if bias is None else y + bias


def _conv_by_taps(x, kernel, strides, pads, dilation, extent, out):
  """The same convolution as one matmul of the stacked kernel taps (im2col).

  Used when an input or output is smaller than the (dilated) kernel, e.g. a
  3x3 conv on the 2x2 maps of a ResNet's last stage at 64x64 input: XLA CPU
  then swaps the operands (of the convolution or of its gradient) into a form
  no library kernel takes and runs it in a naive loop (600 ms instead of ~10 ms
  for batch 32 x 512 channels). Here the forward pass and both gradients are
  plain matmuls, pads and slices; the patch matrix is small because the maps are.
  """
  n = kernel.ndim - 2
  if min(out) <= 0:
    raise ValueError(f"conv{n}d: the padded input is smaller than the kernel window {tuple(extent)} "
                     f"(input {tuple(x.shape)}, padding {list(pads)}); pad it (e.g. padding='SAME') "
                     "or use a smaller kernel.")
  x = jnp.pad(x, [(0, 0), *pads, (0, 0)])
  taps = []
  for tap in itertools.product(*(range(k) for k in kernel.shape[:n])):
    window = tuple(slice(t * d, t * d + (o - 1) * s + 1, s) for t, d, o, s in zip(tap, dilation, out, strides))
    taps.append(x[(slice(None), *window)])
  patches = jnp.stack(taps, axis=-2)                 # (batch, *out, taps, in)
  return jnp.einsum("...tc,tco->...o", patches, kernel.reshape(len(taps), *kernel.shape[n:]))


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

  Example:
    >>> p = {"kernel": jnp.ones((3, 3, 1, 8)), "bias": jnp.zeros(8)}
    >>> conv2d(p, jnp.ones((2, 28, 28, 1))).shape
    (2, 26, 26, 8)
    >>> conv2d(p, jnp.ones((2, 28, 28, 1)), strides=2, padding="SAME").shape
    (2, 14, 14, 8)
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

  Warning:
    ``flax.linen.max_pool`` / ``avg_pool`` default to ``strides=1`` (overlapping
    windows); pass ``strides=window`` there to get the same result.

  Example:
    >>> max_pool(jnp.arange(16.0).reshape(1, 4, 4, 1))[0, :, :, 0]
    Array([[ 5.,  7.],
           [13., 15.]], dtype=float32)
  """
  x = jnp.asarray(x)
  n = x.ndim - 2
  if n < 1:
    raise ValueError(f"max_pool: expected (batch, *spatial, channels), got shape {tuple(x.shape)}.")
  # The init value must be a concrete numpy scalar, not a jnp array: under jit a
  # jnp constant is traced, and reduce_window then falls back to its generic,
  # non-differentiable form instead of reduce_window_max.
  if jnp.issubdtype(x.dtype, jnp.inexact):
    init = np.array(-np.inf, x.dtype)
  else:
    init = np.array(jnp.iinfo(x.dtype).min, x.dtype)
  return _pool(x, init, jax.lax.max, window, strides, padding, n)


def avg_pool(x: Array, window=2, strides=None, padding: Padding = "VALID",
             count_include_pad: bool = False) -> Array:
  """Average pooling over the spatial axes of a channels-last input.

  Args:
    count_include_pad: with padding, whether the padded zeros count in the
      denominator. ``False`` (default) matches Keras ``AveragePooling2D``;
      PyTorch's ``AvgPool2d`` and ``flax.linen.avg_pool`` default to ``True``.

  Example:
    >>> avg_pool(jnp.arange(16.0).reshape(1, 4, 4, 1))[0, :, :, 0]
    Array([[ 2.5,  4.5],
           [10.5, 12.5]], dtype=float32)
  """
  x = jnp.asarray(x)
  n = x.ndim - 2
  if n < 1:
    raise ValueError(f"avg_pool: expected (batch, *spatial, channels), got shape {tuple(x.shape)}.")
  if not jnp.issubdtype(x.dtype, jnp.inexact):
    x = x.astype(jnp.result_type(float))
  sums = _pool(x, np.zeros((), x.dtype), jax.lax.add, window, strides, padding, n)
  if count_include_pad or (isinstance(padding, str) and padding.upper() == "VALID"):
    return sums / float(math.prod(_tuple(window, n, "window")))
  ones = jnp.ones((1, *x.shape[1:-1], 1), x.dtype)
  counts = _pool(ones, np.zeros((), x.dtype), jax.lax.add, window, strides, padding, n)
  return sums / counts


def flatten(x: Array) -> Array:
  """``(N, ...) -> (N, prod(...))``, row-major (channels last, as Keras ``Flatten``).

  Warning:
    PyTorch flattens NCHW tensors, so the order of features differs from a
    torch model's; permute the next dense kernel when porting weights.

  Example:
    >>> flatten(jnp.ones((2, 5, 5, 3))).shape
    (2, 75)
  """
  x = jnp.asarray(x)
  if x.ndim < 1:
    raise ValueError("flatten: expected (batch, ...), got a scalar; there is no batch axis to keep.")
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

  Warning:
    ``jax.example_libraries.stax.Dropout(rate)`` takes the *keep* probability.

  Example:
    >>> y = dropout(jnp.ones(10_000), 0.25, key=jax.random.key(0))
    >>> round(float((y == 0).mean()), 2), float(y.max())  # ~25% dropped, the rest scaled by 1/0.75
    (0.25, 1.3333333730697632)
    >>> dropout(jnp.ones(3), 0.25, train=False)
    Array([1., 1., 1.], dtype=float32)
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

  Example:
    >>> params = {"scale": jnp.ones(2), "bias": jnp.zeros(2)}
    >>> stats = {"mean": jnp.zeros(2), "var": jnp.ones(2)}
    >>> x = jnp.array([[0.0, 10.0], [2.0, 30.0]])
    >>> y, new = batch_norm(params, stats, x, train=True, momentum=0.9)
    >>> new["mean"]  # 0.9 * 0 + 0.1 * batch mean
    Array([0.1, 2. ], dtype=float32)
    >>> y, same = batch_norm(params, new, x, train=False)  # eval: running statistics, unchanged
  """
  x = jnp.asarray(x)
  axis = axis % x.ndim
  c = x.shape[axis]
  for what, tree in (("params", params), ("stats", stats)):
    for name, v in tree.items():
      if tuple(jnp.shape(v)) != (c,):
        raise ValueError(f"batch_norm: expected {what}[{name!r}] of shape ({c},) for input {tuple(x.shape)} "
                         f"with features on axis {axis}, got {tuple(jnp.shape(v))}.")
  reduce = tuple(i for i in range(x.ndim) if i != axis)
  shape = [1] * x.ndim
  shape[axis] = x.shape[axis]
  # Statistics in at least float32 (bfloat16 activations keep float32 running statistics, as in Flax);
  # the output has the input's dtype and the new statistics the old ones' dtypes.
  out_dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
  cdtype = out_dtype if jnp.finfo(out_dtype).bits >= 32 else jnp.float32
  xc = x.astype(cdtype)
  if train:
    mean = jnp.mean(xc, axis=reduce)
    var = jnp.mean(jnp.square(xc - mean.reshape(shape)), axis=reduce)
    new_stats = {}
    for k, batch in (("mean", mean), ("var", var)):
      old = jnp.asarray(stats[k])
      new_stats[k] = (momentum * old.astype(cdtype) + (1.0 - momentum) * batch).astype(old.dtype)
  else:
    mean, var = jnp.asarray(stats["mean"]).astype(cdtype), jnp.asarray(stats["var"]).astype(cdtype)
    new_stats = dict(stats)
  y = (xc - mean.reshape(shape)) * jax.lax.rsqrt(var.reshape(shape) + eps)
  if "scale" in params:
    y = y * jnp.asarray(params["scale"]).astype(cdtype).reshape(shape)
  if "bias" in params:
    y = y + jnp.asarray(params["bias"]).astype(cdtype).reshape(shape)
  y = y.astype(out_dtype)
  return y, new_stats


def layer_norm(params: Mapping[str, Array], x: Array, *, eps: float = 1e-5, axis: int = -1) -> Array:
  r"""Layer normalization over one axis (the last by default), per example:
  :math:`\gamma (x - \mu) / \sqrt{\sigma^2 + \epsilon} + \beta`, with :math:`\mu, \sigma^2`
  the mean and (biased) variance over ``axis``.

  Args:
    params: ``{"scale": (D,), "bias": (D,)}`` (either may be absent), ``D = x.shape[axis]``.
    x: input; no batch statistics are involved, so train and eval are the same.
    eps: added to the variance. PyTorch's default is 1e-5 (used here), Keras' 1e-3,
      Flax's 1e-6, BERT's 1e-12: pass the one of the model you port.
    axis: the axis normalised over.

  Example:
    >>> y = layer_norm({}, jnp.array([[1.0, 2.0, 3.0]]))
    >>> [round(float(v), 4) for v in y[0]]
    [-1.2247, 0.0, 1.2247]
  """
  x = jnp.asarray(x)
  axis = axis % x.ndim if x.ndim else 0
  d = x.shape[axis] if x.ndim else 0
  shape = [1] * x.ndim
  if x.ndim:
    shape[axis] = d
  for name, v in params.items():
    if tuple(jnp.shape(v)) != (d,):
      raise ValueError(f"layer_norm: expected params[{name!r}] of shape ({d},) for input {tuple(x.shape)} "
                       f"normalised over axis {axis}, got {tuple(jnp.shape(v))}.")
  mean = jnp.mean(x, axis=axis, keepdims=True)
  var = jnp.mean(jnp.square(x - mean), axis=axis, keepdims=True)
  y = (x - mean) * jax.lax.rsqrt(var + eps)
  if "scale" in params:
    y = y * jnp.reshape(params["scale"], shape)
  if "bias" in params:
    y = y + jnp.reshape(params["bias"], shape)
  return y


def embedding(params: Mapping[str, Array], ids: Array) -> Array:
  """Look up rows of ``params["embedding"]`` (``(vocab, dim)``) for integer ``ids``.

  Returns ``ids.shape + (dim,)``. An id outside ``[0, vocab)`` is an error when
  ``ids`` is a concrete array; under ``jit`` it cannot be checked and gives a row
  of NaN (never a silent wrap-around or clamp), so a training loop sees a NaN loss.

  Warning:
    Keras and Flax (``jnp.take``) wrap negative ids to the end of the table;
    PyTorch raises. dlfunc never wraps.

  Example:
    >>> table = {"embedding": jnp.arange(6.0).reshape(3, 2)}
    >>> embedding(table, jnp.array([[2, 0]]))
    Array([[[4., 5.],
            [0., 1.]]], dtype=float32)
  """
  ids = jnp.asarray(ids)
  table = jnp.asarray(params["embedding"])
  if not jnp.issubdtype(ids.dtype, jnp.integer):
    raise TypeError(f"embedding: ids must be integers, got dtype {ids.dtype}; cast with ids.astype(jnp.int32).")
  if table.ndim != 2:
    raise ValueError(f"embedding: the table must be (vocab, dim), got shape {tuple(table.shape)}.")
  vocab = table.shape[0]
  lo, hi = concrete_range(ids)  # traced ids (inside jit) are not checked: they give NaN rows below instead
  if lo < 0 or hi >= vocab:
    raise ValueError(f"embedding: ids must be in [0, {vocab}) for a table of shape {tuple(table.shape)}, "
                     f"got ids from {lo} to {hi}.")
  ids = jnp.where(ids < 0, vocab, ids)  # out of range: filled with NaN, never wrapped
  return jnp.take(table, ids, axis=0, mode="fill")
