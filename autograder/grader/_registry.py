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

  key: str  # the Python name, e.g. "test_relu_values"
  name: str  # "relu: matches max(x, 0) on a random vector"
  function: str  # "relu"
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
  timeout: float  # seconds per worker call
  total_timeout: float  # seconds per submission
  memory_mb: int  # address-space limit of the worker
  module: object

  @property
  def source(self) -> pathlib.Path:
    """The assignment's source file (``assignment.py``: solution and stub in one, with markers)."""
    return self.path / "assignment.py"

  def tests_for(self, function: str | None = None, hidden: bool | None = None) -> list[GradedTest]:
    """The tests of one graded ``function`` (all when None), hidden ones only / public ones only / both."""
    return [
      t for t in self.tests if (function is None or t.function == function) and (hidden is None or t.hidden == hidden)
    ]

  def points_for(self, function: str | None = None, hidden: bool | None = None) -> float:
    """The points that :meth:`tests_for` with the same arguments is worth."""
    return sum(t.points for t in self.tests_for(function, hidden))

  @property
  def public_only(self) -> bool:
    """True for a student release's copy (``public_tests/ID/``): the hidden tests are not here."""
    return self.path.parent.name == RELEASE_DIR

  @property
  def max_score(self) -> float:
    """The points of every test, hidden ones included."""
    return sum(t.points for t in self.tests)


RELEASE_DIR = "public_tests"  # `autograder release ID --out DIR` writes the public tests to DIR/public_tests/ID/
ENV = "AUTOGRADER_ASSIGNMENTS"


def _checkout_root() -> pathlib.Path:
  return pathlib.Path(__file__).resolve().parents[2] / "assignments"


def assignments_roots() -> list[pathlib.Path]:
  """Where assignments are looked for, in order.

  ``$AUTOGRADER_ASSIGNMENTS`` alone when it is set; otherwise the checkout's
  ``assignments/`` (the instructor's side: public and hidden tests), then
  ``./public_tests/`` (a student release made by ``autograder release ID --out
  DIR``: public tests only). A wheel install carries no assignments.
  """
  env = os.environ.get(ENV)
  if env:
    return [pathlib.Path(env).resolve()]
  return [_checkout_root(), (pathlib.Path.cwd() / RELEASE_DIR).resolve()]


def where_text() -> str:
  """One line saying where assignments are looked for and how to point elsewhere."""
  looked = " and ".join(str(r) for r in assignments_roots())
  return (
    f"looked in {looked}; run this in a folder made by `autograder release ID --out DIR` (it holds "
    f"{RELEASE_DIR}/), or set {ENV}=/path/to/assignments."
  )


def _folder_of(assignment_id: str) -> pathlib.Path | None:
  for root in assignments_roots():
    if (root / assignment_id / "tests.py").is_file():
      return root / assignment_id
  return None


def list_assignments() -> list[str]:
  """Ids found in :func:`assignments_roots` (a folder counts if it holds ``tests.py``)."""
  seen = []
  for root in assignments_roots():
    if root.is_dir():
      seen += [p.name for p in root.iterdir() if (p / "tests.py").is_file() and p.name not in seen]
  return sorted(seen)


def resolve_id(assignment_id: str) -> str:
  """``'5'`` -> ``'05'`` when only the zero-padded id exists; a malformed id raises ``ValueError``."""
  if not isinstance(assignment_id, str) or not _ID_RE.match(assignment_id):
    raise ValueError(f"assignment ids look like '01'; got {assignment_id!r}.")
  if _folder_of(assignment_id) is None and assignment_id.isdigit() and _folder_of(assignment_id.zfill(2)):
    return assignment_id.zfill(2)
  return assignment_id


