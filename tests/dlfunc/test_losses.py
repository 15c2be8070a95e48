"""dlfunc.losses against optax and Keras 3 (JAX backend): values, jit, grad, vmap, 1e4 logits, float64 gradients.

One table drives the optax parity: (id, dlfunc loss, optax reference reduced to
the batch mean, inputs, rtol, atol). A second table does the same against
``keras.losses`` where the conventions coincide (``from_logits=True``; on
probabilities Keras clips to [1e-7, 1 - 1e-7], as dlfunc does).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from dlfunc import losses

N, K = 6, 5


def _rand(seed, *shape, scale=1.0):
  return (scale * np.random.RandomState(seed).randn(*shape)).astype(np.float32)


def _probs(seed, *shape):
  return np.asarray(jax.nn.softmax(_rand(seed, *shape, scale=2.0)))


def _labels(seed, n=N, k=K):
  return np.random.RandomState(seed).randint(0, k, size=n).astype(np.int32)


def _targets01(seed, *shape):
  return np.random.RandomState(seed).rand(*shape).astype(np.float32)  # soft targets in [0, 1)


def _mean(f):
  return lambda *a: jnp.mean(f(*a))


# Inputs: (args...) with the differentiated argument first.
PRED, TARGET = _rand(0, N, 3), _rand(1, N, 3)
LOGITS, PROBS, LABELS = _rand(2, N, K, scale=3.0), _probs(3, N, K), _labels(4)
BLOGITS, BTARGETS = _rand(5, N, 4, scale=3.0), _targets01(6, N, 4)
BPROBS = np.asarray(jax.nn.sigmoid(BLOGITS))

# (id, dlfunc loss, optax reference (batch mean), args, rtol, atol)
OPTAX_LOSSES = [
    ("mse_vs_squared_error", losses.mse, _mean(optax.squared_error), (PRED, TARGET), 1e-6, 1e-6),
    ("mse_vs_2_l2_loss", losses.mse, lambda p, t: 2 * jnp.mean(optax.l2_loss(p, t)), (PRED, TARGET), 1e-6, 1e-6),
    ("softmax_cross_entropy", losses.softmax_cross_entropy, _mean(optax.softmax_cross_entropy), (LOGITS, PROBS),
     1e-6, 1e-6),
    ("softmax_cross_entropy_one_hot", losses.softmax_cross_entropy, _mean(optax.softmax_cross_entropy),
     (LOGITS, np.eye(K, dtype=np.float32)[LABELS]), 1e-6, 1e-6),
    ("softmax_cross_entropy_smoothing_0.1", functools.partial(losses.softmax_cross_entropy, label_smoothing=0.1),
     lambda z, p: jnp.mean(optax.softmax_cross_entropy(z, optax.smooth_labels(p, 0.1))), (LOGITS, PROBS),
     1e-6, 1e-6),
    ("sparse_softmax_cross_entropy", losses.sparse_softmax_cross_entropy,
     _mean(optax.softmax_cross_entropy_with_integer_labels), (LOGITS, LABELS), 1e-6, 1e-6),
    ("sparse_softmax_cross_entropy_3d", losses.sparse_softmax_cross_entropy,
     _mean(optax.softmax_cross_entropy_with_integer_labels),
     (_rand(7, 2, 3, K, scale=3.0), _labels(8, 6).reshape(2, 3)), 1e-6, 1e-6),
    ("binary_cross_entropy_with_logits", losses.binary_cross_entropy_with_logits,
     _mean(optax.sigmoid_binary_cross_entropy), (BLOGITS, BTARGETS), 1e-6, 1e-6),
    # On probabilities away from the clip, BCE(p) == sigmoid BCE of the logit log(p / (1 - p)).
    ("binary_cross_entropy_probs", losses.binary_cross_entropy,
     lambda p, t: jnp.mean(optax.sigmoid_binary_cross_entropy(jnp.log(p) - jnp.log1p(-p), t)),
     (BPROBS, BTARGETS), 1e-5, 1e-5),
    ("l1_penalty", functools.partial(losses.l1_penalty, scale=0.3),
     lambda tree: 0.3 * optax.tree.norm(tree, ord=1), ({"w": PRED, "b": TARGET[0]},), 1e-6, 1e-6),
    ("l2_penalty", functools.partial(losses.l2_penalty, scale=0.3),
     lambda tree: 0.3 * optax.tree.norm(tree, squared=True), ({"w": PRED, "b": TARGET[0]},), 1e-6, 1e-6),
]
IDS = [row[0] for row in OPTAX_LOSSES]


def _first_arg_grad(f, args):
  return jax.grad(lambda a0: f(a0, *args[1:]))(args[0])


@functools.lru_cache(maxsize=None)
def _results(name):
  """Value, reference, gradients of both, and vmap of one row, from one compilation."""
  _, f, ref, args, _, _ = OPTAX_LOSSES[IDS.index(name)]

  @jax.jit
  def run(args):
    stacked = jax.tree_util.tree_map(lambda a: jnp.stack([a, a[::-1]]), args)  # batch reversed: same mean
    out = dict(value=f(*args), ref=ref(*args), grad=_first_arg_grad(f, args), grad_ref=_first_arg_grad(ref, args))
    if "penalty" not in name:
      out["vmap"] = jax.vmap(f)(*stacked)
      # One example at a time (a batch of one): the batch loss must be their mean.
      out["per_example"] = jax.vmap(lambda *a: f(*(v[None] for v in a)))(*args)
    return out
  return jax.tree_util.tree_map(np.asarray, run(args))


@pytest.mark.parametrize("name", IDS)
def test_matches_optax_under_jit(name):
  _, f, ref, args, rtol, atol = OPTAX_LOSSES[IDS.index(name)]
  r = _results(name)
  assert r["value"].shape == () and r["value"].dtype == np.float32
  np.testing.assert_allclose(r["value"], r["ref"], rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", IDS)
def test_gradient_matches_optax(name):
  _, f, ref, args, rtol, atol = OPTAX_LOSSES[IDS.index(name)]
  r = _results(name)
  jax.tree_util.tree_map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6), r["grad"], r["grad_ref"])


@pytest.mark.parametrize("name", [n for n in IDS if "penalty" not in n])
def test_under_vmap_and_returns_the_batch_mean(name):
  _, f, ref, args, rtol, atol = OPTAX_LOSSES[IDS.index(name)]
  r = _results(name)
  np.testing.assert_allclose(r["vmap"], [r["value"]] * 2, rtol=1e-6)
  assert r["per_example"].shape == (len(args[0]),)
  np.testing.assert_allclose(r["value"], np.mean(r["per_example"]), rtol=1e-5)  # the mean over the batch


@pytest.mark.parametrize("name", IDS)
def test_float32_and_bfloat16_without_promotion(strict_promotion, name):
  """No implicit promotion; bfloat16 inputs (mixed-precision logits) give a float32 loss (penalties: the params')."""
  _, f, ref, args, rtol, atol = OPTAX_LOSSES[IDS.index(name)]
  for dtype in (jnp.float32, jnp.bfloat16):
    cast = lambda a: jax.ShapeDtypeStruct(np.shape(a), dtype if a.dtype == np.float32 else a.dtype)
    out = jax.eval_shape(f, *jax.tree_util.tree_map(cast, args))
    assert out.shape == () and out.dtype == (dtype if "penalty" in name else jnp.float32)


# -------------------------------------------------------------- extreme logits

def _clipped_bce(p, y):
  """Keras' clipped binary cross-entropy, in float64 NumPy from float32 clip bounds."""
  p = np.clip(p, np.float32(1e-7), np.float32(1 - 1e-7)).astype(np.float64)
  return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))


