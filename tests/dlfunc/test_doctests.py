"""The ``>>>`` examples in dlfunc's docstrings run and print what they claim.

Every module of ``dlfunc`` whose source holds ``>>>`` runs here, except those in
``EXCLUDED`` (each with its reason). Keep examples fast: this runs in the
default suite. Each module runs in its own globals with 32-bit JAX (the
default). A guard checks that every scanned module really has examples, so a
module cannot silently test nothing.
"""
import doctest
import importlib
import pathlib

import jax
import pytest

import dlfunc

#: Modules whose examples do not run here, and why.
EXCLUDED: dict[str, str] = {
}


def _modules_with_examples() -> list[str]:
  root = pathlib.Path(dlfunc.__file__).parent
  names = []
  for path in sorted(root.rglob("*.py")):
    if ">>>" in path.read_text(encoding="utf-8"):
      parts = path.relative_to(root.parent).with_suffix("").parts
      names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
  return names


MODULES = [m for m in _modules_with_examples() if m not in EXCLUDED]


def test_the_scan_finds_the_modules_with_examples():
  assert {"dlfunc.nn._activations", "dlfunc.losses", "dlfunc.train._fit"} <= set(MODULES)
  assert not set(EXCLUDED) - set(_modules_with_examples()), "EXCLUDED names a module without examples"


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
