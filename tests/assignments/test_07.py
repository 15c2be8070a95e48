"""Assignment 07 (RNNs): fixtures agree with dlfunc's cells; the graded tests catch typical mistakes.

The validate/hostile runs for every assignment live in the autograder tests;
here the reference solution runs in-process (``LocalSubmission``) with one
function swapped for a typical mistake, and the verdict and feedback are checked.
"""
import jax.numpy as jnp
import numpy as np
import pytest

import dlfunc.nn as dnn
from _assignment_helpers import Reference

R = Reference("07")


@pytest.mark.parametrize("src", ["keras", "torch"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_recorded_fixtures_match_dlfunc(src, cell):
  """The committed Keras/PyTorch recordings agree with dlfunc's cells and unroll (float32, 1e-6)."""
  m = R.assignment.module
  params, carry0, x, carry1, ys = m.fixture(src, cell)
  new, _ = getattr(dnn, f"{cell}_cell")(params, carry0, x[:, 0])
  np.testing.assert_allclose(np.asarray(new[0] if cell == "lstm" else new),
                             carry1[0] if cell == "lstm" else carry1, atol=1e-6)
  got, _ = dnn.unroll(cell, params, x, initial_carry=carry0)
  np.testing.assert_allclose(np.asarray(got), ys, atol=1e-6)


@pytest.mark.parametrize("key", ["test_rnn_step_torch", "test_lstm_step_torch", "test_gru_step_torch",
                                 "test_unroll_equals_loop", "test_unroll_pair_carry"])
def test_reference_passes(ref_ns, key):
  assert R.run(ref_ns, key)[:2] == (1.0, "passed")


def test_torch_gate_order_in_gru_fails(ref_ns):
  """A GRU that reads the gates in PyTorch's r, z, n order fails the recorded tests."""
  ns = dict(ref_ns)
  sig = ref_ns["sigmoid"]

  def gru_rzn(params, h, x):
    xr, xz, xn = jnp.split(x @ params["kernel"] + params["bias"], 3, axis=-1)
    hr, hz, hn = jnp.split(h @ params["recurrent_kernel"] + params["recurrent_bias"], 3, axis=-1)
    z, r = sig(xz + hz), sig(xr + hr)
    h = z * h + (1 - z) * jnp.tanh(xn + r * hn)
    return h, h
  ns["gru_step"] = gru_rzn
  frac, status, msg = R.run(ns, "test_gru_step_keras")
  assert status == "failed" and "gru_step" in msg and "Keras 3" in msg


def test_lstm_forget_and_input_swapped_fails(ref_ns):
  ns = dict(ref_ns)

  def swapped(params, carry, x):
    k = params["kernel"]
    n = k.shape[1] // 4
    perm = np.r_[n:2 * n, 0:n, 2 * n:4 * n]
    p = {"kernel": k[:, perm], "recurrent_kernel": params["recurrent_kernel"][:, perm], "bias": params["bias"][perm]}
    return ref_ns["lstm_step"](p, carry, x)
  ns["lstm_step"] = swapped
  assert R.run(ns, "test_lstm_step_torch")[1] == "failed"


def test_unroll_that_returns_reversed_outputs_fails(ref_ns):
  ns = dict(ref_ns)

  def backwards(step, params, xs, h0):
    carry, ys = ref_ns["unroll"](step, params, xs, h0)
    return carry, ys[::-1]
  ns["unroll"] = backwards
  frac, status, msg = R.run(ns, "test_unroll_equals_loop")
  assert status == "failed" and "unroll('leaky_step'" in msg
