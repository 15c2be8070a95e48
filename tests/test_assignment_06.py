"""Assignment 06 (CNNs): the graded tests catch real mistakes and name the failing input.

The validate/hostile runs for every assignment live in the autograder tests;
here the reference solution runs in-process (``LocalSubmission``) with one
function swapped for a typical mistake, and the verdict and feedback are checked.
"""
import jax.numpy as jnp
import pytest

from autograder import load_assignment
from _assignment_helpers import namespace, run_one

AID = "06"


def reference_namespace():
  return namespace(AID)


def run(ns, key):
  return run_one(AID, ns, key)


@pytest.fixture(scope="module")
def ref_ns():
  return reference_namespace()


def test_hypothesis_cases_are_fixed_and_varied():
  m = load_assignment(AID).module
  a = m.hypothesis_cases(m.conv_cases(explicit=False), 8)
  b = m.hypothesis_cases(m.conv_cases(explicit=False), 8)
  assert a == b and len(a) == 8
  for n, h, w, cin, cout, kh, kw, strides, padding, seed in m.hypothesis_cases(m.conv_cases(explicit=True), 6):
    assert h + sum(padding[0]) >= kh and w + sum(padding[1]) >= kw


@pytest.mark.parametrize("key", ["test_conv2d_naive_values", "test_conv2d_naive_hypothesis", "test_conv2d_hypothesis",
                                 "test_max_pool2d_same_negative", "test_cnn_train_step_one_step"])
def test_reference_passes(ref_ns, key):
  assert run(ref_ns, key)[:2] == (1.0, "passed")


def test_flipped_kernel_fails_with_the_input_named(ref_ns):
  ns = dict(ref_ns)
  ns["conv2d_naive"] = lambda params, x, strides=(1, 1), padding=((0, 0), (0, 0)): ref_ns["conv2d_naive"](
      {"kernel": params["kernel"][::-1, ::-1], "bias": params["bias"]}, x, strides, padding)
  frac, status, msg = run(ns, "test_conv2d_naive_hypothesis")
  assert (frac, status) == (0.0, "failed")
  assert "conv2d_naive" in msg and "strides=" in msg and "padding=" in msg and "kernel (" in msg


def test_zero_padded_pool_fails(ref_ns):
  import jax
  ns = dict(ref_ns)
  ns["max_pool2d"] = lambda x, window=2, strides=None, padding="VALID": jax.lax.reduce_window(
      jnp.asarray(x), 0.0, jax.lax.max, (1, window, window, 1), (1, strides or window, strides or window, 1), padding)
  frac, status, msg = run(ns, "test_max_pool2d_same_negative")
  assert status == "failed" and "max_pool2d" in msg and "differ" in msg


def test_ascent_instead_of_descent_fails(ref_ns):
  import jax
  ns = dict(ref_ns)

  def wrong(variables, batch, lr):
    new = ref_ns["cnn_train_step"](variables, batch, lr)
    return jax.tree_util.tree_map(lambda p, n: 2 * p - n, variables, new)
  ns["cnn_train_step"] = wrong
  assert run(ns, "test_cnn_train_step_one_step")[1] == "failed"
