"""Helpers for the per-assignment mistake tests: run the reference with some functions replaced."""
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
