"""Convolutions over channels-last inputs (``NWC``, ``NHWC``, ``NDHWC``) with ``(*window, in, out)`` kernels.

:func:`conv` handles any number of spatial axes; :func:`conv2d` and :func:`conv1d` are
checked front-ends for images ``(N, H, W, C)`` and sequences ``(N, L, C)``.
"""

from __future__ import annotations

import functools
import itertools
from typing import Mapping

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from dlfunc.nn._checks import Padding, check_nwc, check_rank, ntuple, padding_pairs

Array = jax.Array


def conv(
  params: Mapping[str, Array],
  x: Array,
  *,
  strides=1,
  padding: Padding = "VALID",
  dilation=1,
  groups: int = 1,
  dtype=None,
) -> Array:
  """N-d convolution over channels-last input (``NWC``, ``NHWC``, ...).

  Cross-correlation, as in every deep-learning library. ``kernel`` is
  ``(*window, in // groups, out)``. See :func:`conv2d`. ``dtype`` is the compute
  dtype (e.g. ``jnp.bfloat16``; input, kernel and bias are cast to it), ``None``
  the promoted type of the input and the kernel.
  """
  kernel = jnp.asarray(params["kernel"])
  n = kernel.ndim - 2
  if not 1 <= n <= 3:
    raise ValueError(
      f"conv: the kernel must be (*window, in, out) with 1 to 3 window axes, got shape {tuple(kernel.shape)}."
    )
  x = jnp.asarray(x)
  check_rank(f"conv{n}d", x, n + 2, "(batch, *spatial, channels)")
  if x.shape[-1] != kernel.shape[-2] * groups:
    raise ValueError(
      f"conv{n}d: input has {x.shape[-1]} channels (shape {tuple(x.shape)}) but the kernel "
      f"{tuple(kernel.shape)} expects {kernel.shape[-2] * groups}."
    )
  if not jnp.issubdtype(x.dtype, jnp.inexact):  # e.g. uint8 images
    x = x.astype(kernel.dtype)
  dtype = jnp.result_type(x, kernel) if dtype is None else dtype
  x, kernel = x.astype(dtype), kernel.astype(dtype)
  strides, dilation, pads = ntuple(strides, n, "strides"), ntuple(dilation, n, "dilation"), padding_pairs(padding, n)
  extent = [(k - 1) * d + 1 for k, d in zip(kernel.shape[:n], dilation)]
  if isinstance(pads, str):
    pads = jax.lax.padtype_to_pads(x.shape[1:-1], extent, strides, pads)
  out = [(size + lo + hi - e) // s + 1 for size, (lo, hi), e, s in zip(x.shape[1:-1], pads, extent, strides)]
  small = any(min(size, o) < e for size, o, e in zip(x.shape[1:-1], out, extent))
  explicit = tuple((int(lo), int(hi)) for lo, hi in pads)
  cropping = min(min(p) for p in explicit) < 0  # negative padding: lax's own path
  if small and groups == 1 and not cropping:
    y = _conv_by_taps(x, kernel, strides, explicit, dilation, extent, out)
  elif _patch_grad_pays(x, kernel, strides, dilation, groups) and not cropping:
    y = _conv_patch_grad(x, kernel, tuple(strides), explicit, tuple(dilation))
  else:
    y = _lax_conv(x, kernel, strides, explicit, dilation, groups)
  bias = params.get("bias")
  return y if bias is None else y + jnp.asarray(bias).astype(dtype)


def _lax_conv(x, kernel, strides, pads, dilation, groups=1):
  """``lax.conv_general_dilated`` on channels-last input and a ``(*window, in, out)`` kernel."""
  n = kernel.ndim - 2
  spatial = "DHW"[3 - n :]
  dn = jax.lax.conv_dimension_numbers(x.shape, kernel.shape, (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"))
  return jax.lax.conv_general_dilated(
    x,
    kernel,
    window_strides=strides,
    padding=pads,
    rhs_dilation=dilation,
    dimension_numbers=dn,
    feature_group_count=groups,
  )


def _patches(x, window, strides, pads, dilation, out):
  """The input under every kernel tap: ``(batch, *out, taps, in)``, taps in the kernel's row-major order."""
  x = jnp.pad(x, [(0, 0), *pads, (0, 0)])
  taps = []
  for tap in itertools.product(*(range(k) for k in window)):
    sl = tuple(slice(t * d, t * d + (o - 1) * s + 1, s) for t, d, o, s in zip(tap, dilation, out, strides))
    taps.append(x[(slice(None), *sl)])
  return jnp.stack(taps, axis=-2)


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
    raise ValueError(
      f"conv{n}d: the padded input is smaller than the kernel window {tuple(extent)} "
      f"(input {tuple(x.shape)}, padding {list(pads)}); pad it (e.g. padding='SAME') "
      "or use a smaller kernel."
    )
  patches = _patches(x, kernel.shape[:n], strides, pads, dilation, out)  # (batch, *out, taps, in)
  return jnp.einsum("...tc,tco->...o", patches, kernel.reshape(-1, *kernel.shape[n:]))


def _patch_grad_pays(x, kernel, strides, dilation, groups) -> bool:
  """Whether :func:`_conv_patch_grad` is the faster way to this convolution's kernel gradient.

  Measured on XLA CPU (Adam train steps of Conv(32, 3x3) + ReLU + Dense(10),
  float32, batch 64, CPU time on one core): it pays for single-channel input at
  stride 1 (28x28x1: 1.11x with VALID padding, 1.05x with SAME; LeNet even), not
  at stride 2 (0.91x) nor for three input channels at 32x32 (0.89x with SAME),
  so only that case takes it. There XLA's
  filter gradient transposes the whole output gradient to batch-inner order
  and convolves it with a window as large as the image, while the patch
  matrix is only ``taps * in`` columns wide. Only float32 (bfloat16 and
  float64 keep the plain path; float64 is what numerics are checked against),
  and only on the CPU (GPU and TPU convolution libraries have their own).
  """
  return (
    groups == 1
    and kernel.shape[-2] == 1
    and all(s == 1 for s in strides)
    and all(d == 1 for d in dilation)
    and x.dtype == jnp.float32
    and kernel.dtype == jnp.float32
    and jax.default_backend() == "cpu"
  )


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def _conv_patch_grad(x, kernel, strides, pads, dilation):
  """The convolution of :func:`_lax_conv`, whose kernel derivative is a patch matmul.

  The value and the input derivative are XLA's own; the kernel tangent is
  ``patches @ dkernel`` (im2col), so reverse mode transposes it into
  ``patches^T @ output_gradient``: one ``(taps * in, batch * out)`` by
  ``(batch * out, features)`` matmul reading the output gradient in its own
  layout. A JVP rule (not a VJP one) keeps forward mode and higher
  derivatives working.
  """
  return _lax_conv(x, kernel, strides, pads, dilation)


@functools.partial(_conv_patch_grad.defjvp, symbolic_zeros=True)
def _conv_patch_grad_jvp(strides, pads, dilation, primals, tangents):
  x, kernel = primals
  dx, dkernel = tangents
  y = _lax_conv(x, kernel, strides, pads, dilation)
  dy = None
  if not isinstance(dkernel, SymbolicZero):
    n = kernel.ndim - 2
    patches = _patches(x, kernel.shape[:n], strides, pads, dilation, y.shape[1:-1])
    rows = patches.reshape(-1, patches.shape[-2] * patches.shape[-1])  # (batch * out, taps * in)
    dy = (rows @ dkernel.reshape(rows.shape[-1], -1)).reshape(y.shape)
  if not isinstance(dx, SymbolicZero):
    dx_term = _lax_conv(dx, kernel, strides, pads, dilation)
    dy = dx_term if dy is None else dy + dx_term
  return y, jnp.zeros_like(y) if dy is None else dy


def conv2d(
  params: Mapping[str, Array],
  x: Array,
  *,
  strides=1,
  padding: Padding = "VALID",
  dilation=1,
  groups: int = 1,
  dtype=None,
) -> Array:
  r"""2-D convolution, NHWC input and HWIO kernel.

  Args:
    params: ``{"kernel": (kh, kw, in, out), "bias": (out,)}`` (bias optional).
    x: ``(N, H, W, C)``.
    strides, dilation: an int or an ``(sh, sw)`` pair.
    padding: ``'VALID'`` (none), ``'SAME'`` (output size ``ceil(H / stride)``),
      an int (that many zeros on every side) or ``((top, bottom), (left, right))``.
    dtype: the compute dtype (e.g. ``jnp.bfloat16`` with float32 parameters:
      mixed precision); ``None``: the promoted type of ``x`` and the kernel.

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
  return conv(params, x, strides=strides, padding=padding, dilation=dilation, groups=groups, dtype=dtype)


def conv1d(
  params: Mapping[str, Array],
  x: Array,
  *,
  strides: int = 1,
  padding: Padding = "VALID",
  dilation: int = 1,
  groups: int = 1,
  dtype=None,
) -> Array:
  r"""1-D convolution (cross-correlation), NWC input and WIO kernel.

  :math:`y[n, l, o] = b_o + \sum_{k, i} x[n, l s + k d, i]\, w[k, i, o]` (stride ``s``, dilation ``d``).

  Args:
    params: ``{"kernel": (k, in // groups, out), "bias": (out,)}`` (bias optional).
    x: ``(N, L, C)``.
    strides, dilation: ints (or 1-tuples).
    padding: ``'VALID'``, ``'SAME'``, an int (zeros on both ends) or ``[(low, high)]``.
    dtype: the compute dtype (see :func:`conv`).

  Returns:
    ``(N, L_out, out)`` with :math:`L_{out} = \lfloor (L + p_{lo} + p_{hi} - d(k-1) - 1) / s \rfloor + 1`.

  Warning:
    PyTorch ``nn.Conv1d`` is NCL with weight ``(out, in, k)``: use
    ``w.permute(2, 1, 0)`` for the kernel and ``x.transpose(0, 2, 1)`` for inputs.
    Keras ``Conv1D`` kernels are already ``(k, in, out)``.

  Example:
    >>> p = {"kernel": jnp.ones((3, 2, 4)), "bias": jnp.zeros(4)}
    >>> conv1d(p, jnp.ones((1, 10, 2)), padding=1).shape
    (1, 10, 4)
  """
  kernel = params["kernel"]
  if kernel.ndim != 3:
    raise ValueError(f"conv1d: the kernel must be (width, in, out), got shape {tuple(kernel.shape)}.")
  return conv(
    params, check_nwc("conv1d", x), strides=strides, padding=padding, dilation=dilation, groups=groups, dtype=dtype
  )
