"""Fixtures of the per-assignment tests (``test_NN.py``); the helpers themselves are in ``_assignment_helpers``."""
import pytest


@pytest.fixture(scope="module")
def ref_ns(request) -> dict:
  """The reference solution's functions of the test file's assignment (its ``R = Reference("NN")``).

  Built once per file. Copy it before replacing a function (``ns = dict(ref_ns)``), so the other tests of the
  file still see the reference.
  """
  reference = getattr(request.module, "R", None)
  if reference is None:
    pytest.fail(f"{request.module.__name__} uses ref_ns but defines no R = Reference('NN') at module level.")
  return reference.namespace()
