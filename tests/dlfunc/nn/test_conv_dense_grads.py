"""The CPU fast paths for kernel gradients (``nn.conv``'s patch matmul, ``nn.dense``'s ``(g^T x)^T``)
against ``jax.grad`` of the plain ``lax.conv_general_dilated`` / matmul.

Only the order of float32 sums may differ. Tolerances: float32 rtol 1e-5 and
atol 1e-5 times the largest magnitude of the reference (the gradients are sums
of up to ~2,700 products); float64 (the ``x64`` fixture) rtol 1e-12, atol
1e-12 times that magnitude. The dispatch tests check which path a call takes
(bfloat16, float64 and multi-channel inputs keep the plain one); no timing here.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlfunc import nn
from dlfunc.nn import _conv, _dense

F32 = {"rtol": 1e-5, "scale": 1e-5}
F64 = {"rtol": 1e-12, "scale": 1e-12}


def _close(actual, expected, tol):
  expected = np.asarray(expected)
  atol = tol["scale"] * max(float(np.max(np.abs(expected))), 1.0)
  np.testing.assert_allclose(np.asarray(actual), expected, rtol=tol["rtol"], atol=atol)


def _lax_conv(x, kernel, strides, pads, dilation):
  """The reference: XLA's convolution, differentiated by JAX's own rules."""
  n = kernel.ndim - 2
  spatial = "DHW"[3 - n :]
  return jax.lax.conv_general_dilated(
    x,
    kernel,
    window_strides=strides,
    padding=pads,
    rhs_dilation=dilation,
    dimension_numbers=(f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"),
  )


def _conv_case(batch, spatial, cin, cout, window, dtype=np.float32, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(batch, *spatial, cin)).astype(dtype)
  kernel = (rng.normal(size=(*window, cin, cout)) / np.sqrt(np.prod(window) * cin)).astype(dtype)
  return jnp.asarray(x), jnp.asarray(kernel)


def _pads(x, kernel, strides, padding, dilation):
  n = kernel.ndim - 2
  if not isinstance(padding, str):
    return tuple(tuple(p) for p in padding)
  extent = [(k - 1) * d + 1 for k, d in zip(kernel.shape[:n], dilation)]
  return tuple(tuple(p) for p in jax.lax.padtype_to_pads(x.shape[1:-1], extent, strides, padding))


def _loss(conv_fn, weights):
  """A non-linear scalar of the convolution, so the output gradient is not constant."""
  return lambda x, kernel: jnp.sum(jnp.tanh(conv_fn(x, kernel)) * weights)


# (batch, spatial, in, out, window, strides, padding, dilation)
CONV_CASES = [
  (4, (28, 28), 1, 32, (3, 3), (1, 1), "VALID", (1, 1)),  # the seed CNN's layer
  (1, (28, 28), 1, 8, (3, 3), (1, 1), "VALID", (1, 1)),  # batch 1
  (3, (12, 11), 1, 5, (3, 3), (1, 1), "SAME", (1, 1)),
  (2, (13, 13), 1, 4, (3, 3), (2, 2), "SAME", (1, 1)),  # stride 2, odd size
  (2, (15, 14), 3, 6, (3, 3), (1, 1), "VALID", (1, 1)),  # 3 input channels
  (2, (16, 16), 3, 6, (5, 3), (2, 1), "SAME", (1, 1)),
  (2, (14, 14), 1, 4, (3, 3), (1, 1), ((2, 1), (0, 2)), (2, 2)),  # explicit padding, dilation
  (3, (20,), 1, 4, (5,), (1,), "SAME", (1,)),  # 1-D
  (2, (6, 7, 5), 1, 3, (3, 3, 2), (1, 1, 1), "VALID", (1, 1, 1)),  # 3-D
]


@pytest.mark.parametrize("batch,spatial,cin,cout,window,strides,padding,dilation", CONV_CASES)
def test_patch_grad_matches_lax_conv_grads_in_float32(batch, spatial, cin, cout, window, strides, padding, dilation):
  x, kernel = _conv_case(batch, spatial, cin, cout, window)
  pads = _pads(x, kernel, strides, padding, dilation)
  ref_fn = lambda x, k: _lax_conv(x, k, strides, pads, dilation)  # noqa: E731
  new_fn = lambda x, k: _conv._conv_patch_grad(x, k, strides, pads, dilation)  # noqa: E731
  y_ref = ref_fn(x, kernel)
  weights = jnp.asarray(np.random.default_rng(1).normal(size=y_ref.shape).astype(np.float32))
  np.testing.assert_array_equal(new_fn(x, kernel), y_ref)  # the value is XLA's own convolution
  g_ref = jax.grad(_loss(ref_fn, weights), argnums=(0, 1))(x, kernel)
  g_new = jax.jit(jax.grad(_loss(new_fn, weights), argnums=(0, 1)))(x, kernel)
  assert g_new[1].dtype == jnp.float32 and g_new[1].shape == kernel.shape
  _close(g_new[0], g_ref[0], F32)  # input gradient
  _close(g_new[1], g_ref[1], F32)  # kernel gradient: the patch matmul
  # Forward mode (a JVP rule, not a VJP one): tangents in both arguments.
  tx, tk = jnp.cos(x), jnp.sin(kernel)
  _close(jax.jvp(new_fn, (x, kernel), (tx, tk))[1], jax.jvp(ref_fn, (x, kernel), (tx, tk))[1], F32)


@pytest.mark.parametrize("case", [CONV_CASES[1], CONV_CASES[3], CONV_CASES[4], CONV_CASES[6]])
def test_patch_grad_matches_lax_conv_grads_in_float64(case, x64):
  batch, spatial, cin, cout, window, strides, padding, dilation = case
  x, kernel = _conv_case(batch, spatial, cin, cout, window, dtype=np.float64)
  assert x.dtype == jnp.float64
  pads = _pads(x, kernel, strides, padding, dilation)
  ref_fn = lambda x, k: _lax_conv(x, k, strides, pads, dilation)  # noqa: E731
  new_fn = lambda x, k: _conv._conv_patch_grad(x, k, strides, pads, dilation)  # noqa: E731
  weights = jnp.asarray(np.random.default_rng(1).normal(size=ref_fn(x, kernel).shape))
  g_ref = jax.grad(_loss(ref_fn, weights), argnums=(0, 1))(x, kernel)
  g_new = jax.grad(_loss(new_fn, weights), argnums=(0, 1))(x, kernel)
  assert g_new[1].dtype == jnp.float64
  _close(g_new[0], g_ref[0], F64)
  _close(g_new[1], g_ref[1], F64)


def test_patch_grad_second_derivatives_match(x64):
  x, kernel = _conv_case(1, (6, 6), 1, 2, (2, 2), dtype=np.float64)
  pads = ((0, 0), (0, 0))
  ref = lambda k: jnp.sum(jnp.tanh(_lax_conv(x, k, (1, 1), pads, (1, 1))))  # noqa: E731
  new = lambda k: jnp.sum(jnp.tanh(_conv._conv_patch_grad(x, k, (1, 1), pads, (1, 1))))  # noqa: E731
  _close(jax.hessian(new)(kernel), jax.hessian(ref)(kernel), F64)


@pytest.mark.parametrize("batch", [1, 16])
def test_conv2d_gradients_through_the_public_function(batch):
  """``nn.conv2d`` with bias on the seed shape (the dispatched fast path) against the plain reference."""
  x, kernel = _conv_case(batch, (28, 28), 1, 32, (3, 3), seed=2)
  bias = jnp.asarray(np.random.default_rng(3).normal(size=32).astype(np.float32))
  pads = ((0, 0), (0, 0))
  weights = jnp.asarray(np.random.default_rng(4).normal(size=(batch, 26, 26, 32)).astype(np.float32))

  def ours(k, b):
    return jnp.sum(jnp.tanh(nn.relu(nn.conv2d({"kernel": k, "bias": b}, x))) * weights)

  def ref(k, b):
    return jnp.sum(jnp.tanh(jax.nn.relu(_lax_conv(x, k, (1, 1), pads, (1, 1)) + b)) * weights)

  assert _takes(lambda k: nn.conv2d({"kernel": k}, x), kernel, "_conv_patch_grad")
  g_ours = jax.jit(jax.grad(ours, argnums=(0, 1)))(kernel, bias)
  g_ref = jax.grad(ref, argnums=(0, 1))(kernel, bias)
  _close(g_ours[0], g_ref[0], F32)
  _close(g_ours[1], g_ref[1], F32)


def _takes(fn, arg, name: str) -> bool:
  """Whether tracing ``fn(arg)`` goes through the custom-derivative function ``name``."""
  return f"name={name}" in str(jax.make_jaxpr(fn)(arg))


def test_conv_dispatch_takes_the_patch_path_only_where_measured():
  x1, k1 = _conv_case(2, (10, 10), 1, 4, (3, 3))
  x3, k3 = _conv_case(2, (10, 10), 3, 4, (3, 3))
  patch = "_conv_patch_grad"
  assert _takes(lambda k: nn.conv2d({"kernel": k}, x1), k1, patch)
  assert _takes(lambda k: nn.conv2d({"kernel": k}, x1, padding="SAME"), k1, patch)
  # Plain path: several input channels, stride 2, dilation, bfloat16 compute, grouped.
  assert not _takes(lambda k: nn.conv2d({"kernel": k}, x3), k3, patch)
  assert not _takes(lambda k: nn.conv2d({"kernel": k}, x1, strides=2), k1, patch)
  assert not _takes(lambda k: nn.conv2d({"kernel": k}, x1, dilation=2), k1, patch)
  assert not _takes(lambda k: nn.conv2d({"kernel": k}, x1, dtype=jnp.bfloat16), k1, patch)
  x4, k4 = _conv_case(2, (10, 10), 4, 4, (3, 3))
  assert not _takes(lambda k: nn.conv2d({"kernel": k[:, :, :1]}, x4, groups=4), k4, patch)
  # A map smaller than the kernel keeps its own im2col path.
  xs, ks = _conv_case(2, (2, 2), 1, 4, (3, 3))
  assert not _takes(lambda k: nn.conv2d({"kernel": k}, xs, padding="SAME"), ks, patch)


def test_conv_dispatch_keeps_float64_on_the_plain_path(x64):
  x, kernel = _conv_case(2, (10, 10), 1, 4, (3, 3), dtype=np.float64)
  assert x.dtype == jnp.float64
  assert not _takes(lambda k: nn.conv2d({"kernel": k}, x), kernel, "_conv_patch_grad")


def test_bfloat16_conv_gradients_are_unchanged_by_the_fast_path():
  """bfloat16 compute takes the plain path: its gradients equal plain autodiff of the bfloat16 conv exactly."""
  x, kernel = _conv_case(2, (12, 12), 1, 4, (3, 3))
  pads = ((0, 0), (0, 0))

  def ours(k):
    return jnp.sum(nn.conv2d({"kernel": k}, x, dtype=jnp.bfloat16).astype(jnp.float32) ** 2)

  def ref(k):
    y = _lax_conv(x.astype(jnp.bfloat16), k.astype(jnp.bfloat16), (1, 1), pads, (1, 1))
    return jnp.sum(y.astype(jnp.float32) ** 2)

  np.testing.assert_array_equal(jax.grad(ours)(kernel), jax.grad(ref)(kernel))


# ---------------------------------------------------------------------------- dense


def _dense_case(rows, cin, cout, dtype=np.float32, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(rows, cin)).astype(dtype)
  kernel = (rng.normal(size=(cin, cout)) / np.sqrt(cin)).astype(dtype)
  return jnp.asarray(x), jnp.asarray(kernel)


@pytest.mark.parametrize("rows,cin,cout", [(64, 21632, 10), (1, 100, 3), (8, 64, 5), (3, 1000, 7)])
def test_wide_matmul_matches_plain_matmul_grads_in_float32(rows, cin, cout):
  x, kernel = _dense_case(rows, cin, cout)
  weights = jnp.asarray(np.random.default_rng(1).normal(size=(rows, cout)).astype(np.float32))
  ref = lambda x, k: jnp.sum(jnp.tanh(x @ k) * weights)  # noqa: E731
  new = lambda x, k: jnp.sum(jnp.tanh(_dense._matmul_wide(x, k)) * weights)  # noqa: E731
  np.testing.assert_array_equal(_dense._matmul_wide(x, kernel), x @ kernel)
  g_ref = jax.grad(ref, argnums=(0, 1))(x, kernel)
  g_new = jax.jit(jax.grad(new, argnums=(0, 1)))(x, kernel)
  _close(g_new[0], g_ref[0], F32)
  _close(g_new[1], g_ref[1], F32)
  tx, tk = jnp.cos(x), jnp.sin(kernel)
  _close(jax.jvp(_dense._matmul_wide, (x, kernel), (tx, tk))[1], jax.jvp(jnp.matmul, (x, kernel), (tx, tk))[1], F32)


def test_wide_matmul_matches_plain_matmul_grads_in_float64(x64):
  x, kernel = _dense_case(4, 200, 6, dtype=np.float64)
  ref = lambda k: jnp.sum(jnp.tanh(x @ k))  # noqa: E731
  new = lambda k: jnp.sum(jnp.tanh(_dense._matmul_wide(x, k)))  # noqa: E731
  assert jax.grad(new)(kernel).dtype == jnp.float64
  _close(jax.grad(new)(kernel), jax.grad(ref)(kernel), F64)
  _close(jax.hessian(lambda k: new(k[:, :2]))(kernel), jax.hessian(lambda k: ref(k[:, :2]))(kernel), F64)


def test_dense_gradients_through_the_public_function():
  """``nn.dense`` on a wide 3-D input (rows flattened) with bias, against the plain reference."""
  rng = np.random.default_rng(5)
  x = jnp.asarray(rng.normal(size=(2, 3, 400)).astype(np.float32))
  params = {
    "kernel": jnp.asarray(rng.normal(size=(400, 6)).astype(np.float32) / 20),
    "bias": jnp.asarray(rng.normal(size=6).astype(np.float32)),
  }
  assert _takes(lambda k: nn.dense({"kernel": k}, x), params["kernel"], "_matmul_wide")
  ours = lambda p: jnp.sum(jnp.tanh(nn.dense(p, x)))  # noqa: E731
  ref = lambda p: jnp.sum(jnp.tanh(x @ p["kernel"] + p["bias"]))  # noqa: E731
  assert nn.dense(params, x).shape == (2, 3, 6)
  g_ours, g_ref = jax.grad(ours)(params), jax.grad(ref)(params)
  _close(g_ours["kernel"], g_ref["kernel"], F32)
  _close(g_ours["bias"], g_ref["bias"], F32)


def test_dense_dispatch_takes_the_wide_path_only_where_measured():
  wide = "_matmul_wide"
  x, kernel = _dense_case(64, 21632, 10)
  assert _takes(lambda k: nn.dense({"kernel": k}, x), kernel, wide)
  xn, kn = _dense_case(128, 784, 128)  # the MLP's first layer: 784 < 8 * 128
  assert not _takes(lambda k: nn.dense({"kernel": k}, xn), kn, wide)
  assert not _takes(lambda k: nn.dense({"kernel": k}, x, dtype=jnp.bfloat16), kernel, wide)
  assert not _takes(lambda k: nn.dense({"kernel": k}, x[0]), kernel, wide)  # a single vector


def test_dense_dispatch_keeps_float64_on_the_plain_path(x64):
  x, kernel = _dense_case(4, 200, 6, dtype=np.float64)
  assert not _takes(lambda k: nn.dense({"kernel": k}, x), kernel, "_matmul_wide")