EXTREME = np.array([[1e4, -1e4, 0.0, 5.0, -5.0], [-1e4, -1e4, 1e4, 1e4, 0.0]], np.float32)
EXTREME_CASES = {
    "softmax_cross_entropy": (losses.softmax_cross_entropy, (EXTREME, _probs(9, 2, 5)),
                              _mean(optax.softmax_cross_entropy)),
    "softmax_cross_entropy_smoothing": (functools.partial(losses.softmax_cross_entropy, label_smoothing=0.2),
                                        (EXTREME, np.eye(5, dtype=np.float32)[[1, 0]]),
                                        lambda z, p: jnp.mean(optax.softmax_cross_entropy(
                                            z, optax.smooth_labels(p, 0.2)))),
    "sparse_softmax_cross_entropy": (losses.sparse_softmax_cross_entropy, (EXTREME, np.array([1, 0], np.int32)),
                                     _mean(optax.softmax_cross_entropy_with_integer_labels)),
    "binary_cross_entropy_with_logits": (losses.binary_cross_entropy_with_logits,
                                         (EXTREME, _targets01(10, 2, 5)), _mean(optax.sigmoid_binary_cross_entropy)),
    "binary_cross_entropy_probs_0_and_1": (losses.binary_cross_entropy,
                                           (np.array([[0.0, 1.0, 1.0, 0.0, 0.5]], np.float32),
                                            np.array([[1.0, 0.0, 1.0, 0.0, 1.0]], np.float32)), _clipped_bce),
}


