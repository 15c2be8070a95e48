"""Grading one submission for another platform: Gradescope's ``results.json`` and PrairieLearn's.

These run inside the platform's container (``run_autograder`` / ``run.sh`` of an exported bundle call
``python -m autograder.platforms._adapters gradescope|prairielearn ROOT``). They grade with the normal isolated
grader, and always leave a valid results file: a crash of the grader itself, a submission without a gradable file
and a deadline overrun each become a visible message with score 0, never a missing or malformed file.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import threading
import time
import traceback

GRADABLE = (".py", ".ipynb")
PL_MAX_BYTES = 1_000_000  # PrairieLearn rejects a results.json over 1 MB


# ---------------------------------------------------------------- shared


def choose(folder: pathlib.Path, functions=()) -> tuple[pathlib.Path | None, str, list[str]]:
  """(what to grade, a sentence saying what was chosen, the names found). ``None`` when nothing is gradable.

  One .py/.ipynb at the top of the folder: that file. Several (or only inside subfolders): the folder, whose entry
  is the file defining the most graded functions (ties: the notebook), as for folder submissions elsewhere.
  """
  from autograder.grader import _batch
  from autograder.worker import _submission

  found = []
  for dirpath, dirnames, filenames in os.walk(folder):
    dirnames[:] = sorted(d for d in dirnames if d != ".ipynb_checkpoints")
    for f in sorted(filenames):
      found.append(_batch.escape_name(os.path.relpath(os.path.join(dirpath, f), folder)))
      if len(found) >= 50:
        break
  gradable = [f for f in found if f.endswith(GRADABLE) and not pathlib.PurePath(f).name.startswith(".")]
  if not gradable:
    return None, "", found
  top = [
    p
    for p in sorted(folder.iterdir())
    if p.is_file() and not p.is_symlink() and p.suffix in GRADABLE and not p.name.startswith(".")
  ]
  if len(top) == 1:
    return top[0], f"graded {_batch.escape_name(top[0].name)}", found
  try:
    entry = _submission.find_entry(folder, functions)
    why = (
      f"graded {_batch.escape_name(str(entry.relative_to(folder)))}, the file defining the most graded "
      f"functions, of {len(gradable)} .py/.ipynb files"
    )
  except Exception as e:  # noqa: BLE001  (the grader says what is wrong with the folder)
    why = f"graded the folder ({type(e).__name__})"
  return folder, why, found


def _found_text(found: list[str]) -> str:
  if not found:
    return "the submission is empty"
  more = " ..." if len(found) >= 50 else ""
  return "found: " + ", ".join(found[:50]) + more


class _Deadline:
  """Call ``on_timeout`` (which must write a result and exit) if grading runs past ``seconds``."""

  def __init__(self, seconds: float, on_timeout):
    self._t = threading.Timer(seconds, on_timeout)
    self._t.daemon = True

  def __enter__(self):
    self._t.start()
    return self

  def __exit__(self, *exc):
    self._t.cancel()


def _write_atomic(path: pathlib.Path, obj) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
  tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=True) + "\n", encoding="utf-8")
  os.replace(tmp, path)


# ---------------------------------------------------------------- Gradescope


def gs_message(name: str, text: str, score: float = 0.0) -> dict:
  """A whole results.json that is one visible message (score 0 unless given)."""
  return {
    "score": score,
    "execution_time": 0,
    "output": text,
    "output_format": "text",
    "visibility": "visible",
    "stdout_visibility": "hidden",
    "tests": [
      {
        "name": name,
        "score": score,
        "max_score": 0,
        "status": "failed",
        "output": text,
        "output_format": "text",
        "visibility": "visible",
        "tags": [],
      }
    ],
  }


def gradescope(root: pathlib.Path) -> int:
  """Grade ``root/submission`` for the bundle's assignment; write ``root/results/results.json``."""
  from autograder.grader import _report, _runner

  t0 = time.monotonic()
  src, results = root / "source", root / "results" / "results.json"
  cfg = json.loads((src / "bundle.json").read_text())
  aid, deadline = cfg["assignment"], float(os.environ.get("AUTOGRADER_DEADLINE", str(cfg.get("deadline_s", 540))))
  os.environ.setdefault("AUTOGRADER_ASSIGNMENTS", str(src / "assignments"))

  def finish(res):
    res["execution_time"] = int(round(time.monotonic() - t0))
    _write_atomic(results, res)

  def overrun():
    finish(
      gs_message(
        "Grading did not finish in time",
        f"Grading stopped after {deadline:g} s, before it finished: your score is 0 for now. This can "
        "be the grading machine's fault; your instructor can raise the autograder's time limit and "
        "regrade.",
      )
    )
    os._exit(0)

  try:
    with _Deadline(deadline, overrun):
      from autograder.grader import _registry

      a = _registry.load_assignment(aid)
      path, chosen, found = choose(root / "submission", a.functions)
      if path is None:
        finish(
          gs_message(
            "No gradable file",
            f"No .py or .ipynb file to grade in your submission ({_found_text(found)}"
            f"). Submit your {aid}.ipynb or {aid}.py.",
          )
        )
        return 0
      report = _runner.grade_submission(aid, path, denied_extra=[str(src), str(results.parent)]).as_dict()
      res = _report.gradescope(report)
      res["output"] = "\n".join([chosen + ".", *report.get("notes", []), f"isolation: {report['isolation']}"])
      print(
        f"{aid}: {chosen}: {report['score']:g}/{report['max_score']:g}; isolation: {report['isolation']}; "
        f"grader at {pathlib.Path(__file__).resolve().parents[1]}"
      )
      finish(res)
      return 0
  except Exception:  # noqa: BLE001  (the grader's own failure: say so, score 0, details for the instructor)
    traceback.print_exc()
    finish(
      gs_message(
        "The autograder failed on this submission",
        "The autograder itself failed while grading this submission (not necessarily your code's "
        "fault): your score is 0 for now. Your instructor can see the details and regrade.",
      )
    )
    return 0


