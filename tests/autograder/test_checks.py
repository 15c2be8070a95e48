"""Check semantics asked for by assignment authors: static flags in gradient checks, PRNG checks on
functions that return nothing, the NaN policy of allclose, and describe() on all-NaN inputs."""
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

from autograder import checks as C
from autograder.grader import _checks
from autograder._errors import CheckFailed
from autograder.worker._remote import LocalSubmission


def _scale(x, train, times):
  """A reference with a Python-bool flag and a Python-int count that decide the computation's shape."""
  y = jnp.tile(x, times)
  return y * 2.0 if train else y


def test_grad_matches_keeps_bool_and_int_positional_arguments_static():
  sub = LocalSubmission({"scale": _scale})
  x = C.normal(0, (3,), np.float64)
  C.grad_matches(sub, "scale", _scale, x, True, 2)       # `if train` and `jnp.tile(x, times)` need Python values
  C.grad_matches(sub, "scale", _scale, x, False, 3)


def test_grad_matches_still_catches_a_wrong_gradient_with_static_arguments():
  import jax

  def wrong(x, train, times):
    return _scale(jax.lax.stop_gradient(x), train, times)
  with pytest.raises(CheckFailed, match="gradient of scale"):
    C.grad_matches(LocalSubmission({"scale": wrong}), "scale", _scale, C.normal(1, (3,), np.float64), True, 2)


def test_grad_matches_refuses_argnums_on_a_static_argument():
  with pytest.raises(ValueError, match="argnums .1. names a Python bool"):
    C.grad_matches(LocalSubmission({"scale": _scale}), "scale", _scale, np.ones(2), True, 2, argnums=(0, 1))


def test_prng_discipline_fails_a_function_returning_none():
  sub = LocalSubmission({"dropout": lambda key, x: None})
  with pytest.raises(CheckFailed, match="expected an array .* got NoneType"):
    C.prng_discipline(sub, "dropout", C.key(0), np.ones(4, np.float32))


def test_allclose_nan_from_the_student_never_passes_by_default():
  nan = np.array([1.0, np.nan], np.float32)
  with pytest.raises(CheckFailed, match="NaN never passes"):      # jit vs eager of the student: both NaN
    C.allclose(nan, nan.copy(), "jax.jit(f)(x) vs f(x)")
  with pytest.raises(CheckFailed, match="NaN/Inf never pass"):    # NaN where the reference is finite
    C.allclose(nan, np.array([1.0, 2.0], np.float32), "f(x)", equal_nan=True)
  C.allclose(nan, nan.copy(), "f(x) propagates NaN", equal_nan=True)   # a reference NaN that is intended
  C.allclose(np.array([-np.inf], np.float32), np.array([-np.inf], np.float32), "log(0)")


def test_matches_nan_policy():
  sub = LocalSubmission({"f": lambda x: x * jnp.nan})
  ref = lambda x: x * jnp.nan  # noqa: E731
  with pytest.raises(CheckFailed, match="NaN never passes"):
    C.matches(sub, "f", ref, np.ones(2, np.float32))
  C.matches(sub, "f", ref, np.ones(2, np.float32), equal_nan=True)


def test_describe_handles_all_nan_and_counts_nan_without_warnings():
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    assert "all NaN" in C.describe(np.full(10, np.nan, np.float32))
    text = C.describe(np.array([1.0, np.nan, 3.0, np.inf, 0.5, 2.0, 7.0], np.float32))
  assert "[0.5, 7]" in text and "2 NaN/Inf" in text


def test_grad_matches_on_a_function_that_does_not_trace_says_so():
  """The vjp op compiles under jax.jit (eager jax.vjp rejects the same code); the message stays plain."""
  import jax

  from autograder._errors import SubmissionError

  def relu(x):
    if float(jnp.sum(x)) > -1e9:
      return jnp.maximum(x, 0.0)
    return x
  with pytest.raises(SubmissionError, match="relu fails under jax.vjp: a traced value used where a concrete"):
    C.grad_matches(LocalSubmission({"relu": relu}), "relu", jax.nn.relu, C.normal(2, (5,), np.float64))


def test_grad_matches_memoises_the_reference_but_judges_every_submission():
  """A module-level reference's vjp is computed once per input (grade-all); each student is still judged."""
  import jax

  from autograder.grader import _checks
  x = C.normal(7, (3,), np.float64)
  C.grad_matches(LocalSubmission({"scale": _scale}), "scale", _scale, x, True, 2)
  assert any(k[:4] == (_scale.__module__, _scale.__qualname__, id(_scale), "vjp") for k in _checks._MEMO)
  wrong = LocalSubmission({"scale": lambda x, train, times: _scale(jax.lax.stop_gradient(x), train, times)})
  with pytest.raises(CheckFailed, match="gradient of scale"):
    C.grad_matches(wrong, "scale", _scale, x, True, 2)
  C.grad_matches(LocalSubmission({"scale": _scale}), "scale", _scale, x, True, 2)


def test_other_key_differs_keeps_the_implementation_and_needs_no_compilation():
  """prng_discipline's second key: made in NumPy from the first key's data (jax.random.fold_in would compile)."""
  import jax

  k = _checks.key(2)
  other = _checks._other_key(k)
  assert jax.random.key_impl(other) == jax.random.key_impl(k)
  a, b = np.asarray(jax.random.key_data(k)), np.asarray(jax.random.key_data(other))
  assert a.shape == b.shape and not np.array_equal(a, b)
  assert not np.array_equal(jax.random.uniform(k, (4,)), jax.random.uniform(other, (4,)))
  raw = np.array([0, 5], np.uint32)  # a raw uint32 key stays a raw key
  assert _checks._other_key(raw).dtype == np.uint32 and not np.array_equal(_checks._other_key(raw), raw)
  rbg = jax.random.key(3, impl="rbg")  # other layouts: fold_in
  assert not np.array_equal(jax.random.key_data(_checks._other_key(rbg)), jax.random.key_data(rbg))
