"""Checks inside a notebook kernel (the student's Jupyter, ``nbgrader validate``): feedback, not a grade.

Code in any cell of the notebook runs in the same kernel before a test cell and
can replace what the test cell uses, so nothing computed here decides a grade.
``nbgrader autograde``, configured by ``autograder release --nbgrader``, never runs
these cells: :class:`autograder.authoring._nbgrader_grade.IsolatedGrade` grades the
notebook with the isolated standalone grader and writes the cells' outputs.
In a student release (``autograder release ID --out DIR``) the tests come from
``DIR/public_tests/ID/tests.py`` when the kernel runs in DIR.

A test cell of a generated notebook reads::

    from autograder.notebook import grade
    score = grade("01", "relu", globals())
    ### BEGIN HIDDEN TESTS
    score += grade("01", "relu", globals(), hidden=True)
    ### END HIDDEN TESTS
    score

``grade`` runs that function's tests (only that function's: a cell answers in about
a second) from ``assignments/<ID>/tests.py`` on the notebook's own function, prints
on **stdout** the lines ``autograder check`` prints for it::

    sigmoid  2/3
      [PASS] sigmoid: matches 1 / (1 + exp(-x)) on a random vector, under jax.jit  1/1
      [FAIL] sigmoid: finite and correct at |x| = 1e4  0/1
             sigmoid(float32[7] in [-1e+04, 1e+04]): 6 of 7 values differ; ...

keeps **stderr empty** (nbgrader zeroes a cell with any stderr output, so JAX/XLA
warnings are captured and echoed on stdout) and returns the points earned, which
nbgrader takes as the cell's partial credit when it validates in the kernel.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import tempfile
import threading
import time
import types
import warnings
import weakref

from autograder._errors import GradingTimeout

_CRITICAL = [
  ("numpy", ["allclose", "isclose", "asarray", "array_equal", "all", "isfinite", "abs", "argwhere"]),
  ("jax", ["jit", "vmap", "vjp", "grad", "eval_shape"]),
  ("jax.numpy", ["asarray"]),
]


def _tampered() -> list[str]:
  """Names of grader-critical functions that the notebook has replaced."""
  import importlib

  bad = []
  for modname, names in _CRITICAL:
    m = sys.modules.get(modname)
    if m is None:
      continue
    for n in names:
      f = getattr(m, n, None)
      mod = getattr(f, "__module__", None) or ""
      if not (
        mod.startswith(("numpy", "jax", "jaxlib"))
        or mod == "builtins"
        or type(f).__module__.startswith(("numpy", "jax", "jaxlib"))
      ):
        bad.append(f"{modname}.{n}")
  here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the autograder package
  for modname in (
    "autograder.grader._checks",
    "autograder.worker._ops",
    "autograder.grader._runner",
    "autograder.grader._registry",
  ):
    m = importlib.import_module(modname)
    if not os.path.abspath(getattr(m, "__file__", "")).startswith(here):
      bad.append(modname)
      continue
    for n, f in vars(m).items():
      code = getattr(f, "__code__", None)
      if (
        code is not None
        and getattr(f, "__module__", "") == modname
        and not os.path.abspath(code.co_filename).startswith(here)
      ):
        bad.append(f"{modname}.{n}")
  return bad


@contextlib.contextmanager
def quiet_stderr():
  """Send Python- and C-level stderr (XLA logs) to a buffer; yield a function returning it."""
  buf = io.StringIO()
  saved_fd, tmp = None, None
  try:
    sys.stderr.flush()
  except Exception:  # noqa: BLE001, S110  (a closed stderr: nothing to flush)
    pass
  try:
    tmp = tempfile.TemporaryFile(mode="w+b")
    saved_fd = os.dup(2)
    os.dup2(tmp.fileno(), 2)
  except OSError:
    saved_fd = None
  try:
    with contextlib.redirect_stderr(buf), warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always")
      yield lambda: buf.getvalue() + "".join(f"{w.category.__name__}: {w.message}\n" for w in caught)
  finally:
    if saved_fd is not None and tmp is not None:  # saved_fd is set only once tmp is open
      os.dup2(saved_fd, 2)
      os.close(saved_fd)
      tmp.seek(0)
      buf.write(tmp.read().decode("utf-8", "replace"))
      tmp.close()


@contextlib.contextmanager
def _time_limit(seconds: float):
  if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
    yield
    return

  def on_alarm(_signum, _frame):
    raise GradingTimeout()

  old = signal.signal(signal.SIGALRM, on_alarm)
  signal.setitimer(signal.ITIMER_REAL, seconds)
  try:
    yield
  finally:
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


def run_tests(a, tests, sub) -> list:
  """Run ``tests`` on ``sub`` in this kernel; return the runner's ``TestResult`` records, in order.

  Each test runs under its time limit; a function that hangs costs its seconds once: its remaining tests fail
  at once with the same message. JAX/XLA noise on stderr is the caller's to capture (:func:`quiet_stderr`).
  """
  from autograder.grader import _runner

  results, hung = [], {}
  for t in tests:
    ts = time.monotonic()
    if t.function in hung:
      frac, status, msg = 0.0, "failed", hung[t.function] + " (from an earlier test; not run again)"
    else:
      try:
        with _time_limit(t.timeout or a.timeout):
          frac, status, msg = _runner.run_test(t, sub)
      except GradingTimeout:
        hung[t.function] = f"{t.function} did not finish within {t.timeout or a.timeout:g} s."
        frac, status, msg = 0.0, "failed", hung[t.function]
    results.append(
      _runner.TestResult(
        t.name,
        t.function,
        round(frac * t.points, 6),
        t.points,
        t.hidden,
        status,
        _runner._cap(msg),  # noqa: SLF001
        round(time.monotonic() - ts, 3),
      )
    )
  return results


# {function object: True if it failed a public test}, from the test cells run so far in this kernel. A later
# cell whose function calls a failing one says "fix `gru_step` first" without re-running gru_step's tests; a
# redefined function is a new object with no verdict yet.
_VERDICTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def remember(namespace: dict, function: str, failed: bool):
  try:
    _VERDICTS[namespace.get(function)] = failed
  except TypeError:  # not a function (or not weakly referenceable): nothing to remember
    pass


def _failing_callees(namespace: dict, a, function: str) -> list[str]:
  from autograder.grader import _feedback

  cells = [{"source": s} for s in namespace.get("In", []) if isinstance(s, str)]
  if not cells:
    return []
  out = []
  for g in _feedback.graded_callees(cells, a.functions).get(function, []):
    try:
      if _VERDICTS.get(namespace.get(g)):
        out.append(g)
    except TypeError:
      continue
  return out


def grade(assignment_id: str, function: str, namespace: dict, hidden: bool = False, verbose: bool = True) -> float:
  """Run the public (or, with ``hidden=True``, the hidden) tests of ``function``; return the points earned.

  Prints the lines ``autograder check`` prints for that function (its ``relu  3/4`` line, then one
  ``  [PASS] name  1/1`` line per test, with the message under each test that did not pass), from the same
  renderer (:func:`autograder.grader._report.check_lines`), on stdout only. When the function calls another
  graded function whose test cell above failed, the messages start with "fix `that_function` first".
  """
  from autograder.grader import _feedback, _registry, _report
  from autograder.worker._remote import LocalSubmission

  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  a = _registry.load_assignment(assignment_id)
  tests = a.tests_for(function, hidden=hidden)
  if not tests:
    return 0.0
  tampered = _tampered()
  if tampered:
    print(
      f"{function}  0/{sum(t.points for t in tests):g}\n  the notebook replaced {', '.join(tampered[:4])}; "
      "the tests cannot trust this kernel. Restart the kernel and do not monkeypatch numpy, jax or the "
      "autograder."
    )
    return 0.0
  sub = LocalSubmission(namespace, _refused_in_notebook(namespace, a))
  with quiet_stderr() as captured:
    results = run_tests(a, tests, sub)
  total = round(sum(r.score for r in results), 6)
  failed = total < sum(r.max_score for r in results)
  if not hidden:
    remember(namespace, function, failed)
  broken = _failing_callees(namespace, a, function) if failed else []
  if broken:  # the callees' verdicts come from their own cells above: stand-ins carry them
    stand_ins = [types.SimpleNamespace(function=g, score=0.0, max_score=1.0, output="") for g in broken]
    _feedback.fix_callees_first(results + stand_ins, {function: broken})
  noise = captured().strip()
  if verbose:
    print("\n".join(_report.check_lines([r.as_dict() for r in results])))
    if noise:
      print("  (captured on stderr, not counted: " + noise.splitlines()[0][:200] + ")")
    if not hidden:
      print("Public tests only: hidden tests also count towards your grade.")
  return total


def _refused_in_notebook(namespace: dict, a) -> dict[str, str]:
  """Static check of the notebook's code cells for dlfunc / forbidden names (the kernel keeps them in ``In``)."""
  from autograder.worker import _submission

  sources = namespace.get("In")
  if not isinstance(sources, list):
    return {}
  cells = [
    {"index": i, "source": s}
    for i, s in enumerate(sources)
    if isinstance(s, str) and "from autograder.notebook import grade" not in s
  ]
  return _submission.forbidden_uses(cells, a.functions, a.forbidden)
