"""pytest plugin: run an assignment's graded tests with pytest itself.

    pytest -p autograder.pytest_plugin assignments/01/tests.py --submission alice.ipynb \\
        [--grade-json results.json] [--public-only] [--call-timeout 20]

- markers ``points(n)`` and ``hidden`` (``@points``/``@hidden`` from ``autograder`` set them);
- fixture ``sub``: the submission's functions, called in the isolated worker (one per session);
- partial credit: a test may return ``checks.each(...)`` or a fraction; the plugin records it
  (and keeps pytest from warning about the return value);
- a per-call timeout (``--call-timeout``), enforced by the worker proxy;
- a result record per test; ``--grade-json`` writes them with the total, in the same
  JSON as ``autograder grade --format json``.
"""

from __future__ import annotations

import json
import pathlib
import time

import pytest

from autograder.grader import _registry
from autograder.worker import _remote, _sandbox, _submission
from autograder.grader._checks import Credit
from autograder._errors import CheckFailed, SubmissionError

_RECORDS = pytest.StashKey[list]()


def pytest_addoption(parser):
  """The plugin's options: ``--submission``, ``--grade-json``, ``--public-only``, ``--call-timeout``."""
  g = parser.getgroup("autograder")
  g.addoption("--submission", help="the .py, .ipynb or folder to grade")
  g.addoption("--grade-json", help="write the per-test records and the total here")
  g.addoption("--public-only", action="store_true", help="skip @hidden tests")
  g.addoption("--call-timeout", type=float, default=None, help="seconds per call into the submission")


def pytest_configure(config):
  """Register the ``points``/``hidden`` markers and a place for the per-test records."""
  config.addinivalue_line("markers", "points(n): the test is worth n points")
  config.addinivalue_line("markers", "hidden: a hidden test (not shown to students)")
  config.stash[_RECORDS] = []


def _assignment_for(path: pathlib.Path):
  return _registry.load_assignment(path.resolve().parent.name)


def pytest_collection_modifyitems(config, items):
  """Keep only graded tests (``@points`` or ``pytest.mark.points``); drop hidden ones under ``--public-only``."""
  keep = []
  for item in items:
    fn = getattr(item, "function", None)
    mark = item.get_closest_marker("points")
    if fn is not None and mark is not None and not hasattr(fn, "__autograder_points__"):
      fn.__autograder_points__ = float(mark.args[0])  # plain @pytest.mark.points(n) / .hidden
      if item.get_closest_marker("hidden"):
        fn.__autograder_hidden__ = True
    if fn is None or not hasattr(fn, "__autograder_points__"):
      keep.append(item)
      continue
    item.add_marker(pytest.mark.points(fn.__autograder_points__))
    if getattr(fn, "__autograder_hidden__", False):
      item.add_marker(pytest.mark.hidden)
      if config.getoption("--public-only"):
        continue
    keep.append(item)
  items[:] = keep


@pytest.fixture(scope="session")
def _submission_proxy(request):
  path = request.config.getoption("--submission")
  if not path:
    pytest.skip("give --submission PATH to grade a submission")
  first = next(i for i in request.session.items if hasattr(getattr(i, "function", None), "__autograder_points__"))
  a = _assignment_for(pathlib.Path(first.fspath))
  info = _submission.read_submission(pathlib.Path(path), a.functions)
  refused = _submission.forbidden_uses(info.cells, a.functions, a.forbidden)
  scratch = _remote.make_scratch()
  entry = _submission.copy_into(info, scratch)
  sub = _remote.RemoteSubmission(
    info.cells,
    entry,
    a.functions,
    scratch=scratch,
    denied=[str(a.path.parent), str(pathlib.Path(path).resolve().parent)],
    timeout=request.config.getoption("--call-timeout") or a.timeout,
    memory_mb=a.memory_mb,
    cpu_s=int(a.total_timeout) + 30,
    refused=refused,
  )
  sub.spawn()
  yield sub
  sub.close()
  _remote.remove_scratch(scratch)


@pytest.fixture
def sub(_submission_proxy):
  """The student's functions (see autograder/AUTHORING.md)."""
  return _submission_proxy


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
  """Run one graded test and record its points; a failure or SubmissionError is a score, not a crash."""
  fn = pyfuncitem.obj
  if not hasattr(fn, "__autograder_points__"):
    return None
  argnames = pyfuncitem._fixtureinfo.argnames  # noqa: SLF001  (pytest's own pytest_pyfunc_call reads it the same way)
  kwargs = {name: pyfuncitem.funcargs[name] for name in argnames}
  t0 = time.monotonic()
  frac, msg = 1.0, ""
  try:
    result = fn(**kwargs)
    if isinstance(result, Credit):
      frac, msg = min(max(result.fraction, 0.0), 1.0), "\n".join(result.messages)
    elif isinstance(result, (int, float)) and not isinstance(result, bool):
      frac = min(max(float(result), 0.0), 1.0)
  except (CheckFailed, SubmissionError) as e:
    frac, msg = 0.0, str(e)
    _record(pyfuncitem, fn, frac, msg, t0)
    raise
  _record(pyfuncitem, fn, frac, msg, t0)
  if frac < 1.0:
    pytest.fail(f"partial credit {frac:.2f}: {msg}", pytrace=False)
  return True


def _record(item, fn, frac, msg, t0):
  doc = (fn.__doc__ or "").strip().splitlines()
  name = doc[0] if doc else item.name
  pts = fn.__autograder_points__
  sub = item.funcargs.get("sub")
  out = sub.take_output() if hasattr(sub, "take_output") else ""
  item.config.stash[_RECORDS].append(
    {
      "name": name,
      "function": name.split(":")[0],
      "score": round(frac * pts, 6),
      "max_score": pts,
      "hidden": bool(getattr(fn, "__autograder_hidden__", False)),
      "status": "passed" if frac == 1 else "partial" if frac > 0 else "failed",
      "output": (msg + ("\noutput:\n" + out if out.strip() else ""))[:2000],
      "seconds": round(time.monotonic() - t0, 3),
    }
  )


def pytest_sessionfinish(session):
  """Write the per-test records and the total to ``--grade-json`` (when given)."""
  path = session.config.getoption("--grade-json")
  records = session.config.stash.get(_RECORDS, [])
  if not path or not records:
    return
  sub_path = session.config.getoption("--submission") or ""
  report = {
    "assignment": "",
    "submission": pathlib.Path(sub_path).stem,
    "tests": records,
    "score": round(sum(r["score"] for r in records), 6),
    "max_score": sum(r["max_score"] for r in records),
    "notes": [],
    "isolation": _sandbox.isolation_summary(),
    "seconds": 0.0,
  }
  pathlib.Path(path).write_text(json.dumps(report, indent=1))


def pytest_terminal_summary(terminalreporter):
  """Print the points earned at the end of pytest's summary."""
  records = terminalreporter.config.stash.get(_RECORDS, [])
  if records:
    got, mx = sum(r["score"] for r in records), sum(r["max_score"] for r in records)
    terminalreporter.write_line(f"autograder: {got:g}/{mx:g} points")
