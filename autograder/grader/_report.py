"""Reports: a terminal table for students, JSON, Gradescope ``results.json``, CSV over many submissions."""

from __future__ import annotations

import csv
import io
import json
import shutil
import textwrap

MARK = {"passed": "PASS", "partial": "PART", "failed": "FAIL", "error": "ERR "}


def _width() -> int:
  return max(60, min(shutil.get_terminal_size((100, 20)).columns, 120))


def check_lines(tests: list[dict], width: int | None = None) -> list[str]:
  """The per-check lines of ``autograder check``, grouped by function: what a notebook's test cell prints too.

  ``tests`` are test records (``TestResult.as_dict()``). Each function opens with ``relu  3/4``; each test is
  ``  [PASS] relu: matches max(x, 0) on a random vector  1/1`` and, unless it passed, its message below,
  wrapped to ``width`` columns (the terminal's, 60 to 120).
  """
  width = width or _width()
  lines, current = [], None
  for t in tests:
    if t["function"] != current:
      current = t["function"]
      got = sum(x["score"] for x in tests if x["function"] == current)
      mx = sum(x["max_score"] for x in tests if x["function"] == current)
      lines.append(f"{current}  {got:g}/{mx:g}")
    tag = " (hidden)" if t["hidden"] else ""
    lines.append(f"  [{MARK.get(t['status'], t['status'])}] {t['name']}{tag}  {t['score']:g}/{t['max_score']:g}")
    if t["status"] != "passed" and t["output"]:
      for para in t["output"].splitlines()[:12]:
        lines.extend(
          textwrap.wrap(para, width - 9, initial_indent="         ", subsequent_indent="           ") or [""]
        )
  return lines


def text_table(report: dict, *, self_check: bool = False) -> str:
  """The report as a terminal table: one line per test grouped by function, notes, the total and the isolation."""
  width = _width()
  lines = [f"Assignment {report['assignment']} — {report['submission']}", ""]
  first = [n for n in report.get("notes", []) if n.startswith("syntax error")]  # the cause comes first, alone
  for n in first:
    lines.extend(n.splitlines() + [""])
  lines.extend(check_lines(report["tests"], width))
  lines.append("")
  pct = 100.0 * report["score"] / report["max_score"] if report["max_score"] else 0.0
  lines.append(f"Total: {report['score']:g}/{report['max_score']:g} ({pct:.0f}%)   [{report['seconds']:.1f} s]")
  for n in report.get("notes", []):
    if n in first:
      continue
    lines.extend(textwrap.wrap("note: " + n, width, subsequent_indent="      "))
  if self_check:
    lines.append("These are the public tests only: hidden tests also count towards your grade.")
  lines.append(f"isolation: {report.get('isolation', '')}")
  return "\n".join(lines)


def gradescope(report: dict) -> dict:
  """Gradescope's results.json: top-level score (it overrides the sum), tests with status and visibility.

  Hidden tests are ``after_published`` (students see them once grades are published), public ones ``visible``; a
  partly passed test is ``failed`` (Gradescope knows only passed/failed) with its partial score.
  """
  tests = [
    {
      "name": t["name"],
      "score": t["score"],
      "max_score": t["max_score"],
      "status": "passed" if t["status"] == "passed" else "failed",
      "output": t["output"] or ("passed" if t["status"] == "passed" else ""),
      "output_format": "text",
      "visibility": "after_published" if t["hidden"] else "visible",
      "tags": [t["function"]],
    }
    for t in report["tests"]
  ]
  out = {
    "score": report["score"],
    "execution_time": int(round(report.get("seconds", 0))),
    "output": "",
    "output_format": "text",
    "visibility": "visible",
    "stdout_visibility": "hidden",
    "tests": tests,
  }
  if report.get("notes"):
    out["output"] = "\n".join(report["notes"])
  return out


def render(report: dict, fmt: str) -> str:
  """The report in format ``fmt``: ``text`` (:func:`text_table`), ``json`` or ``gradescope`` (``results.json``)."""
  if fmt == "text":
    return text_table(report)
  if fmt == "json":
    return json.dumps(report, indent=1)
  if fmt == "gradescope":
    return json.dumps(gradescope(report), indent=1)
  raise ValueError(f"--format must be text, json or gradescope; got {fmt!r}.")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value) -> str:
  """A cell a spreadsheet shows as text: one starting with ``= + - @``, a tab or a carriage return gets a leading
  ``'`` (OWASP's advice against CSV injection), so a file named ``=1+1.py`` is not evaluated as a formula."""
  text = value if isinstance(value, str) else str(value)
  return "'" + text if text.startswith(_FORMULA_START) else text


def csv_text(reports: list[dict], functions) -> str:
  """``grades.csv``: one row per record (graded or skipped), names and notes neutralised against formulas.

  Columns: submission, score, max_score, percent, one per graded function, status (graded, skipped, grader
  failed), collision (other names of the same student), refused (operations the sandbox refused, as
  ``function: what``), notes. A skipped entry's score cells are empty.
  """
  buf = io.StringIO()
  w = csv.writer(buf)
  w.writerow(["submission", "score", "max_score", "percent", *functions, "status", "collision", "refused", "notes"])
  for r in sorted(reports, key=lambda r: r["submission"]):
    status = r.get("status", "graded")
    refused = "; ".join(f"{x['function']}: {x['what']}" for x in r.get("refused") or [])
    tail = [status, " ".join(r.get("collision") or []), refused[:500], " | ".join(r.get("notes", []))[:500]]
    if status == "skipped":
      w.writerow(
        [csv_cell(c) for c in [r["submission"], "", f"{r['max_score']:g}", "", *["" for _ in functions], *tail]]
      )
      continue
    per = {f: 0.0 for f in functions}
    for t in r["tests"]:
      per[t["function"]] = per.get(t["function"], 0.0) + t["score"]
    pct = 100.0 * r["score"] / r["max_score"] if r["max_score"] else 0.0
    w.writerow(
      [
        csv_cell(c)
        for c in [
          r["submission"],
          f"{r['score']:g}",
          f"{r['max_score']:g}",
          f"{pct:.1f}",
          *[f"{per[f]:g}" for f in functions],
          *tail,
        ]
      ]
    )
  return buf.getvalue()
