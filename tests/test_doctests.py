"""The ``>>>`` examples in dlfunc's docstrings run and print what they claim.

``MODULES`` lists the modules whose examples run here; add yours (keep the
examples fast: this runs in the default suite). Each module runs in its own
globals with 32-bit JAX (the default). A guard checks that every listed module
really has examples, so the list cannot silently test nothing.
"""
import doctest
import importlib

import jax
import pytest

MODULES = [
    "dlfunc.nn._activations",
    "dlfunc.nn._initializers",
    "dlfunc.nn._dense",
    "dlfunc.nn._conv",
    "dlfunc.nn._pooling",
    "dlfunc.nn._reshape",
    "dlfunc.nn._dropout",
    "dlfunc.nn._normalization",
    "dlfunc.nn._embedding",
    "dlfunc.losses",
    "dlfunc.models._classic",
    "dlfunc.optim._alias",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
  module = importlib.import_module(name)
  assert not jax.config.jax_enable_x64, "doctests print float32 results; run them without x64"
  finder = doctest.DocTestFinder(exclude_empty=True)
  runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
  tests = [t for t in finder.find(module, name, globs=vars(module).copy()) if t.examples]
  assert tests, f"{name}: the scan saw '>>>' but doctest found no examples"
  failures = []
  for test in tests:
    result = runner.run(test, out=failures.append)
  summary = runner.summarize(verbose=False)
  assert summary.failed == 0, f"{name}: {summary.failed} of {summary.attempted} examples failed:\n" + "".join(failures)
