"""dlfunc.nn activations against jax.nn / jax.scipy (and Keras), under jit, grad and vmap.

One table drives every test: (id, dlfunc function, reference function, rtol, atol).
Each function is applied along the last axis of a (batch, features) input, so the
same table serves softmax-like functions and elementwise ones.
"""
import functools

import jax
import jax.numpy as jnp
import jax.scipy.special
import numpy as np
import pytest
from jax.test_util import check_grads

from dlfunc import nn

# (id, dlfunc, reference, rtol, atol) -- float32.
ACTIVATIONS = [
    ("relu", nn.relu, jax.nn.relu, 1e-6, 1e-6),
    ("sigmoid", nn.sigmoid, jax.nn.sigmoid, 1e-5, 1e-7),
    ("tanh", nn.tanh, jnp.tanh, 1e-6, 1e-6),
    ("softmax", nn.softmax, jax.nn.softmax, 1e-5, 1e-7),
    ("softmax_axis0", functools.partial(nn.softmax, axis=0), functools.partial(jax.nn.softmax, axis=0), 1e-5, 1e-7),
    ("log_softmax", nn.log_softmax, jax.nn.log_softmax, 1e-5, 1e-5),
    # jax.scipy's logsumexp reduces over every axis by default; dlfunc's over the last, like softmax.
    ("logsumexp", nn.logsumexp, functools.partial(jax.scipy.special.logsumexp, axis=-1), 1e-6, 1e-5),
    ("logsumexp_keepdims_axis0", functools.partial(nn.logsumexp, axis=0, keepdims=True),
     functools.partial(jax.scipy.special.logsumexp, axis=0, keepdims=True), 1e-6, 1e-5),
    ("gelu_exact", nn.gelu, functools.partial(jax.nn.gelu, approximate=False), 1e-5, 1e-6),
    ("gelu_tanh", functools.partial(nn.gelu, approximate=True), functools.partial(jax.nn.gelu, approximate=True),
     1e-5, 1e-6),
    ("leaky_relu", nn.leaky_relu, jax.nn.leaky_relu, 1e-6, 1e-6),
    ("leaky_relu_0.2", functools.partial(nn.leaky_relu, negative_slope=0.2),
     functools.partial(jax.nn.leaky_relu, negative_slope=0.2), 1e-6, 1e-6),
    ("elu", nn.elu, jax.nn.elu, 1e-5, 1e-6),
    ("elu_alpha0.5", functools.partial(nn.elu, alpha=0.5), functools.partial(jax.nn.elu, alpha=0.5), 1e-5, 1e-6),
]
IDS = [row[0] for row in ACTIVATIONS]

# Every magnitude up to 1e4, both signs, and exact zeros (where relu/elu have kinks).
EXTREMES = np.array([[-1e4, -1e3, -30.0, -1.0, 0.0, 1.0, 30.0, 1e3, 1e4],
                     [1e4, 1e4, -1e4, 0.0, 0.0, -1e4, 1e4, 5.0, -5.0]], np.float32)


def _inputs(seed=0, shape=(5, 7)):
  x = 3.0 * np.random.RandomState(seed).randn(*shape).astype(np.float32)
  x[0, 0] = 0.0  # the gradient at a kink must match the reference too
  return jnp.asarray(x)


def _vjp(f, x, seed=1):
  """Gradient of <f(x), w> for a fixed random cotangent w: tests the whole Jacobian, not just its row sums."""
  y, pullback = jax.vjp(f, x)
  w = jnp.asarray(np.random.RandomState(seed).randn(*y.shape).astype(np.float32))
  return pullback(w)[0]


@functools.lru_cache(maxsize=None)
def _all_results():
  """Everything the parity tests compare, for every table row, from a single compilation (fast on 2 cores)."""
  x, x2, extremes = _inputs(), _inputs(seed=5), jnp.asarray(EXTREMES)

  @jax.jit
  def run(x, x2, extremes):
    xs = jnp.stack([x, x2])  # an extra leading batch axis for vmap
    out = {}
    for name, f, ref, _, _ in ACTIVATIONS:
      out[name] = dict(
          jit=f(x), ref=ref(x),
          vmap=jax.vmap(f)(xs), vmap_ref=jnp.stack([ref(x), ref(x2)]),
          grad=_vjp(f, x2), grad_ref=_vjp(ref, x2),
          extreme=f(extremes), extreme_ref=ref(extremes), extreme_grad=_vjp(f, extremes),
      )
    return out
  return jax.tree_util.tree_map(np.asarray, run(x, x2, extremes))


def _results(name):
  return _all_results()[name]


@pytest.mark.parametrize("name,f,ref,rtol,atol", ACTIVATIONS, ids=IDS)
def test_value_under_jit_and_vmap(name, f, ref, rtol, atol):
  r = _results(name)
  assert r["jit"].dtype == r["ref"].dtype == np.float32
  np.testing.assert_allclose(r["jit"], r["ref"], rtol=rtol, atol=atol)
  np.testing.assert_allclose(r["vmap"], r["vmap_ref"], rtol=rtol, atol=atol)


@pytest.mark.parametrize("name,f,ref,rtol,atol", ACTIVATIONS, ids=IDS)
def test_gradient_matches_reference(name, f, ref, rtol, atol):
  r = _results(name)
  np.testing.assert_allclose(r["grad"], r["grad_ref"], rtol=rtol, atol=max(atol, 1e-6))


