"""Grading one submission: static checks, the isolated worker, the tests, the report record."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import time
import traceback

from autograder.grader import _feedback, _refcache, _registry
from autograder.worker import _remote, _sandbox, _submission
from autograder._errors import CheckFailed, GraderBroken, SubmissionError

OUTPUT_CAP = 2000  # characters of feedback + student output kept per test


@dataclasses.dataclass
class TestResult:
  """One graded test: its points out of ``max_score``, its status and the message a student reads."""

  name: str
  function: str
  score: float
  max_score: float
  hidden: bool
  status: str  # passed | partial | failed | error
  output: str
  seconds: float

  def as_dict(self):
    """The fields as a JSON-ready dict."""
    return dataclasses.asdict(self)


@dataclasses.dataclass
class Report:
  """The grade of one submission: every test's result, notes for the student, and the isolation it ran under."""

  assignment: str
  submission: str
  score: float
  max_score: float
  tests: list[TestResult]
  notes: list[str]
  isolation: str
  seconds: float

  def as_dict(self):
    """The report as a JSON-ready dict (what ``--format json`` prints and grade-all records)."""
    d = dataclasses.asdict(self)
    d["tests"] = [t.as_dict() for t in self.tests]
    return d

  def by_function(self) -> dict[str, tuple[float, float]]:
    """{graded function: (score, max score)} summed over its tests."""
    out: dict[str, list[float]] = {}
    for t in self.tests:
      s = out.setdefault(t.function, [0.0, 0.0])
      s[0] += t.score
      s[1] += t.max_score
    return {k: (v[0], v[1]) for k, v in out.items()}


def _cap(text: str, cap: int = OUTPUT_CAP) -> str:
  if len(text) <= cap:
    return text
  return text[:cap] + f"\n... ({len(text) - cap} more characters cut)"


def run_test(test, sub) -> tuple[float, str, str]:
  """Run one test against ``sub``; return (fraction, status, feedback). Never raises."""
  from autograder.grader._checks import Credit  # (NumPy: imported after the worker is started)

  try:
    result = test.fn(sub)
  except CheckFailed as e:
    return 0.0, "failed", str(e)
  except SubmissionError as e:
    return 0.0, "failed", e.message
  except GraderBroken:
    raise
  except Exception as e:  # noqa: BLE001  (a bug in the test itself, or bad data from the worker)
    tb = traceback.extract_tb(e.__traceback__)
    where = f" ({pathlib.Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return 0.0, "error", f"the test could not judge the result: {type(e).__name__}: {str(e)[:300]}{where}"
  if isinstance(result, Credit):
    frac = min(max(float(result.fraction), 0.0), 1.0)
    msg = "\n".join(result.messages)
    return frac, ("passed" if frac == 1.0 else "partial" if frac > 0 else "failed"), msg
  if isinstance(result, (int, float)) and not isinstance(result, bool):
    frac = min(max(float(result), 0.0), 1.0)
    return frac, ("passed" if frac == 1.0 else "partial" if frac > 0 else "failed"), ""
  return 1.0, "passed", ""