def manifest(assignment_id: str) -> dict:
  """``{"id", "functions", "points", "public_points"}`` read from ``tests.py``'s syntax tree (nothing imported).

  What ``autograder list`` prints; falls back to importing the tests when the
  file computes its ``FUNCTIONS`` or ``@points`` values instead of writing them.
  """
  import ast

  folder = _folder_of(resolve_id(assignment_id))
  if folder is None:
    raise ValueError(f"no assignment '{assignment_id}'; {where_text()}")
  tree = ast.parse((folder / "tests.py").read_text(encoding="utf-8"))
  functions, total, public = None, 0.0, 0.0
  try:
    for node in tree.body:
      if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "FUNCTIONS" for t in node.targets):
        functions = tuple(ast.literal_eval(node.value))
      if not isinstance(node, ast.FunctionDef):
        continue
      pts, hid = None, False
      for d in node.decorator_list:
        name = d.func if isinstance(d, ast.Call) else d
        name = name.attr if isinstance(name, ast.Attribute) else getattr(name, "id", "")
        if name == "points":
          if not isinstance(d, ast.Call):
            raise ValueError("@points without its number")  # caught below: importing the tests reports it
          pts = float(ast.literal_eval(d.args[0]))
        elif name == "hidden":
          hid = True
      if pts is not None:
        total += pts
        public += 0.0 if hid else pts
  except (ValueError, TypeError, IndexError, AttributeError):
    functions = None
  if not functions:
    a = load_assignment(folder.name)
    return {
      "id": a.id,
      "functions": a.functions,
      "points": a.max_score,
      "public_points": a.points_for(hidden=False),
      "path": str(folder),
    }
  return {"id": folder.name, "functions": functions, "points": total, "public_points": public, "path": str(folder)}


_CACHE: dict[str, Assignment] = {}
DEFAULT_TIMEOUT, DEFAULT_TOTAL_TIMEOUT, DEFAULT_MEMORY_MB = 20.0, 120.0, 4096


def load_assignment(assignment_id: str) -> Assignment:
  """Import ``assignments/<ID>/tests.py`` (in the trusted process) and collect its tests."""
  assignment_id = resolve_id(assignment_id)
  if assignment_id in _CACHE:
    return _CACHE[assignment_id]
  folder = _folder_of(assignment_id)
  if folder is None:
    known = ", ".join(list_assignments()) or "none"
    raise ValueError(f"no assignment '{assignment_id}' (known: {known}); {where_text()}")
  tests_py = folder / "tests.py"
  modname = f"autograder_assignment_{assignment_id.replace('-', '_')}"
  spec = importlib.util.spec_from_file_location(modname, tests_py)
  if spec is None or spec.loader is None:
    raise ImportError(f"cannot load {tests_py} as a module; check that it is a readable .py file.")
  module = importlib.util.module_from_spec(spec)
  sys.modules[modname] = module
  spec.loader.exec_module(module)
  functions = tuple(getattr(module, "FUNCTIONS", ()))
  if not functions:
    raise ValueError(f"{tests_py} must define FUNCTIONS = ('relu', ...), the graded function names.")
  tests = collect_tests(module, functions, where=str(tests_py))
  forbidden = {f: tuple(v) for f, v in dict(getattr(module, "FORBIDDEN", {})).items()}
  a = Assignment(
    id=assignment_id,
    path=folder,
    functions=functions,
    tests=tests,
    forbidden=forbidden,
    timeout=float(getattr(module, "TIMEOUT", DEFAULT_TIMEOUT)),
    total_timeout=float(getattr(module, "TOTAL_TIMEOUT", DEFAULT_TOTAL_TIMEOUT)),
    memory_mb=int(getattr(module, "MEMORY_MB", DEFAULT_MEMORY_MB)),
    module=module,
  )
  _CACHE[assignment_id] = a
  return a


@dataclasses.dataclass(frozen=True)
class SpawnInfo:
  """What starting a worker needs from an assignment, read without importing its tests (so without JAX)."""

  id: str
  path: pathlib.Path
  functions: tuple[str, ...]
  forbidden: dict[str, tuple[str, ...]]
  timeout: float
  total_timeout: float
  memory_mb: int

  @property
  def public_only(self) -> bool:
    """True for a student release's copy (``public_tests/ID/``): the hidden tests are not here."""
    return self.path.parent.name == RELEASE_DIR

  def same_as(self, a: Assignment) -> bool:
    """Whether the loaded assignment ``a`` agrees (a tests.py that changes its constants after defining them)."""
    return (
      self.functions == a.functions
      and self.forbidden == a.forbidden
      and (self.timeout, self.total_timeout, self.memory_mb) == (a.timeout, a.total_timeout, a.memory_mb)
    )