@pytest.mark.parametrize("name,f,ref,rtol,atol", ACTIVATIONS, ids=IDS)
def test_finite_value_and_gradient_at_1e4(name, f, ref, rtol, atol):
  r = _results(name)
  assert np.all(np.isfinite(r["extreme"])), f"{name}: non-finite value at extreme inputs: {r['extreme']}"
  assert np.all(np.isfinite(r["extreme_grad"])), f"{name}: non-finite gradient at extreme inputs: {r['extreme_grad']}"
  np.testing.assert_allclose(r["extreme"], r["extreme_ref"], rtol=rtol, atol=atol)  # and the right numbers there


def test_check_grads_float64(x64):
  """Analytic vs numerical derivatives (forward and reverse) of every activation, in float64."""
  x = np.random.RandomState(6).randn(2, 4)
  x = jnp.asarray(np.where(np.abs(x) < 0.05, 0.5, x))  # stay off the kinks for finite differences
  assert x.dtype == jnp.float64
  check = functools.partial(check_grads, order=1, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)
  try:  # all at once (one compilation); on failure, find the culprits one by one
    check(jax.jit(lambda x: {name: f(x) for name, f, *_ in ACTIVATIONS}), (x,))
  except AssertionError:
    bad = []
    for name, f, *_ in ACTIVATIONS:
      try:
        check(f, (x,))
      except AssertionError as e:
        bad.append(f"{name}: {str(e).splitlines()[0]}")
    assert not bad, "gradient check failed for " + "; ".join(bad)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.float32])
@pytest.mark.parametrize("name,f,ref,rtol,atol", ACTIVATIONS, ids=IDS)
def test_keeps_dtype_without_promotion(strict_promotion, dtype, name, f, ref, rtol, atol):
  # Tracing is enough: strict promotion rejects any implicit upcast while the function is traced.
  out = jax.eval_shape(f, jax.ShapeDtypeStruct((5, 7), dtype))
  assert out.dtype == dtype


def test_gradient_at_zero_is_that_of_the_left_branch():
  # jnp.maximum(x, 0) would give relu'(0) = 0.5; PyTorch, Keras and jax.nn give 0.
  assert float(jax.grad(nn.relu)(0.0)) == 0.0
  assert float(jax.grad(nn.elu)(0.0)) == float(jax.grad(jax.nn.elu)(0.0)) == 1.0
  assert float(jax.grad(nn.leaky_relu)(0.0)) == float(jax.grad(jax.nn.leaky_relu)(0.0))


@pytest.mark.parametrize("name,f,ref,rtol,atol", ACTIVATIONS, ids=IDS)
def test_nan_propagates_like_the_reference(name, f, ref, rtol, atol):
  # A diverging network must show NaN in its loss, not have it silently zeroed by an activation.
  x = jnp.array([[np.nan, 1.0, -1.0]], jnp.float32)
  np.testing.assert_array_equal(np.isnan(f(x)), np.isnan(ref(x)))
  assert bool(jnp.isnan(f(x)).any())


def test_sigmoid_keeps_relative_precision_in_the_tails():
  x = jnp.array([-80.0, -40.0, -20.0, 20.0], jnp.float32)
  np.testing.assert_allclose(nn.sigmoid(x), jax.nn.sigmoid(x), rtol=1e-5, atol=0)
  assert float(nn.sigmoid(jnp.float32(-20.0))) > 0.0


def test_log_softmax_does_not_underflow_where_log_of_softmax_does():
  x = jnp.array([0.0, 1e4])
  assert not bool(jnp.all(jnp.isfinite(jnp.log(nn.softmax(x)))))  # the trap
  np.testing.assert_allclose(nn.log_softmax(x), [-1e4, 0.0], rtol=1e-6)


def test_logsumexp_of_all_minus_inf_row():
  x = jnp.array([[-jnp.inf, -jnp.inf], [0.0, -jnp.inf]])
  np.testing.assert_array_equal(nn.logsumexp(x), jax.scipy.special.logsumexp(x, axis=-1))
  assert float(nn.logsumexp(x)[0]) == -np.inf


def test_softmax_rows_sum_to_one_at_extremes():
  np.testing.assert_allclose(jnp.sum(nn.softmax(jnp.asarray(EXTREMES)), axis=-1), 1.0, rtol=1e-6)


# Keras on the JAX backend: same names, where the defaults coincide.
KERAS_ACTIVATIONS = [
    ("relu", nn.relu, lambda k: k.activations.relu),
    ("sigmoid", nn.sigmoid, lambda k: k.activations.sigmoid),
    ("tanh", nn.tanh, lambda k: k.activations.tanh),
    ("softmax", nn.softmax, lambda k: k.activations.softmax),
    ("log_softmax", nn.log_softmax, lambda k: k.activations.log_softmax),
    ("gelu_exact", nn.gelu, lambda k: functools.partial(k.activations.gelu, approximate=False)),
    ("gelu_tanh", functools.partial(nn.gelu, approximate=True),
     lambda k: functools.partial(k.activations.gelu, approximate=True)),
    # Keras' leaky_relu function defaults to 0.2 (its LeakyReLU layer to 0.3): pass the slope.
    ("leaky_relu_0.3", functools.partial(nn.leaky_relu, negative_slope=0.3),
     lambda k: functools.partial(k.activations.leaky_relu, negative_slope=0.3)),
    ("elu", nn.elu, lambda k: k.activations.elu),
]


@pytest.mark.parametrize("name,f,keras_fn", KERAS_ACTIVATIONS, ids=[r[0] for r in KERAS_ACTIVATIONS])
def test_matches_keras(name, f, keras_fn):
  keras = pytest.importorskip("keras")
  x = _inputs(seed=7)
  np.testing.assert_allclose(f(x), np.asarray(keras_fn(keras)(x)), rtol=1e-5, atol=1e-6)
