"""nbgrader glue: write a course's ``source/ID/`` and config, run nbgrader, read the gradebook."""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

from autograder import _authoring, _registry

CELL_TIMEOUT = 120


def config_text(course: pathlib.Path, ids: list[str]) -> str:
  exclude = {i: [f"{i}.py"] for i in ids}
  return f'''# Written by `autograder release ID --nbgrader {course}`; regenerated on every release.
c = get_config()  # noqa: F821
c.CourseDirectory.root = {str(course)!r}
c.CourseDirectory.course_id = "dlfunc"
c.CourseDirectory.db_url = {"sqlite:///" + str(course / "gradebook.db")!r}
# Per-cell time limit (c.ExecutePreprocessor.timeout is ignored by nbgrader 0.9).
c.Execute.timeout = {CELL_TIMEOUT}
# The stub that replaces each ### BEGIN/END SOLUTION region (the cell keeps its "# Hint:" line).
c.ClearSolutions.code_stub = {{"python": {_authoring.NBGRADER_STUB!r}}}
# Never copy the instructor's .py files over a student's (tests would import the solution).
c.Autograde.exclude_overwriting = {exclude!r}
'''


def release(assignment_id: str, course: pathlib.Path) -> pathlib.Path:
  a = _registry.load_assignment(assignment_id)
  course = pathlib.Path(course).resolve()
  nb_path = course / "source" / assignment_id / f"{assignment_id}.ipynb"
  _authoring.write_notebook(_authoring.instructor_notebook(a.source), nb_path)
  ids = sorted(p.name for p in (course / "source").iterdir() if p.is_dir())
  (course / "nbgrader_config.py").write_text(config_text(course, ids))
  return nb_path


def _nbgrader_cmd() -> list[str]:
  exe = pathlib.Path(sys.executable).parent / "nbgrader"
  return [str(exe)] if exe.exists() else [sys.executable, "-m", "nbgrader"]


def run_nbgrader(course: pathlib.Path, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
  env["PATH"] = str(pathlib.Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")  # nbgrader runs alembic
  return subprocess.run(_nbgrader_cmd() + list(args), cwd=course, env=env, capture_output=True, text=True,
                        timeout=timeout)


def generate(course: pathlib.Path, assignment_id: str) -> pathlib.Path:
  r = run_nbgrader(course, "generate_assignment", assignment_id, "--force")
  if r.returncode != 0:
    raise RuntimeError(f"nbgrader generate_assignment {assignment_id} failed:\n{r.stderr[-3000:]}")
  return course / "release" / assignment_id / f"{assignment_id}.ipynb"


def submit(course: pathlib.Path, assignment_id: str, student: str, notebook: pathlib.Path):
  dest = course / "submitted" / student / assignment_id
  dest.mkdir(parents=True, exist_ok=True)
  shutil.copyfile(notebook, dest / f"{assignment_id}.ipynb")
  (dest / "timestamp.txt").write_text("2026-01-01 12:00:00.000000 UTC")


def autograde(course: pathlib.Path, assignment_id: str) -> dict[str, tuple[float, float]]:
  """``nbgrader autograde ID --force``; return {student: (score, max_score)} from the gradebook."""
  r = run_nbgrader(course, "autograde", assignment_id, "--force")
  if r.returncode != 0:
    raise RuntimeError(f"nbgrader autograde {assignment_id} failed:\n{r.stderr[-3000:]}")
  return scores(course, assignment_id)


def scores(course: pathlib.Path, assignment_id: str) -> dict[str, tuple[float, float]]:
  from nbgrader.api import Gradebook
  out = {}
  with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
    for s in gb.assignment_submissions(assignment_id):
      out[s.student_id] = (float(s.score), float(s.max_score))
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