@pytest.mark.parametrize("name", list(EXTREME_CASES))
def test_finite_value_and_gradient_at_logits_1e4(name):
  f, args, ref = EXTREME_CASES[name]
  value, grad = jax.jit(lambda *a: jax.value_and_grad(f)(*a))(*args)
  assert np.isfinite(value), f"{name}: loss {value} at logits of magnitude 1e4"
  assert np.all(np.isfinite(grad)), f"{name}: non-finite gradient at logits of magnitude 1e4"
  np.testing.assert_allclose(value, ref(*args), rtol=1e-5)


# -------------------------------------------------------------- float64 gradient checks


@pytest.mark.parametrize("name", ["mse_vs_squared_error", "softmax_cross_entropy_smoothing_0.1",
                                  "sparse_softmax_cross_entropy", "binary_cross_entropy_with_logits",
                                  "binary_cross_entropy_probs", "l1_penalty", "l2_penalty"])
def test_check_grads_float64(x64, name):
  _, f, ref, args, rtol, atol = OPTAX_LOSSES[IDS.index(name)]
  args = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64) if a.dtype == np.float32 else jnp.asarray(a),
                                args)
  if name == "binary_cross_entropy_probs":  # keep finite differences (step ~1e-3) away from 0, 1 and the clip
    args = (0.1 + 0.8 * args[0], args[1])
  n_diff = 1 if name.startswith("sparse") else len(args)  # integer labels are not differentiated
  assert all(leaf.dtype == jnp.float64 for leaf in jax.tree_util.tree_leaves(args[:n_diff]))
  g = lambda *d: f(*d, *args[n_diff:])
  check_grads(jax.jit(g), args[:n_diff], order=1, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)


def test_mae_gradient_float64(x64):
  p, t = jnp.asarray(PRED, jnp.float64), jnp.asarray(TARGET, jnp.float64)
  check_grads(losses.mae, (p, t), order=1, modes=("rev",), atol=1e-6, rtol=1e-6)


# -------------------------------------------------------------- Keras

KERAS_LOSSES = [
    ("MeanSquaredError", losses.mse, lambda k: k.losses.MeanSquaredError(), (PRED, TARGET)),
    ("MeanAbsoluteError", losses.mae, lambda k: k.losses.MeanAbsoluteError(), (PRED, TARGET)),
    ("CategoricalCrossentropy_from_logits", losses.softmax_cross_entropy,
     lambda k: k.losses.CategoricalCrossentropy(from_logits=True), (LOGITS, PROBS)),
    ("CategoricalCrossentropy_label_smoothing", functools.partial(losses.softmax_cross_entropy, label_smoothing=0.1),
     lambda k: k.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
     (LOGITS, np.eye(K, dtype=np.float32)[LABELS])),
    ("SparseCategoricalCrossentropy_from_logits", losses.sparse_softmax_cross_entropy,
     lambda k: k.losses.SparseCategoricalCrossentropy(from_logits=True), (LOGITS, LABELS)),
    ("BinaryCrossentropy_from_logits", losses.binary_cross_entropy_with_logits,
     lambda k: k.losses.BinaryCrossentropy(from_logits=True), (BLOGITS, BTARGETS)),
    ("BinaryCrossentropy_probs", losses.binary_cross_entropy, lambda k: k.losses.BinaryCrossentropy(),
     (BPROBS, BTARGETS)),
    ("BinaryCrossentropy_probs_clipped", losses.binary_cross_entropy, lambda k: k.losses.BinaryCrossentropy(),
     (np.array([[0.0, 1.0, 1.0, 0.0, 0.5, 1e-9]], np.float32), np.array([[1.0, 0.0, 1.0, 0.0, 1.0, 1.0]],
                                                                           np.float32))),
]