_SAFE_BUILTINS = {"tuple": tuple, "list": list, "dict": dict, "set": set, "sorted": sorted, "len": len}


def spawn_info(assignment_id: str) -> SpawnInfo:
  """``FUNCTIONS``, ``FORBIDDEN``, ``TIMEOUT``, ``TOTAL_TIMEOUT`` and ``MEMORY_MB`` of an assignment, without
  importing its tests: the grader starts the worker (which imports JAX) first and imports the tests meanwhile.

  Each top-level ``NAME = expression`` of ``tests.py`` (trusted code) is evaluated with only earlier such
  names and a few builtins in scope (``FORBIDDEN = {f: _LIBS for f in FUNCTIONS}`` works; ``ref.relu`` does
  not and is skipped); when one of the five cannot be read that way, the tests are imported instead.
  """
  import ast

  assignment_id = resolve_id(assignment_id)
  if assignment_id in _CACHE:
    return _info_of(_CACHE[assignment_id])
  folder = _folder_of(assignment_id)
  if folder is None:
    return _info_of(load_assignment(assignment_id))  # raises the usual "no assignment" error
  ns: dict = {"__builtins__": _SAFE_BUILTINS}
  try:
    tree = ast.parse((folder / "tests.py").read_text(encoding="utf-8"))
  except (OSError, SyntaxError, ValueError):
    return _info_of(load_assignment(assignment_id))
  for node in tree.body:
    if not isinstance(node, ast.Assign) or not all(isinstance(t, (ast.Name, ast.Tuple)) for t in node.targets):
      continue
    targets = node.targets
    try:
      value = eval(compile(ast.Expression(node.value), "tests.py", "eval"), ns)  # noqa: S307  (trusted tests.py)
    except Exception:  # noqa: BLE001, S112  (needs an import: not a constant)
      for t in targets:
        for n in ast.walk(t):
          if isinstance(n, ast.Name):
            ns.pop(n.id, None)
      continue
    for t in targets:
      if isinstance(t, ast.Name):
        ns[t.id] = value
      elif isinstance(t, ast.Tuple) and isinstance(value, (tuple, list)) and len(value) == len(t.elts):
        for e, v in zip(t.elts, value):
          if isinstance(e, ast.Name):
            ns[e.id] = v
  try:
    functions = tuple(ns["FUNCTIONS"])
    if not functions or not all(isinstance(f, str) for f in functions):
      raise TypeError
    return SpawnInfo(
      id=assignment_id,
      path=folder,
      functions=functions,
      forbidden={str(f): tuple(v) for f, v in dict(ns.get("FORBIDDEN", {})).items()},
      timeout=float(ns.get("TIMEOUT", DEFAULT_TIMEOUT)),
      total_timeout=float(ns.get("TOTAL_TIMEOUT", DEFAULT_TOTAL_TIMEOUT)),
      memory_mb=int(ns.get("MEMORY_MB", DEFAULT_MEMORY_MB)),
    )
  except (KeyError, TypeError, ValueError):
    return _info_of(load_assignment(assignment_id))


def _info_of(a: Assignment) -> SpawnInfo:
  return SpawnInfo(a.id, a.path, a.functions, dict(a.forbidden), a.timeout, a.total_timeout, a.memory_mb)


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
        f"with <function> one of {', '.join(functions)}; got {name!r}."
      )
    found.append(
      GradedTest(
        key=key,
        name=name,
        function=function,
        points=fn.__autograder_points__,
        hidden=bool(getattr(fn, "__autograder_hidden__", False)),
        timeout=getattr(fn, "__autograder_timeout__", None),
        fn=fn,
      )
    )
  names = [t.name for t in found]
  dup = {n for n in names if names.count(n) > 1}
  if dup:
    raise ValueError(f"{where}: test names must be unique; repeated: {sorted(dup)}.")
  found.sort(key=lambda t: (functions.index(t.function), t.fn.__code__.co_firstlineno))
  return found
