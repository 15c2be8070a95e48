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

``grade`` runs that function's tests from ``assignments/<ID>/tests.py`` on the
notebook's own function, prints one short verdict per test on **stdout**, keeps
**stderr empty** (nbgrader zeroes a cell with any stderr output, so JAX/XLA
warnings are captured and echoed on stdout) and returns the points earned,
which nbgrader takes as the cell's partial credit.
"""
from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import tempfile
import threading
import warnings

from autograder._errors import GradingTimeout

_CRITICAL = [("numpy", ["allclose", "isclose", "asarray", "array_equal", "all", "isfinite", "abs", "argwhere"]),
             ("jax", ["jit", "vmap", "vjp", "grad", "eval_shape"]),
             ("jax.numpy", ["asarray"])]


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
      if not (mod.startswith(("numpy", "jax", "jaxlib")) or mod == "builtins" or
              type(f).__module__.startswith(("numpy", "jax", "jaxlib"))):
        bad.append(f"{modname}.{n}")
  here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # the autograder package
  for modname in ("autograder.grader._checks", "autograder.worker._ops", "autograder.grader._runner",
                  "autograder.grader._registry"):
    m = importlib.import_module(modname)
    if not os.path.abspath(getattr(m, "__file__", "")).startswith(here):
      bad.append(modname)
      continue
    for n, f in vars(m).items():
      code = getattr(f, "__code__", None)
      if code is not None and getattr(f, "__module__", "") == modname and not os.path.abspath(
          code.co_filename).startswith(here):
        bad.append(f"{modname}.{n}")
  return bad


@contextlib.contextmanager
def _quiet_stderr():
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
    if saved_fd is not None and tmp is not None:     # saved_fd is set only once tmp is open
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


def grade(assignment_id: str, function: str, namespace: dict, hidden: bool = False, verbose: bool = True) -> float:
  """Run the public (or, with ``hidden=True``, the hidden) tests of ``function``; return the points earned."""
  from autograder.grader import _registry, _runner
  from autograder.worker._remote import LocalSubmission
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  a = _registry.load_assignment(assignment_id)
  tests = a.tests_for(function, hidden=hidden)
  if not tests:
    return 0.0
  label = "hidden" if hidden else "public"
  tampered = _tampered()
  if tampered:
    print(f"{function}: 0/{sum(t.points for t in tests):g} {label} — the notebook replaced "
          f"{', '.join(tampered[:4])}; the tests cannot trust this kernel. Restart the kernel and do not "
          "monkeypatch numpy, jax or the autograder.")
    return 0.0
  refused = _refused_in_notebook(namespace, a)
  sub = LocalSubmission(namespace, refused)
  total, lines = 0.0, []
  hung = None
  with _quiet_stderr() as captured:
    for t in tests:
      if hung:                 # a hang costs its seconds once, not once per test
        frac, status, msg = 0.0, "failed", hung + " (from an earlier test; not run again)"
      else:
        try:
          with _time_limit(t.timeout or a.timeout):
            frac, status, msg = _runner.run_test(t, sub)
        except GradingTimeout:
          hung = f"{function} did not finish within {t.timeout or a.timeout:g} s."
          frac, status, msg = 0.0, "failed", hung
      pts = round(frac * t.points, 6)
      total += pts
      mark = "PASS" if status == "passed" else "PART" if status == "partial" else "FAIL"
      lines.append(f"  [{mark}] {t.name} ({pts:g}/{t.points:g})")
      if msg:
        lines.extend("         " + m for m in msg.splitlines()[:6])
  noise = captured().strip()
  if verbose:
    print(f"{function}: {total:g}/{sum(t.points for t in tests):g} points from {label} tests")
    print("\n".join(lines))
    if noise:
      print("  (captured on stderr, not counted: " + noise.splitlines()[0][:200] + ")")
    if not hidden:
      print("  Hidden tests also count towards your grade.")
  return round(total, 6)


def _refused_in_notebook(namespace: dict, a) -> dict[str, str]:
  """Static check of the notebook's code cells for dlfunc / forbidden names (the kernel keeps them in ``In``)."""
  from autograder.worker import _submission
  sources = namespace.get("In")
  if not isinstance(sources, list):
    return {}
  cells = [{"index": i, "source": s} for i, s in enumerate(sources) if isinstance(s, str)
           and "from autograder.notebook import grade" not in s]
  return _submission.forbidden_uses(cells, a.functions, a.forbidden)