@pytest.mark.parametrize("name,f,keras_loss,args", KERAS_LOSSES, ids=[r[0] for r in KERAS_LOSSES])
def test_matches_keras(name, f, keras_loss, args):
  keras = pytest.importorskip("keras")
  y_pred, y_true = args
  expected = float(keras_loss(keras)(y_true, y_pred))  # Keras takes (y_true, y_pred)
  np.testing.assert_allclose(float(f(y_pred, y_true)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,f,keras_reg", [
    ("L1", losses.l1_penalty, lambda k: k.regularizers.L1(0.01)),
    ("L2", losses.l2_penalty, lambda k: k.regularizers.L2(0.01)),
])
def test_penalties_match_keras_regularizers(name, f, keras_reg):
  keras = pytest.importorskip("keras")
  tree = {"w": PRED, "b": TARGET[0]}
  expected = sum(float(keras_reg(keras)(w)) for w in tree.values())
  np.testing.assert_allclose(float(f(tree, scale=0.01)), expected, rtol=1e-6)


# -------------------------------------------------------------- bad input


@pytest.mark.parametrize("call,error,pattern", [
    (lambda: losses.mse(jnp.ones((4,)), jnp.ones((4, 1))), ValueError,
     r"mse: predictions has shape \(4,\) but targets has shape \(4, 1\)"),
    (lambda: losses.binary_cross_entropy_with_logits(jnp.ones((4, 1)), jnp.ones((4,))), ValueError,
     r"logits has shape \(4, 1\) but targets has shape \(4,\)"),
    (lambda: losses.softmax_cross_entropy(jnp.ones((4, 3)), jnp.ones((4, 2))), ValueError,
     r"logits has shape \(4, 3\) but probs has shape \(4, 2\)"),
    (lambda: losses.softmax_cross_entropy(jnp.ones((4, 3)), jnp.ones((4, 3)), label_smoothing=1.0), ValueError,
     r"label_smoothing must be in \[0, 1\), got 1.0"),
    (lambda: losses.sparse_softmax_cross_entropy(jnp.ones((4, 3)), jnp.ones((4,))), TypeError,
     r"labels must be integers, got dtype float32"),
    (lambda: losses.sparse_softmax_cross_entropy(jnp.ones((4, 3)), jnp.zeros((4, 1), jnp.int32)), ValueError,
     r"labels shape \(4, 1\) must equal logits shape without its class axis, \(4,\)"),
    (lambda: losses.sparse_softmax_cross_entropy(jnp.ones((2, 3)), jnp.array([0, 3])), ValueError,
     r"labels must be in \[0, 3\) for 3 classes .* got labels from 0 to 3"),
    (lambda: losses.sparse_softmax_cross_entropy(jnp.ones((2, 3)), jnp.array([-1, 2])), ValueError,
     r"labels must be in \[0, 3\)"),
], ids=["mse_shapes", "bce_shapes", "ce_shapes", "smoothing", "label_dtype", "label_shape", "label_range",
        "label_negative"])
def test_bad_input_is_a_one_line_error(call, error, pattern):
  with pytest.raises(error, match=pattern) as info:
    call()
  assert "\n" not in str(info.value)


def test_out_of_range_label_under_jit_is_nan_not_a_wrapped_label():
  logits = jnp.zeros((2, 3))
  loss = jax.jit(losses.sparse_softmax_cross_entropy)
  assert np.isnan(float(loss(logits, jnp.array([0, 3]))))
  assert np.isnan(float(loss(logits, jnp.array([-1, 0]))))
  np.testing.assert_allclose(float(loss(logits, jnp.array([0, 2]))), np.log(3), rtol=1e-6)


def test_penalties_of_an_empty_tree_are_zero():
  assert float(losses.l2_penalty({})) == 0.0 and float(losses.l1_penalty([])) == 0.0