def grade_submission(
  assignment_id: str,
  path,
  *,
  hidden: bool = True,
  timeout: float | None = None,
  total_timeout: float | None = None,
  memory_mb: int | None = None,
  denied_extra: list[str] | None = None,
  functions: list[str] | None = None,
  keep_compiled: bool = False,
) -> Report:
  """Grade ``path`` (a .py, .ipynb or folder) for ``assignment_id`` in an isolated worker.

  ``hidden=False`` runs the public tests only (the student's self-check). ``keep_compiled`` keeps the programs
  XLA compiles on disk for the next run (the command line's choice: it sets this process's JAX configuration):
  the grader's own in the reference cache; with ``hidden=False`` also the submission's, in a folder of that
  submission path's own (see ``_refcache``).
  """
  t0 = time.monotonic()
  # The worker (which imports JAX: the slow part) starts first, from what tests.py states as constants; the
  # tests (JAX, dlfunc, the references) are imported here while it boots.
  info = _registry.spawn_info(assignment_id)
  unknown = sorted(set(functions or ()) - set(info.functions))
  if unknown:
    raise ValueError(
      f"assignment {assignment_id} has no function(s) {', '.join(unknown)}; its functions are "
      f"{', '.join(info.functions)}."
    )
  given = pathlib.Path(path)
  if given.is_symlink():  # never followed: it could point at the assignment's solution or another student
    return _unreadable(
      assignment_id,
      hidden,
      functions,
      given.stem,
      str(
        _submission.SubmissionUnreadable(
          f"{_submission.display(given.name)} is a symbolic link; submit the file itself (links are not followed)."
        )
      ),
      t0,
    )
  path = given.parent.resolve() / given.name
  notes: list[str] = []
  try:
    sub_info = _submission.read_submission(path, info.functions)
  except _submission.SubmissionUnreadable as e:
    return _unreadable(assignment_id, hidden, functions, path.stem, str(e), t0)
  except (OSError, UnicodeError, ValueError, RecursionError, MemoryError) as e:
    return _unreadable(
      assignment_id,
      hidden,
      functions,
      path.stem,
      f"{_submission.display(path.name)} could not be read ({type(e).__name__}).",
      t0,
    )
  notes.extend(sub_info.notes)
  refused = _submission.forbidden_uses(sub_info.cells, info.functions, info.forbidden)
  for fn, what in refused.items():
    notes.append(f"{fn} uses {what}: refused, its tests score 0.")
  scratch = _remote.make_scratch()
  # the assignment (tests, reference), dlfunc, the folder holding the submission (other students' work), the
  # reference-output cache and the compiled programs of checks (a check's worker gets its own folder back)
  programs = str(_refcache.programs_root())
  denied = [str(info.path.parent), _dlfunc_dir(), str(path.parent), str(_refcache.cache_dir()), programs]
  denied = _safe_denied([d for d in denied + list(denied_extra or []) if d])
  # a cache folder the worker could see (one holding the interpreter or the autograder) is not used at all
  cache_for = None if os.path.realpath(_refcache.cache_dir()) not in denied else info.path
  usable = cache_for is not None and os.path.realpath(programs) in denied
  compiled = _programs_for(path, denied, programs) if keep_compiled and not hidden and usable else ""
  sub = None
  callees = _feedback.graded_callees(sub_info.cells, info.functions)
  try:
    entry_copy = _submission.copy_into(sub_info, scratch)

    def start(spec):
      s = _remote.RemoteSubmission(
        sub_info.cells,
        entry_copy,
        spec.functions,
        scratch=scratch,
        denied=denied,
        timeout=timeout or spec.timeout,
        memory_mb=memory_mb or spec.memory_mb,
        cpu_s=int(total_timeout or spec.total_timeout) + 30,
        refused=refused,
        forbidden=spec.forbidden,
        callees=callees,
        compiled=compiled,
      )
      s.spawn()
      return s

    sub = start(info)
    a = _registry.load_assignment(assignment_id)
    if keep_compiled and cache_for is not None:
      _refcache.keep_grader_programs()
    if not info.same_as(a):  # tests.py changed a constant after stating it: start over with the real values
      sub.close()
      sub = start(a)
    per_call = timeout or a.timeout
    budget = total_timeout or a.total_timeout
    tests = [t for t in a.tests if (hidden or not t.hidden) and (functions is None or t.function in functions)]
    results = _run_tests(tests, sub, per_call=per_call, budget=budget, t0=t0, cache_for=cache_for)
    _feedback.fix_callees_first(results, callees)
    if sub.load_problems:
      notes.extend(sub.load_problems)
    missing = [f for f, ok in sub.defined.items() if not ok and f not in refused]
    if missing:
      notes.append("not defined in the submission: " + ", ".join(missing) + ".")
    results, notes = _feedback.load_failure_first(results, notes, sub_info.cells, a.functions)
    if sub.xla_note:
      notes.append(sub.xla_note)
    if sub.workers_started > 1:
      notes.append(f"the worker process was restarted {sub.workers_started - 1} time(s) after a crash or timeout.")
  finally:
    layers = sub.layers if sub is not None else []
    if sub is not None:
      sub.close()
    _remote.remove_scratch(scratch)
  if len(notes) > 30:  # a notebook full of magics cannot make the report huge either
    notes = notes[:30] + [f"... and {len(notes) - 30} more notes."]
  notes = [_cap(n, 600) for n in notes]
  score = round(sum(r.score for r in results), 6)
  return Report(
    assignment_id,
    sub_info.name,
    score,
    sum(t.points for t in tests),
    results,
    notes,
    _sandbox.isolation_summary(layers),
    round(time.monotonic() - t0, 2),
  )


