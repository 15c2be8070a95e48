"""Every public test at once, inside the notebook: the last cell of each assignment notebook.

``check_all("03", globals())`` runs the public tests of every graded function on the notebook's own
functions, prints the same per-test lines as ``autograder check`` (the same table, from ``_report``), then a
one-line-per-function summary. Nothing is graded here: nbgrader scores the test cells above it; this cell is
the student's "where do I stand" (and it never writes to stderr, which nbgrader would flag).
"""
from __future__ import annotations

import time


def check_all(assignment_id: str, namespace: dict, *, print_table: bool = True) -> dict:
  """Run all public tests of ``assignment_id`` on the functions in ``namespace``; print the report; return it."""
  from autograder.authoring import _notebook as notebook
  from autograder.grader import _feedback, _registry, _report, _runner
  from autograder._errors import GradingTimeout
  from autograder.worker._remote import LocalSubmission
  t0 = time.monotonic()
  a = _registry.load_assignment(assignment_id)
  tampered = notebook._tampered()  # noqa: SLF001  (the notebook module's own helpers, same package)
  if tampered:
    print(f"check_all: the notebook replaced {', '.join(tampered[:4])}; the tests cannot trust this kernel. "
          "Restart the kernel and do not monkeypatch numpy, jax or the autograder.")
    return {}
  refused = notebook._refused_in_notebook(namespace, a)  # noqa: SLF001
  sub = LocalSubmission(namespace, refused)
  results, hung = [], {}
  with notebook._quiet_stderr():  # noqa: SLF001
    for t in a.tests:
      if t.hidden:
        continue
      ts = time.monotonic()
      if t.function in hung:      # a hang costs its seconds once, not once per test
        frac, status, msg = 0.0, "failed", hung[t.function] + " (from an earlier test; not run again)"
      else:
        try:
          with notebook._time_limit(t.timeout or a.timeout):  # noqa: SLF001
            frac, status, msg = _runner.run_test(t, sub)
        except GradingTimeout:
          hung[t.function] = f"{t.function} did not finish within {t.timeout or a.timeout:g} s."
          frac, status, msg = 0.0, "failed", hung[t.function]
      msg = _runner._cap(msg)  # noqa: SLF001  (the runner's message cap, same package)
      results.append(_runner.TestResult(t.name, t.function, round(frac * t.points, 6), t.points, False, status,
                                        msg, round(time.monotonic() - ts, 3)))
  cells = [{"source": s} for s in namespace.get("In", []) if isinstance(s, str)]
  _feedback.fix_callees_first(results, _feedback.graded_callees(cells, a.functions))
  notes = [f"{fn} uses {what}: refused, its tests score 0." for fn, what in refused.items()]
  report = {"assignment": a.id, "submission": "this notebook", "score": round(sum(r.score for r in results), 6),
            "max_score": sum(r.max_score for r in results), "tests": [r.as_dict() for r in results],
            "notes": notes, "isolation": "none (your own kernel)", "seconds": round(time.monotonic() - t0, 2)}
  if print_table:
    print(_report.text_table(report, self_check=True))
    print()
    print(summary_table(report, a.functions))
  return report


def summary_table(report: dict, functions) -> str:
  """One line per function: public points and a verdict, then the total."""
  width = max(len(f) for f in functions) + 2
  lines = [f"{'function':<{width}}public points", "-" * (width + 16)]
  for f in functions:
    tests = [t for t in report["tests"] if t["function"] == f]
    got, most = sum(t["score"] for t in tests), sum(t["max_score"] for t in tests)
    verdict = "ok" if got == most else "not started" if all("not implemented yet" in (t["output"] or "")
                                                             for t in tests) else "to fix"
    lines.append(f"{f:<{width}}{got:g}/{most:g}".ljust(width + 12) + verdict)
  pct = 100.0 * report["score"] / report["max_score"] if report["max_score"] else 0.0
  lines.append("-" * (width + 16))
  lines.append(f"{'total':<{width}}{report['score']:g}/{report['max_score']:g} ({pct:.0f}%)")
  return "\n".join(lines)
