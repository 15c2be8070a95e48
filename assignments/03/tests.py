"""Graded tests for assignment 03: backpropagation by hand versus autodiff.

Every hand-written backward pass is called in float64 (``sub.call64``) with a
random upstream gradient and compared with ``jax.vjp`` of dlfunc's forward
function, computed here: relative error < 1e-7 per element. ``numerical_grad``
is judged on the probe functions the notebook ships (the student passes
their name; functions cannot travel to the worker), against ``jax.grad`` of
the grader's own copy of the same functions.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

import dlfunc.losses as L
import dlfunc.nn as ref
from autograder import checks as C
from autograder import hidden, points

# Names of the parts of multi-output results, used in feedback (lstm_step(...)[0][0] (`h`)).
OUTPUTS = {"dense_backward": "({'w': dw, 'b': db}, dx)"}
FUNCTIONS = ("numerical_grad", "relu_backward", "dense_backward", "softmax_cross_entropy_backward",
             "mlp_backward")
_AUTODIFF = ("jax.grad", "jax.vjp", "jax.value_and_grad", "jax.jacrev", "jax.jacfwd", "jax.jacobian",
             "jax.jvp", "jax.linearize", "jax.hessian", "jax.test_util", "jax.nn", "optax", "flax")
FORBIDDEN = {f: _AUTODIFF for f in FUNCTIONS}
RTOL, ATOL = 1e-7, 1e-10   # float64: a hand-written gradient is exact up to rounding

# The notebook's PROBES, copied here (the grader trusts only its own copy).
PROBES = {
    "cubic": lambda x: jnp.sum(x ** 3 - 2.0 * x),
    "coupled": lambda x: jnp.sum(jnp.sin(x) * jnp.roll(x, 1) ** 2),
    "logsumexp": lambda x: jnp.log(jnp.sum(jnp.exp(x))),
}

# ---------------------------------------------------------------- references (float64, jitted)


def _x64(fn):
  """Run the jitted ``fn`` with float64 enabled (the grader's side of every comparison)."""
  jitted = jax.jit(fn)

  @functools.wraps(fn)
  def wrapper(*args):
    with jax.enable_x64(True):
      return jax.tree_util.tree_map(np.asarray, jitted(*args))
  return wrapper


def _dense(params, x):
  return ref.dense({"kernel": params["w"], "bias": params["b"]}, x)


def _mlp_loss(params, x, y):
  h = x
  for layer in params[:-1]:
    h = ref.relu(_dense(layer, h))
  return L.sparse_softmax_cross_entropy(_dense(params[-1], h), y)


@_x64
def ref_relu_backward(x, g):
  return jax.vjp(ref.relu, x)[1](g)[0]


@_x64
def ref_dense_backward(params, x, g):
  return jax.vjp(_dense, params, x)[1](g)


@_x64
def ref_sce_backward(logits, labels, g):
  return g * jax.grad(L.sparse_softmax_cross_entropy)(logits, labels)


@_x64
def ref_mlp_backward(params, x, y):
  return jax.grad(_mlp_loss)(params, x, y)


def ref_numerical_grad(name, x):
  with jax.enable_x64(True):
    return np.asarray(jax.jit(jax.grad(PROBES[name]))(x))


def central_np(name, x, eps):
  """Central differences computed here in NumPy float64 (for the eps test)."""
  f = lambda v: float(np.asarray(jax.jit(PROBES[name])(v)))  # noqa: E731
  out = np.zeros_like(x)
  with jax.enable_x64(True):
    for i in np.ndindex(x.shape):
      e = np.zeros_like(x)
      e[i] = eps
      out[i] = (f(x + e) - f(x - e)) / (2 * eps)
  return out


def f64(seed, shape, scale=1.0):
  return C.normal(seed, shape, np.float64, scale)


def rel_error(got, expected, what, tol=RTOL):
  """Norm-wise relative error ||got - expected|| / ||expected|| < tol (shapes and finiteness first)."""
  g, e = np.asarray(got), np.asarray(expected)
  C.check(g.shape == e.shape, f"{what}: expected shape {e.shape}, got {g.shape}.")
  C.finite(g, what)
  C.check(g.dtype == np.float64, f"{what}: expected float64 (the grader enables float64), got {g.dtype}; "
          "build the perturbation with jnp.zeros_like(x) so it keeps x's dtype.")
  err = float(np.linalg.norm(g - e) / max(np.linalg.norm(e), 1e-300))
  if not err < tol:
    i = np.unravel_index(np.argmax(np.abs(g - e)), e.shape)
    C.fail(f"{what}: relative error {err:.2e} (must be < {tol:g}); worst at index {tuple(int(k) for k in i)}: "
           f"expected {e[i]:.10g}, got {g[i]:.10g}.")

# ---------------------------------------------------------------- numerical_grad


@points(1)
def test_numgrad_cubic(sub):
  """numerical_grad: central differences of sum(x^3 - 2x) on a vector match jax.grad (float64)"""
  x = f64(0, (6,))
  got = sub.call64("numerical_grad", "cubic", x)
  rel_error(got, ref_numerical_grad("cubic", x), 'numerical_grad("cubic", x) for x float64[6]')


@points(1)
def test_numgrad_matrix(sub):
  """numerical_grad: works for a (3, 2) input and a function coupling neighbouring entries"""
  x = f64(1, (3, 2))
  got = sub.call64("numerical_grad", "coupled", x)
  rel_error(got, ref_numerical_grad("coupled", x), 'numerical_grad("coupled", x) for x float64[3, 2]')


@points(1)
@hidden
def test_numgrad_logsumexp(sub):
  """numerical_grad: gradient of log-sum-exp (the softmax) matches jax.grad (float64)"""
  x = f64(2, (5,), 2.0)
  got = sub.call64("numerical_grad", "logsumexp", x)
  rel_error(got, ref_numerical_grad("logsumexp", x), 'numerical_grad("logsumexp", x) for x float64[5]')


@points(1)
@hidden
def test_numgrad_uses_eps_centrally(sub):
  """numerical_grad: eps=1e-2 gives exactly the central difference (f(x+eps) - f(x-eps)) / (2 eps)"""
  x = f64(3, (4,))
  got = sub.call64("numerical_grad", "cubic", x, eps=1e-2)
  # For x^3 the central difference is 3x^2 + eps^2 (error eps^2 = 1e-4); forward differences are off by ~3x eps.
  rel_error(got, central_np("cubic", x, 1e-2), 'numerical_grad("cubic", x, eps=1e-2)', tol=1e-9)

# ---------------------------------------------------------------- relu_backward


@points(1)
def test_relu_backward_values(sub):
  """relu_backward: g * (x > 0) for a random upstream gradient (float64)"""
  x, g = f64(10, (4, 5)), f64(11, (4, 5))
  C.allclose(sub.call64("relu_backward", x, g), ref_relu_backward(x, g), "relu_backward(x, g) in float64",
             RTOL, ATOL)


@points(1)
def test_relu_backward_at_zero(sub):
  """relu_backward: the gradient at exactly x = 0 is 0 (as JAX, PyTorch and Keras)"""
  x = np.array([-2.0, -0.0, 0.0, 1e-300, 3.0])
  g = f64(12, (5,))
  C.allclose(sub.call64("relu_backward", x, g), ref_relu_backward(x, g), f"relu_backward({x.tolist()}, g)",
             RTOL, ATOL)


@points(1)
def test_relu_backward_jit(sub):
  """relu_backward: traces under jax.jit (no Python if on array values)"""
  x, g = C.normal(13, (3, 4)), C.normal(14, (3, 4))
  expected = ref_relu_backward(x, g).astype(np.float32)
  C.jit_matches(sub, "relu_backward", lambda *a: expected, x, g)

# ---------------------------------------------------------------- dense_backward


def _check_dense(got, params, x, g, what):
  if not (isinstance(got, (tuple, list)) and len(got) == 2):
    C.fail(f"{what}: expected a pair (grads, dx) with grads = {{'w': ..., 'b': ...}}, got {C.describe(got)[:160]}.")
  exp_p, exp_x = ref_dense_backward(params, x, g)
  C.allclose(got[0], exp_p, what + "[0] (the parameter gradients)", RTOL, ATOL)
  C.allclose(got[1], exp_x, what + "[1] (dx, the gradient passed to the layer below)", RTOL, ATOL)


@points(2)
def test_dense_backward_values(sub):
  """dense_backward: dW = x^T g, db = sum of g over the batch, dx = g W^T for a random g (float64)"""
  params, x, g = C.mlp_params(20, (4, 3), np.float64)[0], f64(21, (5, 4)), f64(22, (5, 3))
  _check_dense(sub.call64("dense_backward", params, x, g), params, x, g, "dense_backward(params, x, g)")


@points(1)
def test_dense_backward_batch_of_one(sub):
  """dense_backward: a batch of one example, 1 -> 6 units (shapes kept exactly)"""
  params, x, g = C.mlp_params(23, (1, 6), np.float64)[0], f64(24, (1, 1)), f64(25, (1, 6))
  _check_dense(sub.call64("dense_backward", params, x, g), params, x, g,
               "dense_backward(params, x, g) for x (1, 1), W (1, 6)")


@points(1)
def test_dense_backward_jit(sub):
  """dense_backward: traces under jax.jit and gives the same gradients"""
  params = C.mlp_params(26, (3, 2))[0]
  x, g = C.normal(27, (4, 3)), C.normal(28, (4, 2))
  expected = jax.tree_util.tree_map(lambda v: v.astype(np.float32), ref_dense_backward(params, x, g))
  C.jit_matches(sub, "dense_backward", lambda *a: expected, params, x, g, rtol=1e-5, atol=1e-6)

# ---------------------------------------------------------------- softmax_cross_entropy_backward


@points(1)
def test_sce_backward_values(sub):
  """softmax_cross_entropy_backward: (softmax(z) - onehot(y)) / N for g = 1 (float64)"""
  z, y = f64(30, (6, 4), 2.0), C.labels(31, 6, 4)
  C.allclose(sub.call64("softmax_cross_entropy_backward", z, y, 1.0), ref_sce_backward(z, y, 1.0),
             "softmax_cross_entropy_backward(logits, labels, 1.0)", RTOL, ATOL)


@points(1)
def test_sce_backward_upstream(sub):
  """softmax_cross_entropy_backward: scales by a random upstream gradient g (float64)"""
  z, y = f64(32, (3, 5), 2.0), C.labels(33, 3, 5)
  g = float(np.random.default_rng(34).normal())
  C.allclose(sub.call64("softmax_cross_entropy_backward", z, y, g), ref_sce_backward(z, y, g),
             f"softmax_cross_entropy_backward(logits, labels, {g:.4f})", RTOL, ATOL)


@points(1)
def test_sce_backward_extreme(sub):
  """softmax_cross_entropy_backward: finite and exact for logits of magnitude 1e4 (subtract the max)"""
  z = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4 - 1.0], [-1e4, -1e4, 1e3]])
  y = np.array([1, 0, 2], np.int32)
  C.allclose(sub.call64("softmax_cross_entropy_backward", z, y, 0.5), ref_sce_backward(z, y, 0.5),
             "softmax_cross_entropy_backward(logits of magnitude 1e4, labels, 0.5)", RTOL, ATOL)


