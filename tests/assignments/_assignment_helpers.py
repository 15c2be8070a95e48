"""Helpers for the per-assignment mistake tests: run the reference solution with some functions replaced.

Each ``test_NN.py`` opens with ``R = Reference("NN")`` and asks it for what the file checks:

- ``R.namespace(override)``: the reference solution's functions, with ``override`` (source code) redefining
  some of them: a typical student mistake;
- ``R.scores(ns, function)``: the points every test of ``function`` gives those functions;
- ``R.run(ns, key)``: one test's ``(fraction, status, message)``, to check its feedback;
- ``R.assignment``: the loaded assignment (points, tests, module).

The ``ref_ns`` fixture (``conftest.py``) gives a test the unchanged reference namespace of its file's
``R``, built once per file. Everything runs in-process (``LocalSubmission``), not in an isolated worker:
these tests are about the graded tests' verdicts, not the isolation.
"""
import dataclasses
import textwrap

from autograder.authoring import _authoring
from autograder.grader import _registry
from autograder.worker._remote import LocalSubmission
from autograder.grader._runner import run_test


def namespace(aid: str, override: str = "") -> dict:
  """The reference solution's functions of assignment ``aid``, with ``override`` (source code) redefining some."""
  a = _registry.load_assignment(aid)
  ns = {"__name__": "submission"}
  exec(compile(_authoring.module_source(a.source, True, aid), "<reference>", "exec"), ns)  # noqa: S102
  if override:
    exec(compile(textwrap.dedent(override), "<override>", "exec"), ns)  # noqa: S102
  return ns


def scores(aid: str, ns: dict, function: str) -> dict[str, float]:
  """{test key: points earned} for every test (public and hidden) of ``function``."""
  a = _registry.load_assignment(aid)
  sub = LocalSubmission(ns)
  return {t.key: run_test(t, sub)[0] * t.points for t in a.tests_for(function)}


def run_one(aid: str, ns: dict, key: str):
  """``(fraction, status, message)`` of the test ``key`` of assignment ``aid`` on the functions in ``ns``."""
  test = next(t for t in _registry.load_assignment(aid).tests if t.key == key)
  return run_test(test, LocalSubmission(ns))


@dataclasses.dataclass(frozen=True)
class Reference:
  """One assignment's reference solution, for a test file: ``R = Reference("02")``."""
  aid: str

  @property
  def assignment(self) -> _registry.Assignment:
    """The assignment as the grader loads it (cached by the registry)."""
    return _registry.load_assignment(self.aid)

  def namespace(self, override: str = "") -> dict:
    """See :func:`namespace`."""
    return namespace(self.aid, override)

  def scores(self, ns: dict, function: str) -> dict[str, float]:
    """See :func:`scores`."""
    return scores(self.aid, ns, function)

  def run(self, ns: dict, key: str):
    """See :func:`run_one`."""
    return run_one(self.aid, ns, key)
