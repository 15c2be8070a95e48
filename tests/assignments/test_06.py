"""Assignment 06 (CNNs): the graded tests catch real mistakes and name the failing input.

The validate/hostile runs for every assignment live in the autograder tests;
here the reference solution runs in-process (``LocalSubmission``) with one
function swapped for a typical mistake, and the verdict and feedback are checked.
"""
import jax.numpy as jnp
import pytest

from _assignment_helpers import Reference

R = Reference("06")


def test_hypothesis_cases_are_fixed_and_varied():
  m = R.assignment.module
  a = m.hypothesis_cases(m.conv_cases(explicit=False), 8)
  b = m.hypothesis_cases(m.conv_cases(explicit=False), 8)
  assert a == b and len(a) == 8
  for n, h, w, cin, cout, kh, kw, strides, padding, seed in m.hypothesis_cases(m.conv_cases(explicit=True), 6):
    assert h + sum(padding[0]) >= kh and w + sum(padding[1]) >= kw


@pytest.mark.parametrize("key", ["test_conv2d_naive_values", "test_conv2d_naive_hypothesis", "test_conv2d_hypothesis",
                                 "test_max_pool2d_same_negative", "test_cnn_train_step_one_step"])
def test_reference_passes(ref_ns, key):
  assert R.run(ref_ns, key)[:2] == (1.0, "passed")


def test_flipped_kernel_fails_with_the_input_named(ref_ns):
  ns = dict(ref_ns)
  ns["conv2d_naive"] = lambda params, x, strides=(1, 1), padding=((0, 0), (0, 0)): ref_ns["conv2d_naive"](
      {"kernel": params["kernel"][::-1, ::-1], "bias": params["bias"]}, x, strides, padding)
  frac, status, msg = R.run(ns, "test_conv2d_naive_hypothesis")
  assert (frac, status) == (0.0, "failed")
  assert "conv2d_naive" in msg and "strides=" in msg and "padding=" in msg and "kernel (" in msg


def test_zero_padded_pool_fails(ref_ns):
  import jax
  ns = dict(ref_ns)
  ns["max_pool2d"] = lambda x, window=2, strides=None, padding="VALID": jax.lax.reduce_window(
      jnp.asarray(x), 0.0, jax.lax.max, (1, window, window, 1), (1, strides or window, strides or window, 1), padding)
  frac, status, msg = R.run(ns, "test_max_pool2d_same_negative")
  assert status == "failed" and "max_pool2d" in msg and "differ" in msg


def test_ascent_instead_of_descent_fails(ref_ns):
  import jax
  ns = dict(ref_ns)

  def wrong(variables, batch, lr):
    new = ref_ns["cnn_train_step"](variables, batch, lr)
    return jax.tree_util.tree_map(lambda p, n: 2 * p - n, variables, new)
  ns["cnn_train_step"] = wrong
  assert R.run(ns, "test_cnn_train_step_one_step")[1] == "failed"


def test_shift_augment_moves_pixels_and_keeps_half():
  import numpy as np
  m = R.assignment.module
  x = np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8, 1) + 1

  class Fixed:  # an rng that shifts image 0 by (1, -1) and keeps image 1 in place
    def integers(self, lo, hi, size):
      return np.array([[1, -1], [1, 1]])

    def random(self, n):
      return np.array([0.0, 0.9])
  out = m.shift_augment(x, Fixed(), p=0.5)
  np.testing.assert_array_equal(out[0, 1:, :7], x[0, :7, 1:])          # down one row, left one column
  assert (out[0, 0] == 0).all() and (out[0, :, 7] == 0).all()         # zero fill where nothing moved in
  np.testing.assert_array_equal(out[1], x[1])
  # the real protocol: same batches for the same seed; about half of the images moved
  a, b = m.training_batches(3, epochs=2), m.training_batches(3, epochs=2)
  for (xa, ya), (xb, yb) in zip(a[1], b[1]):
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
  train = m.data.load("digits", "train").x
  moved = (m.shift_augment(train, np.random.default_rng(0)) != train).any(axis=(1, 2, 3))
  assert 0.38 < moved.mean() < 0.51   # p = 0.5, minus the 1/9 of draws that shift by (0, 0): 4/9


def test_sum_instead_of_mean_fails_training(ref_ns):
  ns = dict(ref_ns)
  import jax

  def summed(variables, batch, lr):  # the summed loss: a 32x larger step, which diverges
    x, y = batch

    def loss(v):
      logp = jax.nn.log_softmax(ns["cnn_apply"](v, x))
      return -jnp.sum(jnp.take_along_axis(logp, y[:, None], axis=1))
    g = jax.grad(loss)(variables)
    return jax.tree_util.tree_map(lambda p, g: p - lr * g, variables, g)
  ns["cnn_train_step"] = summed
  frac, status, msg = R.run(ns, "test_cnn_train_step_learns")
  assert status == "failed" and "cnn_train_step" in msg


@pytest.mark.slow
def test_training_protocol_clears_the_bar_with_a_margin():
  """The reference step under the graded protocol, for other init/shuffle seeds and lr 0.45, clears 97% by >= 2 digits."""
  import jax
  import numpy as np
  from dlfunc.losses import sparse_softmax_cross_entropy
  m = R.assignment.module

  def step(v, b):
    x, y, lr = b
    g = jax.grad(lambda v: sparse_softmax_cross_entropy(m.ref_cnn_apply(v, x), y))(v)
    return jax.tree_util.tree_map(lambda p, g: p - lr * g, v, g), None
  train = jax.jit(lambda v, xs, ys, lrs: jax.lax.scan(step, v, (xs, ys, lrs))[0])
  n_test = len(m.data.load("digits", "test").y)
  for init_seed, data_seed, lr in ((0, 1, m.LR), (1, 2, m.LR), (2, 3, 0.9 * m.LR)):
    epochs = m.training_batches(data_seed)
    xs = np.stack([xb for e in epochs for xb, _ in e])
    ys = np.stack([yb for e in epochs for _, yb in e])
    lrs = np.array([lr if i < m.DECAY_EPOCH else m.LR_LATE for i, e in enumerate(epochs) for _ in e], np.float32)
    acc = m.heldout_accuracy(train(m._ref_variables(init_seed), xs, ys, lrs))
    assert acc * n_test >= m.ACC_BAR * n_test + 2, (init_seed, data_seed, lr, acc)


def test_cnn_init_prng_catches_a_fixed_key(ref_ns):
  import jax
  assert R.run(ref_ns, "test_cnn_init_prng")[:2] == (1.0, "passed")
  ns = dict(ref_ns)
  ns["cnn_init"] = lambda key: ref_ns["cnn_init"](jax.random.key(0))
  frac, status, msg = R.run(ns, "test_cnn_init_prng")
  assert status == "failed" and "different key gave exactly the same" in msg
