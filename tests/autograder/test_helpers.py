"""The helpers assignments' graders share (``autograder.grader._helpers``, public as ``autograder.checks``)."""
import doctest
import subprocess
import sys

import numpy as np
import pytest

from autograder import checks as C
from autograder._errors import CheckFailed
from autograder.grader import _helpers


def test_docstring_examples_run():
  result = doctest.testmod(_helpers, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
  assert result.attempted >= 8 and result.failed == 0


def test_mlp_params_draws_each_layer_from_its_own_seeds():
  p = C.mlp_params(7, (4, 3, 2), np.float64)
  assert [layer["w"].dtype for layer in p] == [np.float64, np.float64]
  np.testing.assert_array_equal(p[1]["w"], C.normal(8, (3, 2), np.float64, scale=1 / np.sqrt(3)))
  np.testing.assert_array_equal(p[1]["b"], C.normal(58, (2,), np.float64, scale=0.1))
  assert all(np.all(layer["b"] != 0) for layer in p)            # a dropped bias must show
  f32 = C.mlp_params(7, (4, 3, 2))
  assert all(a["w"].dtype == np.float32 and np.array_equal(a["w"], b["w"].astype(np.float32)) for a, b in zip(f32, p))


def test_glorot_mlp_is_fixed_bounded_and_starts_with_zero_biases():
  a, b = C.glorot_mlp(3, (10, 6, 2)), C.glorot_mlp(3, (10, 6, 2))
  assert all(np.array_equal(x["w"], y["w"]) for x, y in zip(a, b))
  assert not np.array_equal(a[0]["w"], C.glorot_mlp(4, (10, 6, 2))[0]["w"])
  assert np.abs(a[0]["w"]).max() <= np.sqrt(6 / 16) and np.abs(a[1]["w"]).max() <= np.sqrt(6 / 8)
  assert all(layer["b"].dtype == np.float32 and not layer["b"].any() for layer in a)


def test_mlp_accuracy_puts_a_relu_between_layers_only():
  x, y = np.array([[-3.0, -1.0]]), np.array([0])
  identity = {"w": np.eye(2), "b": np.zeros(2)}
  assert C.mlp_accuracy([identity, identity], x, y) == 1.0   # relu(-3, -1) = (0, 0): argmax 0
  assert C.mlp_accuracy([identity], x, y) == 0.0             # no relu on the logits (-3, -1): argmax 1


def test_standardise_uses_the_training_statistics_only():
  train = np.arange(12, dtype=np.float32).reshape(3, 2, 2)
  tr1, te1 = C.standardise(train, np.zeros((1, 2, 2), np.float32))
  tr2, te2 = C.standardise(train, np.full((5, 2, 2), 100.0, np.float32))
  np.testing.assert_array_equal(tr1, tr2)
  assert tr1.shape == (3, 4) and te2.shape == (5, 4) and tr1.dtype == te2.dtype == np.float32
  np.testing.assert_allclose(tr1.mean(0), 0.0, atol=1e-6)
  const, = C.standardise(np.ones((4, 3)))                   # a constant feature: no division by zero
  assert np.all(np.isfinite(const)) and not const.any()


def test_use_returned_turns_the_models_error_into_feedback_and_passes_check_failures_through():
  with pytest.raises(CheckFailed, match=r"^step returned junk \(KeyError: 'w'\); return the same tree you were given"):
    C.use_returned(lambda p: p["w"], {"v": 1}, what="step returned junk")
  failed = CheckFailed("the grader's own verdict")
  with pytest.raises(CheckFailed) as e:
    C.use_returned(lambda: (_ for _ in ()).throw(failed), what="unused")
  assert e.value is failed


def test_the_worker_never_imports_the_checks_or_helpers():
  """Inputs are built and outputs judged in the grader: the worker's process needs neither module."""
  code = ("import sys, autograder.worker._worker\n"
          "print(sorted(m for m in sys.modules if m in ('autograder.checks', 'autograder.grader._helpers', "
          "'autograder.grader._checks')))")
  r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
  assert r.returncode == 0, r.stderr[-2000:]
  assert r.stdout.strip() == "[]"