@points(1)
def test_sce_backward_jit(sub):
  """softmax_cross_entropy_backward: traces under jax.jit"""
  z, y = C.normal(35, (4, 3)), C.labels(36, 4, 3)
  expected = ref_sce_backward(z.astype(np.float64), y, 2.0).astype(np.float32)
  C.jit_matches(sub, "softmax_cross_entropy_backward", lambda *a: expected, z, y, np.float32(2.0),
                rtol=1e-5, atol=1e-6)

# ---------------------------------------------------------------- mlp_backward


def _check_mlp(got, params, x, y, what):
  if not (isinstance(got, (list, tuple)) and len(got) == len(params)):
    C.fail(f"{what}: expected a list of {len(params)} layer gradients like params, got {C.describe(got)[:160]}.")
  C.allclose(list(got), ref_mlp_backward(params, x, y), what, RTOL, ATOL)


@points(1)
def test_mlp_backward_structure(sub):
  """mlp_backward: returns one {"w", "b"} gradient per layer, shaped like params"""
  params, x, y = C.mlp_params(40, (4, 5, 3), np.float64), f64(41, (6, 4)), C.labels(42, 6, 3)
  got = sub.call64("mlp_backward", params, x, y)
  if not (isinstance(got, (list, tuple)) and len(got) == 2):
    C.fail(f"mlp_backward(params, x, y): expected a list of 2 layer gradients, got {C.describe(got)[:160]}.")
  for i, (gl, pl) in enumerate(zip(got, params)):
    C.keys_are(gl, {"w", "b"}, f"mlp_backward(params, x, y)[{i}]")
    for k in ("w", "b"):
      C.shape_dtype(gl[k], pl[k].shape, np.float64, f"mlp_backward(params, x, y)[{i}][{k!r}]")


