"""Graded tests for assignment 01: neurons, dense layers, activations.

Each test receives ``sub``, whose attributes are the student's functions (called
in an isolated worker when grading standalone, in the kernel under nbgrader)
and returns NumPy arrays. References are dlfunc's own functions, run here in
the trusted process. See autograder/AUTHORING.md.
"""
import jax.numpy as jnp
import numpy as np

import dlfunc.nn as ref
from autograder import checks as C
from autograder import hidden, points

FUNCTIONS = ("relu", "sigmoid", "tanh", "softmax", "init_dense", "dense")
# dlfunc / jax.nn implementations a submission may not call for a graded function.
FORBIDDEN = {
    "relu": ("jax.nn.relu",),
    "sigmoid": ("jax.nn.sigmoid", "jax.scipy.special.expit"),
    "softmax": ("jax.nn.softmax", "jax.scipy.special.softmax"),
    "init_dense": ("jax.nn.initializers",),
}


def ref_init_dense(key, n_in, n_out):
  return {"w": ref.glorot_uniform(key, (n_in, n_out)), "b": jnp.zeros((n_out,), jnp.float32)}


def ref_dense(params, x):
  return ref.dense({"kernel": params["w"], "bias": params["b"]}, x)


EXTREME = np.array([-1e4, -1e3, -30.0, 0.0, 30.0, 1e3, 1e4], np.float32)

# ---------------------------------------------------------------- relu


@points(1)
def test_relu_values(sub):
  """relu: matches max(x, 0) on a random vector"""
  C.matches(sub, "relu", ref.relu, C.normal(0, (9,)))


@points(1)
def test_relu_shape_dtype(sub):
  """relu: keeps the shape and dtype of a (3, 4) float32 batch"""
  x = C.normal(1, (3, 4))
  got = C.matches(sub, "relu", ref.relu, x)
  C.shape_dtype(got, (3, 4), np.float32, "relu(x) for x of shape (3, 4)")


@points(1)
def test_relu_jit(sub):
  """relu: gives the same values under jax.jit"""
  C.jit_matches(sub, "relu", ref.relu, C.normal(2, (4, 5)))


@points(1)
@hidden
def test_relu_grad(sub):
  """relu: gradient is 1 above zero and 0 below (float64)"""
  C.grad_matches(sub, "relu", ref.relu, C.normal(3, (6,), np.float64))

# ---------------------------------------------------------------- sigmoid


@points(1)
def test_sigmoid_values(sub):
  """sigmoid: matches 1 / (1 + exp(-x)) on a random vector, under jax.jit"""
  C.jit_matches(sub, "sigmoid", ref.sigmoid, C.normal(4, (9,), scale=3.0))


@points(1)
def test_sigmoid_extreme(sub):
  """sigmoid: finite and correct at |x| = 1e4"""
  C.matches(sub, "sigmoid", ref.sigmoid, EXTREME)


@points(1)
@hidden
def test_sigmoid_jit(sub):
  """sigmoid: gives the same values under jax.jit"""
  C.jit_matches(sub, "sigmoid", ref.sigmoid, C.normal(5, (3, 7)))


@points(1)
def test_sigmoid_grad(sub):
  """sigmoid: gradient matches sigma(1 - sigma), finite at |x| = 1e4 (float64)"""
  C.grad_matches(sub, "sigmoid", ref.sigmoid, np.concatenate([C.normal(6, (5,), np.float64), EXTREME]))

# ---------------------------------------------------------------- tanh


@points(1)
def test_tanh_values(sub):
  """tanh: matches tanh on random and extreme inputs, under jax.jit and jax.vmap"""
  x = np.concatenate([C.normal(7, (6,), scale=2.0), EXTREME])
  return C.each(lambda: C.jit_matches(sub, "tanh", ref.tanh, x), lambda: C.vmap_matches(sub, "tanh", ref.tanh, x))


@points(1)
@hidden
def test_tanh_transforms(sub):
  """tanh: same values under jax.jit and jax.vmap"""
  x = C.normal(8, (4, 3))
  return C.each(lambda: C.jit_matches(sub, "tanh", ref.tanh, x),
                lambda: C.vmap_matches(sub, "tanh", ref.tanh, x))

# ---------------------------------------------------------------- softmax


@points(1)
def test_softmax_values(sub):
  """softmax: one distribution per row of a (4, 5) batch"""
  C.matches(sub, "softmax", ref.softmax, C.normal(9, (4, 5), scale=2.0))


@points(1)
def test_softmax_extreme(sub):
  """softmax: stable at |x| = 1e4 (subtract the max first)"""
  x = np.array([[1e4, 1e4, 0.0], [-1e4, 1e3, 1e3], [1e3, 0.0, -1e3]], np.float32)
  C.matches(sub, "softmax", ref.softmax, x)


@points(1)
def test_softmax_axis(sub):
  """softmax: respects axis=0"""
  x = C.normal(10, (3, 4))
  C.matches(sub, "softmax", ref.softmax, x, axis=0)


@points(1)
def test_softmax_jit(sub):
  """softmax: gives the same values under jax.jit"""
  C.jit_matches(sub, "softmax", ref.softmax, C.normal(11, (2, 6), scale=5.0))


