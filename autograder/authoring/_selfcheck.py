"""Every public test at once, inside the notebook: the last cell of each assignment notebook.

``check_all("03", globals())`` runs the public tests of every graded function on the notebook's own functions
and prints one summary table: per function its public points, the checks passed out of its checks, and the
message of its first failing check; then the total. ``check_all(..., details=True)`` also prints every check's
line first, as ``autograder check`` and the test cells print them (the same renderer, ``_report.check_lines``).
Nothing is graded here: nbgrader scores the test cells above it; this cell is the student's "where do I stand"
(and it never writes to stderr, which nbgrader would flag).
"""

from __future__ import annotations

import textwrap
import time


def check_all(assignment_id: str, namespace: dict, *, print_table: bool = True, details: bool = False) -> dict:
  """Run all public tests of ``assignment_id`` on the functions in ``namespace``; print the summary; return the report.

  The report is the dict ``autograder check --format json`` prints (``tests``, ``score``, ``max_score``, ``notes``).
  """
  from autograder.authoring import _notebook as notebook
  from autograder.grader import _feedback, _registry, _report
  from autograder.worker._remote import LocalSubmission

  t0 = time.monotonic()
  a = _registry.load_assignment(assignment_id)
  tampered = notebook._tampered()  # noqa: SLF001  (the notebook module's own helpers, same package)
  if tampered:
    print(
      f"check_all: the notebook replaced {', '.join(tampered[:4])}; the tests cannot trust this kernel. "
      "Restart the kernel and do not monkeypatch numpy, jax or the autograder."
    )
    return {}
  refused = notebook._refused_in_notebook(namespace, a)  # noqa: SLF001
  sub = LocalSubmission(namespace, refused)
  with notebook.quiet_stderr():
    results = notebook.run_tests(a, [t for t in a.tests if not t.hidden], sub)
  for f in a.functions:  # what the test cells would remember: later test cells say "fix `f` first"
    mine = [r for r in results if r.function == f]
    if mine:
      notebook.remember(namespace, f, any(r.score < r.max_score for r in mine))
  cells = [{"source": s} for s in namespace.get("In", []) if isinstance(s, str)]
  _feedback.fix_callees_first(results, _feedback.graded_callees(cells, a.functions))
  notes = [f"{fn} uses {what}: refused, its tests score 0." for fn, what in refused.items()]
  report = {
    "assignment": a.id,
    "submission": "this notebook",
    "score": round(sum(r.score for r in results), 6),
    "max_score": sum(r.max_score for r in results),
    "tests": [r.as_dict() for r in results],
    "notes": notes,
    "isolation": "none (your own kernel)",
    "seconds": round(time.monotonic() - t0, 2),
  }
  if print_table:
    if details:
      print("\n".join(_report.check_lines(report["tests"])))
      print()
    print(summary_table(report, a.functions))
  return report


def _first_message(test: dict, room: int, rows: int = 3) -> list[str]:
  """The first line of a check's message (its name when it has none), wrapped to ``room`` columns, ``rows`` at most."""
  line = next((s.strip() for s in (test["output"] or "").splitlines() if s.strip()), "") or test["name"]
  wrapped = textwrap.wrap(line, room)
  if len(wrapped) > rows:
    wrapped = wrapped[: rows - 1] + [textwrap.shorten(" ".join(wrapped[rows - 1 :]), room, placeholder=" …")]
  return wrapped


def summary_table(report: dict, functions, width: int = 120) -> str:
  """The summary of a report: per function its points, checks passed / checks, and its first failing message.

  One row per function that has public tests, then ``total``, the notes and a reminder that hidden tests count.
  The first failing message is the first line of the message of the first check that did not pass (its name
  when it has none), wrapped in its column over at most three lines of ``width`` columns and shortened at a word.
  """
  rows = []
  for f in functions:
    tests = [t for t in report["tests"] if t["function"] == f]
    if not tests:
      continue
    got, most = sum(t["score"] for t in tests), sum(t["max_score"] for t in tests)
    passed = sum(t["status"] == "passed" for t in tests)
    bad = next((t for t in tests if t["status"] != "passed"), None)
    rows.append((f, f"{got:g}/{most:g}", f"{passed}/{len(tests)}", bad))
  n_pass = sum(t["status"] == "passed" for t in report["tests"])
  total = ("total", f"{report['score']:g}/{report['max_score']:g}", f"{n_pass}/{len(report['tests'])}", None)
  w0 = max(len(r[0]) for r in rows + [total, ("function",)]) + 2
  w1 = max(len(r[1]) for r in rows + [total, ("", "points")]) + 2
  w2 = max(len(r[2]) for r in rows + [total, ("", "", "passed")]) + 2
  room = max(width - w0 - w1 - w2, 40)
  rule = "-" * (w0 + w1 + w2 + room)
  lines = [f"{'function':<{w0}}{'points':<{w1}}{'passed':<{w2}}first failing message", rule]
  for f, pts, ok, bad in rows:
    msg = [""] if bad is None else _first_message(bad, room)
    lines.append(f"{f:<{w0}}{pts:<{w1}}{ok:<{w2}}{msg[0]}".rstrip())
    lines.extend(" " * (w0 + w1 + w2) + m for m in msg[1:])
  lines.append(rule)
  pct = 100.0 * report["score"] / report["max_score"] if report["max_score"] else 0.0
  lines.append(f"{total[0]:<{w0}}{total[1]:<{w1}}{total[2]:<{w2}}({pct:.0f}%)")
  for n in report.get("notes", []):
    lines.extend(textwrap.wrap("note: " + n, width, subsequent_indent="      "))
  lines.append("Public tests only: hidden tests also count towards your grade.")
  return "\n".join(lines)