# ---------------------------------------------------------------- PrairieLearn


def pl_result(report: dict | None, *, gradable: bool = True, message: str = "", format_errors=()) -> dict:
  """PrairieLearn's results.json from a grader report: score in [0, 1], tests with points, at most 1 MB."""
  tests = []
  if report is not None:
    for t in report["tests"]:
      tests.append(
        {
          "name": t["name"],
          "description": ("hidden test" if t["hidden"] else "public test") + f" of {t['function']}",
          "points": t["score"],
          "max_points": t["max_score"],
          "message": t["status"],
          "output": t["output"] or "",
        }
      )
  score = 0.0
  if report is not None and report["max_score"]:
    score = min(max(report["score"] / report["max_score"], 0.0), 1.0)
  res = {"gradable": bool(gradable), "score": round(score, 6), "message": message, "output": "", "tests": tests}
  if not gradable:
    res["score"] = 0.0
    res["format_errors"] = list(format_errors) or [message]
  cap = 4000
  while len(json.dumps(res).encode()) > PL_MAX_BYTES and cap > 0:  # cut the longest outputs until it fits
    cap //= 2
    for t in res["tests"]:
      if len(t["output"]) > cap:
        t["output"] = t["output"][:cap] + " ... (cut)"
    res["message"] = res["message"][: max(cap, 200)]
    if cap == 0:
      res["tests"] = res["tests"][:200]
  return res


def _cannot_compile(report: dict, entry: pathlib.Path | None) -> list[str]:
  """The syntax errors that made a .py submission ungradable (a notebook keeps its other cells)."""
  notes = report.get("notes", [])
  errs = [n for n in notes if n.lower().startswith(("syntax error", "this file cannot be compiled"))]
  if errs and entry is not None and entry.suffix == ".py":
    return errs
  return []


def prairielearn(root: pathlib.Path) -> int:
  """Grade ``root/student`` for the assignment in ``root/tests/bundle.json``; write ``root/results/results.json``."""
  from autograder.grader import _registry, _runner
  from autograder.worker import _submission

  tests_dir, results = root / "tests", root / "results" / "results.json"
  cfg = json.loads((tests_dir / "bundle.json").read_text())
  aid, deadline = cfg["assignment"], float(os.environ.get("AUTOGRADER_DEADLINE", str(cfg.get("deadline_s", 540))))
  os.environ.setdefault("AUTOGRADER_ASSIGNMENTS", str(tests_dir / "assignments"))

  def overrun():
    _write_atomic(
      results,
      pl_result(
        None, message=f"Grading stopped after {deadline:g} s before it finished; ask your instructor to regrade."
      ),
    )
    os._exit(0)

  try:
    with _Deadline(deadline, overrun):
      a = _registry.load_assignment(aid)
      path, chosen, found = choose(root / "student", a.functions)
      if path is None:
        msg = f"No .py or .ipynb file to grade ({_found_text(found)})."
        _write_atomic(results, pl_result(None, gradable=False, message=msg))
        return 0
      denied = [str(tests_dir), str(results.parent), str(root / "serverFilesCourse"), str(root / "data")]
      report = _runner.grade_submission(aid, path, denied_extra=denied).as_dict()
      entry = path if path.is_file() else None
      if entry is None:
        try:
          entry = _submission.find_entry(path, a.functions)
        except Exception:  # noqa: BLE001
          entry = None
      errs = _cannot_compile(report, entry)
      msg = "\n".join([chosen + ".", *report.get("notes", []), f"isolation: {report['isolation']}"])
      res = pl_result(report, gradable=not errs, message=msg, format_errors=errs)
      _write_atomic(results, res)
      print(f"{aid}: {chosen}: {report['score']:g}/{report['max_score']:g}; isolation: {report['isolation']}")
      return 0
  except Exception:  # noqa: BLE001
    traceback.print_exc()
    _write_atomic(
      results,
      pl_result(
        None,
        message="The autograder itself failed on this submission (not "
        "necessarily your code's fault); ask your instructor to regrade.",
      ),
    )
    return 0


def main(argv=None) -> int:
  """``python -m autograder.platforms._adapters gradescope|prairielearn ROOT``: grade and write the results file."""
  argv = sys.argv[1:] if argv is None else argv
  if len(argv) != 2 or argv[0] not in ("gradescope", "prairielearn"):
    print("usage: python -m autograder.platforms._adapters gradescope|prairielearn ROOT", file=sys.stderr)
    return 2
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  root = pathlib.Path(argv[1]).resolve()
  return gradescope(root) if argv[0] == "gradescope" else prairielearn(root)


if __name__ == "__main__":
  sys.exit(main())