@points(1)
@hidden
def test_softmax_grad(sub):
  """softmax: vector-Jacobian product matches for a random cotangent (float64)"""
  C.grad_matches(sub, "softmax", ref.softmax, C.normal(12, (3, 5), np.float64, scale=3.0))


@points(1)
def test_softmax_vmap(sub):
  """softmax: jax.vmap over a batch equals softmax of each row"""
  C.vmap_matches(sub, "softmax", ref.softmax, C.normal(13, (5, 4)))

# ---------------------------------------------------------------- init_dense


@points(1)
def test_init_dense_shapes(sub):
  """init_dense: returns {"w": (n_in, n_out), "b": (n_out,)} float32 with zero bias"""
  p = sub.init_dense(C.key(0), 5, 3)
  C.keys_are(p, {"w", "b"}, "init_dense(key, 5, 3)")
  C.shape_dtype(p["w"], (5, 3), np.float32, 'init_dense(key, 5, 3)["w"]')
  C.shape_dtype(p["b"], (3,), np.float32, 'init_dense(key, 5, 3)["b"]')
  C.allclose(p["b"], np.zeros(3, np.float32), 'init_dense(key, 5, 3)["b"]')


@points(1)
def test_init_dense_glorot(sub):
  """init_dense: weights lie in the Glorot limit and fill it"""
  n_in, n_out = 64, 32
  w = sub.init_dense(C.key(1), n_in, n_out)["w"]
  C.shape_dtype(w, (n_in, n_out), np.float32, "init_dense(key, 64, 32)['w']")
  limit = np.sqrt(6.0 / (n_in + n_out))
  C.check(np.all(np.abs(w) <= limit * (1 + 1e-6)),
          f"init_dense(key, 64, 32): |w| must stay within sqrt(6 / (n_in + n_out)) = {limit:.4f}; "
          f"largest |w| is {np.abs(w).max():.4f}.")
  C.check(np.abs(w).max() > 0.9 * limit,
          f"init_dense(key, 64, 32): weights should spread over (-{limit:.4f}, {limit:.4f}); "
          f"largest |w| is only {np.abs(w).max():.4f}. Is the limit sqrt(6 / (n_in + n_out))?")


@points(1)
def test_init_dense_prng(sub):
  """init_dense: same key same weights, different keys different weights"""
  C.prng_discipline(sub, "init_dense", C.key(2), 6, 4)


@points(1)
@hidden
def test_init_dense_statistics(sub):
  """init_dense: uniform on (-l, l): mean 0 and variance l^2 / 3 on a 256x256 layer"""
  w = np.asarray(sub.init_dense(C.key(3), 256, 256)["w"], np.float64)
  limit = np.sqrt(6.0 / 512)
  C.check(w.shape == (256, 256), f"init_dense(key, 256, 256)['w'] has shape {w.shape}, expected (256, 256).")
  # 65536 draws: the sample mean has sd l / sqrt(3 * 65536) ~ 0.0009 l; 10 sd is a safe bar.
  C.check(abs(w.mean()) < 0.01 * limit, f"init_dense: weight mean {w.mean():.5f} should be ~0.")
  C.check(abs(w.var() / (limit**2 / 3) - 1) < 0.05,
          f"init_dense: weight variance {w.var():.6f} should be l^2 / 3 = {limit**2 / 3:.6f} "
          "for U(-l, l) (Glorot uniform).")


@points(1)
def test_init_dense_jit(sub):
  """init_dense: traces under jax.jit with static sizes"""
  key = C.key(4)
  eager = sub.init_dense(key, 7, 2)
  C.jit_matches(sub, "init_dense", lambda k, a, b: eager, key, 7, 2, static_argnums=(1, 2))

# ---------------------------------------------------------------- dense


def _params(seed, n_in, n_out):
  return {"w": C.normal(seed, (n_in, n_out)), "b": C.normal(seed + 100, (n_out,))}


@points(1)
def test_dense_values(sub):
  """dense: matches x @ w + b on a (4, 3) batch"""
  C.matches(sub, "dense", ref_dense, _params(20, 3, 2), C.normal(21, (4, 3)))


@points(1)
def test_dense_batch_axes(sub):
  """dense: works for any leading batch axes, (2, 5, 3) -> (2, 5, 4)"""
  got = C.matches(sub, "dense", ref_dense, _params(22, 3, 4), C.normal(23, (2, 5, 3)))
  C.shape_dtype(got, (2, 5, 4), np.float32, "dense(params, x) for x of shape (2, 5, 3)")


@points(1)
@hidden
def test_dense_grad(sub):
  """dense: gradients with respect to params and x match (float64)"""
  p = {k: v.astype(np.float64) for k, v in _params(24, 4, 3).items()}
  C.grad_matches(sub, "dense", ref_dense, p, C.normal(25, (2, 4), np.float64), argnums=(0, 1))


@points(1)
def test_dense_transforms(sub):
  """dense: same values under jax.jit and under jax.vmap over the batch"""
  p, x = _params(26, 3, 5), C.normal(27, (6, 3))
  return C.each(lambda: C.jit_matches(sub, "dense", ref_dense, p, x),
                lambda: C.vmap_matches(sub, "dense", ref_dense, p, x, in_axes=(None, 0)))