@points(2)
def test_mlp_backward_two_layers(sub):
  """mlp_backward: gradients of the mean cross-entropy of a [4, 5, 3] relu MLP equal jax.grad (float64)"""
  params, x, y = C.mlp_params(40, (4, 5, 3), np.float64), f64(41, (6, 4)), C.labels(42, 6, 3)
  _check_mlp(sub.call64("mlp_backward", params, x, y), params, x, y, "mlp_backward(params, x, y) for [4, 5, 3]")


@points(2)
@hidden
def test_mlp_backward_three_layers(sub):
  """mlp_backward: a deeper [6, 8, 7, 4] MLP matches jax.grad (float64)"""
  params, x, y = C.mlp_params(43, (6, 8, 7, 4), np.float64), f64(44, (9, 6), 2.0), C.labels(45, 9, 4)
  _check_mlp(sub.call64("mlp_backward", params, x, y), params, x, y, "mlp_backward(params, x, y) for [6, 8, 7, 4]")


@points(1)
def test_mlp_backward_jit(sub):
  """mlp_backward: traces under jax.jit"""
  params32 = C.mlp_params(46, (3, 4, 2))
  x, y = C.normal(47, (5, 3)), C.labels(48, 5, 2)

  p64 = jax.tree_util.tree_map(lambda v: np.asarray(v, np.float64), params32)
  expected = jax.tree_util.tree_map(lambda v: v.astype(np.float32),
                                    ref_mlp_backward(p64, np.asarray(x, np.float64), y))
  C.jit_matches(sub, "mlp_backward", lambda *a: expected, params32, x, y, rtol=1e-4, atol=1e-6)
