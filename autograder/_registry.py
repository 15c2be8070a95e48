"""Graded tests: the ``@points`` / ``@hidden`` decorators and assignment loading.

A graded test is a plain function ``test_x(sub)`` in ``assignments/<ID>/tests.py``.
Its docstring's first line is its name, ``"<function>: <what it checks>"``;
``@points(n)`` gives its weight and ``@hidden`` hides it from students. The same
functions run under the standalone grader (``sub`` talks to an isolated worker),
inside an nbgrader kernel (``sub`` wraps the notebook's own functions) and under
pytest (the ``sub`` fixture of :mod:`autograder.pytest_plugin`).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import pathlib
import re
import sys
from typing import Callable, Sequence

_ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def points(n: float, *, timeout: float | None = None):
  """Decorator: the test is worth ``n`` points (optionally with its own timeout in seconds)."""
  if not isinstance(n, (int, float)) or n < 0:
    raise ValueError(f"@points needs a number >= 0, got {n!r}.")

  def deco(fn):
    fn.__autograder_points__ = float(n)
    if timeout is not None:
      fn.__autograder_timeout__ = float(timeout)
    return fn

  return deco


def hidden(fn):
  """Decorator: a hidden test (instructors only; counts in the grade, not shown by ``check``)."""
  fn.__autograder_hidden__ = True
  return fn


@dataclasses.dataclass(frozen=True)
class GradedTest:
  """One graded test as read from an assignment's ``tests.py``."""
  key: str          # the Python name, e.g. "test_relu_values"
  name: str         # "relu: matches max(x, 0) on a random vector"
  function: str     # "relu"
  points: float
  hidden: bool
  timeout: float | None
  fn: Callable


@dataclasses.dataclass
class Assignment:
  """An assignment: its id, folder, graded functions and tests."""
  id: str
  path: pathlib.Path
  functions: tuple[str, ...]
  tests: list[GradedTest]
  forbidden: dict[str, tuple[str, ...]]
  timeout: float          # seconds per worker call
  total_timeout: float    # seconds per submission
  memory_mb: int          # address-space limit of the worker
  module: object

  @property
  def source(self) -> pathlib.Path:
    return self.path / "assignment.py"

  def tests_for(self, function: str | None = None, hidden: bool | None = None) -> list[GradedTest]:
    return [t for t in self.tests
            if (function is None or t.function == function) and (hidden is None or t.hidden == hidden)]

  def points_for(self, function: str | None = None, hidden: bool | None = None) -> float:
    return sum(t.points for t in self.tests_for(function, hidden))

  @property
  def max_score(self) -> float:
    return sum(t.points for t in self.tests)


def assignments_root() -> pathlib.Path:
  """The folder holding ``<ID>/assignment.py`` (env ``AUTOGRADER_ASSIGNMENTS`` overrides)."""
  env = os.environ.get("AUTOGRADER_ASSIGNMENTS")
  if env:
    return pathlib.Path(env).resolve()
  return (pathlib.Path(__file__).resolve().parent.parent / "assignments")


def list_assignments() -> list[str]:
  root = assignments_root()
  if not root.is_dir():
    return []
  return sorted(p.name for p in root.iterdir() if (p / "tests.py").is_file() and (p / "assignment.py").is_file())


_CACHE: dict[str, Assignment] = {}


def load_assignment(assignment_id: str) -> Assignment:
  """Import ``assignments/<ID>/tests.py`` (in the trusted process) and collect its tests."""
  if not isinstance(assignment_id, str) or not _ID_RE.match(assignment_id):
    raise ValueError(f"assignment ids look like '01'; got {assignment_id!r}.")
  if assignment_id in _CACHE:
    return _CACHE[assignment_id]
  folder = assignments_root() / assignment_id
  tests_py = folder / "tests.py"
  if not tests_py.is_file():
    known = ", ".join(list_assignments()) or "none"
    raise ValueError(f"no assignment '{assignment_id}' (known: {known}); expected {tests_py}.")
  modname = f"autograder_assignment_{assignment_id.replace('-', '_')}"
  spec = importlib.util.spec_from_file_location(modname, tests_py)
  module = importlib.util.module_from_spec(spec)
  sys.modules[modname] = module
  spec.loader.exec_module(module)
  functions = tuple(getattr(module, "FUNCTIONS", ()))
  if not functions:
    raise ValueError(f"{tests_py} must define FUNCTIONS = ('relu', ...), the graded function names.")
  tests = collect_tests(module, functions, where=str(tests_py))
  forbidden = {f: tuple(v) for f, v in dict(getattr(module, "FORBIDDEN", {})).items()}
  a = Assignment(
      id=assignment_id, path=folder, functions=functions, tests=tests, forbidden=forbidden,
      timeout=float(getattr(module, "TIMEOUT", 20.0)),
      total_timeout=float(getattr(module, "TOTAL_TIMEOUT", 120.0)),
      memory_mb=int(getattr(module, "MEMORY_MB", 4096)), module=module)
  _CACHE[assignment_id] = a
  return a


def collect_tests(module, functions: Sequence[str], where: str = "tests.py") -> list[GradedTest]:
  """The ``@points`` functions of ``module``, in source order, validated."""
  found = []
  for key, fn in vars(module).items():
    if not callable(fn) or not hasattr(fn, "__autograder_points__"):
      continue
    doc = (fn.__doc__ or "").strip().splitlines()
    name = doc[0].strip() if doc else ""
    function, sep, what = name.partition(":")
    if not sep or function not in functions or not what.strip():
      raise ValueError(
          f"{where}: test {key} must have a docstring whose first line is '<function>: <what it checks>' "
          f"with <function> one of {', '.join(functions)}; got {name!r}.")
    found.append(GradedTest(
        key=key, name=name, function=function, points=fn.__autograder_points__,
        hidden=bool(getattr(fn, "__autograder_hidden__", False)),
        timeout=getattr(fn, "__autograder_timeout__", None), fn=fn))
  names = [t.name for t in found]
  dup = {n for n in names if names.count(n) > 1}
  if dup:
    raise ValueError(f"{where}: test names must be unique; repeated: {sorted(dup)}.")
  found.sort(key=lambda t: (functions.index(t.function), t.fn.__code__.co_firstlineno))
  return found
