"""nbgrader glue: write a course's ``source/ID/`` and config, run nbgrader, read the gradebook."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys

from autograder.authoring import _authoring
from autograder.grader import _registry

CELL_TIMEOUT = 120


BEGIN = "# --- BEGIN autograder: written by `autograder release --nbgrader`; your own lines go outside this block ---"
END = "# --- END autograder ---"
_OLD_HEADER = "# Written by `autograder release ID --nbgrader"
_ASSIGN = re.compile(r"^\s*c\.(\w+)\.(\w+)\s*=(.*)$")
PREPROCESSORS = (
  "autograder.authoring._nbgrader_grade.IsolatedGrade",
  "nbgrader.preprocessors.IgnorePattern",
  "nbconvert.preprocessors.ClearMetadataPreprocessor",
  "nbgrader.preprocessors.LimitOutput",
  "nbgrader.preprocessors.SaveAutoGrades",
  "nbgrader.preprocessors.AssignLatePenalties",
  "nbgrader.preprocessors.CheckCellMetadata",
)


def _settings(course: pathlib.Path, ids: list[str], theirs: dict[str, str]) -> list[tuple[str, str, str, bool]]:
  """(key, value source, comment, hard): hard settings are needed for honest grades and always written."""
  exclude = {i: [f"{i}.py"] for i in ids}
  mine = theirs.get("Autograde.exclude_overwriting")
  if mine is not None:
    try:
      import ast

      for k, v in dict(ast.literal_eval(mine)).items():
        exclude[k] = sorted(set(exclude.get(k, [])) | set(v))
    except (ValueError, SyntaxError, TypeError):
      pass
  pre = "[" + ", ".join(p.rsplit(".", 1)[1] for p in PREPROCESSORS) + "]"
  return [
    ("CourseDirectory.root", repr(str(course)), "", False),
    ("CourseDirectory.course_id", '"dlfunc"', "", False),
    ("CourseDirectory.db_url", repr("sqlite:///" + str(course / "gradebook.db")), "", False),
    (
      "Execute.timeout",
      str(CELL_TIMEOUT),
      "Per-cell limit of `nbgrader validate` (c.ExecutePreprocessor.timeout "
      "is ignored by nbgrader 0.9); autograde does not run a kernel.",
      False,
    ),
    (
      "ClearSolutions.code_stub",
      repr({"python": _authoring.NBGRADER_STUB}),
      'The stub that replaces each ### BEGIN/END SOLUTION region (the cell keeps its "# Hint:" line).',
      False,
    ),
    (
      "Autograde.exclude_overwriting",
      repr(exclude),
      "Never copy the instructor's .py files over a student's (tests would import the solution).",
      True,
    ),
    (
      "Autograde.autograde_preprocessors",
      pre,
      "Grade outside the student's kernel: IsolatedGrade replaces nbgrader's Execute (see README).",
      True,
    ),
  ]


def merge_config(text: str, course: pathlib.Path, ids: list[str]) -> tuple[str, list[str]]:
  """``nbgrader_config.py`` with our block (re)written at its end; every line outside the block is kept.

  A setting the instructor wrote outside the block is left to them, except the
  two that honest grades need (``exclude_overwriting``, merged with theirs, and
  ``autograde_preprocessors``), which the block sets after their line. Returns
  the new text and one line per thing added, changed or overridden.
  """
  lines = text.splitlines()
  if lines and lines[0].startswith(_OLD_HEADER):  # the whole file was written by an older release
    old_block, outside = lines, []
  elif BEGIN in lines and END in lines[lines.index(BEGIN) :]:
    i = lines.index(BEGIN)
    j = lines.index(END, i)
    old_block, outside = lines[i : j + 1], lines[:i] + lines[j + 1 :]
  else:
    old_block, outside = [], lines
  while outside and not outside[-1].strip():
    outside.pop()
  theirs: dict[str, str] = {}
  for ln in outside:
    m = _ASSIGN.match(ln)
    if m:
      theirs[f"{m.group(1)}.{m.group(2)}"] = m.group(3).strip()
  before = {}
  for ln in old_block:
    m = _ASSIGN.match(ln)
    if m:
      before[f"{m.group(1)}.{m.group(2)}"] = m.group(3).strip()
  block = [
    BEGIN,
    "c = get_config()  # noqa: F821",
    "from autograder.authoring._nbgrader_grade import IsolatedGrade  # noqa: E402",
  ]
  for p in PREPROCESSORS[1:]:
    mod, name = p.rsplit(".", 1)
    block.append(f"from {mod} import {name}  # noqa: E402")
  changes = []
  for key, value, comment, hard in _settings(course, ids, theirs):
    if key in theirs and not hard:
      continue  # the instructor's own setting stands
    if comment:
      block.append(f"# {comment}")
    block.append(f"c.{key} = {value}")
    why = ""
    if key in theirs:
      why = (
        " (your entries merged in)"
        if key == "Autograde.exclude_overwriting"
        else f" (it overrides your line `c.{key} = {theirs[key][:40]}`: honest grades need it)"
      )
    if key not in before:
      changes.append(f"added c.{key} = {value[:80]}{why}")
    elif before[key] != value:
      changes.append(f"changed c.{key}: {before[key][:60]} -> {value[:80]}{why}")
  block.append(END)
  kept = [k for k in theirs if k in {s[0] for s in _settings(course, ids, theirs) if not s[3]}]
  if kept:
    changes.append("kept your " + ", ".join(f"c.{k}" for k in kept))
  head = outside + ([""] if outside else [])
  return "\n".join(head + block) + "\n", changes


def release(assignment_id: str, course: pathlib.Path, changes: list[str] | None = None) -> pathlib.Path:
  """Write ``source/ID/ID.ipynb`` and merge ``nbgrader_config.py``; return the notebook.

  What the merge added or changed is appended to ``changes`` when given.
  """
  a = _registry.load_assignment(assignment_id)
  course = pathlib.Path(course).resolve()
  nb_path = course / "source" / a.id / f"{a.id}.ipynb"
  _authoring.write_notebook(_authoring.instructor_notebook(a.source), nb_path)
  ids = sorted(p.name for p in (course / "source").iterdir() if p.is_dir())
  config = course / "nbgrader_config.py"
  text, done = merge_config(config.read_text() if config.exists() else "", course, ids)
  config.write_text(text)
  if changes is not None:
    changes.extend(done)
  return nb_path


def _nbgrader_cmd() -> list[str]:
  exe = pathlib.Path(sys.executable).parent / "nbgrader"
  return [str(exe)] if exe.exists() else [sys.executable, "-m", "nbgrader"]


def run_nbgrader(course: pathlib.Path, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
  """Run ``nbgrader ARGS`` in the course folder on CPU; returns the finished process (output captured, not raised)."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
  env["PATH"] = str(pathlib.Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")  # nbgrader runs alembic
  cmd = _nbgrader_cmd() + list(args)  # nbgrader's command line, built here from our own arguments: S603 waived
  return subprocess.run(cmd, cwd=course, env=env, capture_output=True, text=True, timeout=timeout)  # noqa: S603


def generate(course: pathlib.Path, assignment_id: str) -> pathlib.Path:
  """``nbgrader generate_assignment``: the student notebook under ``release/`` (raises with nbgrader's stderr)."""
  r = run_nbgrader(course, "generate_assignment", assignment_id, "--force")
  if r.returncode != 0:
    raise RuntimeError(f"nbgrader generate_assignment {assignment_id} failed:\n{r.stderr[-3000:]}")
  return course / "release" / assignment_id / f"{assignment_id}.ipynb"


def submit(course: pathlib.Path, assignment_id: str, student: str, notebook: pathlib.Path):
  """Place ``notebook`` as ``student``'s submission (``submitted/STUDENT/ID/``, with a fixed timestamp)."""
  dest = course / "submitted" / student / assignment_id
  dest.mkdir(parents=True, exist_ok=True)
  shutil.copyfile(notebook, dest / f"{assignment_id}.ipynb")
  (dest / "timestamp.txt").write_text("2026-01-01 12:00:00.000000 UTC")


_FAILED = re.compile(r"There was an error processing assignment '([^']*)' for student '([^']*)'")


def autograde(course: pathlib.Path, assignment_id: str) -> dict[str, tuple[float, float]]:
  """``nbgrader autograde ID --force``; return {student: (score, max_score)} from the gradebook."""
  got, failed, log = autograde_batch(course, assignment_id)
  if failed:
    raise RuntimeError(f"nbgrader autograde {assignment_id} failed for {', '.join(failed)}:\n{log[-3000:]}")
  return got


def autograde_batch(course: pathlib.Path, assignment_id: str) -> tuple[dict[str, tuple[float, float]], list[str], str]:
  """``nbgrader autograde ID --force`` over every student; one failing notebook does not stop the others.

  Returns the gradebook's {student: (score, max_score)}, the students nbgrader
  reported as failed (e.g. a notebook it cannot parse) and nbgrader's log.
  """
  r = run_nbgrader(course, "autograde", assignment_id, "--force")
  failed = sorted({m.group(2) for m in _FAILED.finditer(r.stderr)})
  if r.returncode != 0 and not failed:
    raise RuntimeError(f"nbgrader autograde {assignment_id} failed:\n{r.stderr[-3000:]}")
  return scores(course, assignment_id), failed, r.stderr


def feedback(course: pathlib.Path, assignment_id: str) -> None:
  """``nbgrader generate_feedback ID --force`` (HTML under ``feedback/STUDENT/ID/``)."""
  r = run_nbgrader(course, "generate_feedback", assignment_id, "--force")
  if r.returncode != 0:
    raise RuntimeError(f"nbgrader generate_feedback {assignment_id} failed:\n{r.stderr[-3000:]}")


def scores(course: pathlib.Path, assignment_id: str) -> dict[str, tuple[float, float]]:
  """Each student's (score, max score) for the assignment, read from the course's nbgrader gradebook."""
  from nbgrader.api import Gradebook

  out = {}
  with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
    for s in gb.assignment_submissions(assignment_id):
      # score and max_score are SQLAlchemy column properties attached after the class body, where they read None.
      out[s.student_id] = (float(s.score), float(s.max_score))  # pyright: ignore[reportArgumentType]
  return out


def cell_scores(course: pathlib.Path, assignment_id: str, student: str) -> dict[str, float]:
  """{grade_id: score} of one student's autograded notebook."""
  from nbgrader.api import Gradebook

  with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
    nb = gb.find_submission_notebook(assignment_id, assignment_id, student)
    return {g.name: float(g.score) for g in nb.grades}


def validate_through_nbgrader(assignment_id: str, workdir: pathlib.Path) -> dict[str, tuple[float, float]]:
  """Reference and blank notebooks through release -> generate -> autograde; return the gradebook scores."""
  course = pathlib.Path(workdir).resolve() / "course"
  course.mkdir(parents=True, exist_ok=True)
  src = release(assignment_id, course)
  released = generate(course, assignment_id)
  submit(course, assignment_id, "reference", src)
  submit(course, assignment_id, "blank", released)
  return autograde(course, assignment_id)