def _run_tests(tests, sub, *, per_call: float, budget: float, t0: float, cache_for) -> list[TestResult]:
  """Run ``tests`` in order against the worker, within the per-call limit and the submission's total budget."""
  results = []
  with _refcache.for_assignment(cache_for):  # reference outputs kept on disk across runs (hashed once)
    for t in tests:
      # The budget is charged time (the worker's CPU and idle time, not the machine's load; see _meter),
      # with a backstop on the clock for a machine so overloaded that the meter barely moves.
      if sub.charged > budget or time.monotonic() - t0 > 10 * budget + 300:
        why = (
          f"the submission used up its {budget:g} s"
          if sub.charged > budget
          else f"grading was stopped after {time.monotonic() - t0:.0f} s on the clock (the grading machine "
          "was overloaded; ask for a regrade)"
        )
        results.append(TestResult(t.name, t.function, 0.0, t.points, t.hidden, "failed", f"not run: {why}.", 0.0))
        continue
      ts = time.monotonic()
      sub.timeout = t.timeout or per_call
      frac, status, msg = run_test(t, sub)
      out = sub.take_output()
      text = msg + (("\n" if msg else "") + "output:\n" + out if out.strip() else "")
      results.append(
        TestResult(
          t.name,
          t.function,
          round(frac * t.points, 6),
          t.points,
          t.hidden,
          status,
          _cap(text),
          round(time.monotonic() - ts, 3),
        )
      )
  return results


def _programs_for(path: pathlib.Path, denied: list[str], programs: str) -> str:
  """The folder for this submission's compiled programs (a check's), or "" where it would touch another denied
  folder (the programs folder of every other submission path stays denied)."""
  folder = _refcache.submission_programs(path)
  if folder is None:
    return ""
  real = os.path.realpath(folder)
  others = [d for d in denied if d != os.path.realpath(programs)]
  if any(real == d or real.startswith(d + os.sep) or d.startswith(real + os.sep) for d in others):
    return ""
  return real


def _unreadable(assignment_id, hidden, functions, name, message, t0) -> Report:
  """Every selected test failed with ``message`` (a submission that cannot be read: no worker is started)."""
  a = _registry.load_assignment(assignment_id)
  tests = [t for t in a.tests if (hidden or not t.hidden) and (functions is None or t.function in functions)]
  return _all_failed(a, tests, name, message, t0)


def _all_failed(a, tests, name, message, t0) -> Report:
  results = [TestResult(t.name, t.function, 0.0, t.points, t.hidden, "failed", message, 0.0) for t in tests]
  return Report(
    a.id,
    name,
    0.0,
    sum(t.points for t in tests),
    results,
    [message],
    _sandbox.isolation_summary(),
    round(time.monotonic() - t0, 2),
  )


def _safe_denied(dirs: list[str]) -> list[str]:
  """Drop folders the worker needs (the interpreter, the autograder, JAX) from the deny list."""
  import importlib.util
  import sys

  spec = importlib.util.find_spec("jax")  # where JAX lives, without importing it (the worker is not up yet)
  jax_dir = os.path.dirname(spec.origin) if spec is not None and spec.origin else sys.prefix
  needed = [
    os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, os.path.dirname(os.path.dirname(__file__)), jax_dir)
  ]
  out = []
  for d in dirs:
    d = os.path.realpath(d)
    if d in ("/", "") or any(n == d or n.startswith(d + os.sep) for n in needed):
      continue
    out.append(d)
  return sorted(set(out))


def _dlfunc_dir() -> str:
  import importlib.util

  spec = importlib.util.find_spec("dlfunc")
  if spec and spec.submodule_search_locations:
    return os.path.realpath(list(spec.submodule_search_locations)[0])
  return ""
