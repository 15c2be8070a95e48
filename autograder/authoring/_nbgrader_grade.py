"""The nbgrader preprocessor that grades a notebook outside the student's kernel.

``nbgrader autograde`` normally runs the whole notebook in a Jupyter kernel and
scores each test cell by what it shows. That kernel runs the student's code
first, and code there can replace anything a test cell relies on (the grading
function, ``print``, IPython's display of the cell's value), so a score read
from that kernel can be faked. ``release --nbgrader`` therefore puts
:class:`IsolatedGrade` in place of nbgrader's ``Execute`` in
``c.Autograde.autograde_preprocessors``:

1. after nbgrader's sanitising pass (locked cells and hidden tests restored
   from the gradebook), the notebook is graded by the standalone grader
   (:func:`autograder.grader._runner.grade_submission`): the student's code cells run
   in an isolated worker process, the tests (public and hidden) in this
   trusted process; the test cells' own code is never run;
2. each autograded test cell gets the outputs a kernel would have given it:
   the per-check lines on stdout and the points earned as its value
   (``execute_result``), which nbgrader's ``determine_grade`` takes as partial
   credit. ``SaveAutoGrades``, ``generate_feedback`` and ``export`` run
   unchanged after it.

Student cells keep no outputs (nbgrader's ``ClearOutput`` has removed them and
nothing here runs them). A notebook the grader cannot read scores 0 with the
reason in its first test cell; a failure of the grader itself raises, so
nbgrader reports that student and goes on with the batch.
"""

from __future__ import annotations

import pathlib
import re
import tempfile
from typing import cast

import nbformat
from nbgrader.preprocessors.base import NbGraderPreprocessor
from traitlets import Float

_CALL = re.compile(r"""grade\(\s*["']([A-Za-z0-9_-]+)["']\s*,\s*["']([A-Za-z0-9_]+)["']""")


def _is_autograded_test(cell) -> bool:
  nbg = cell.metadata.get("nbgrader", {})
  return cell.cell_type == "code" and bool(nbg.get("grade")) and not nbg.get("solution")


def cell_function(cell, functions) -> str | None:
  """The graded function a test cell scores: ``test_<fn>`` grade id, else its ``grade("ID", "fn", ...)`` call."""
  gid = cell.metadata.get("nbgrader", {}).get("grade_id", "")
  if gid.startswith("test_") and gid[5:] in functions:
    return gid[5:]
  m = _CALL.search(cell.source)
  return m.group(2) if m and m.group(2) in functions else None


def _assignment_id(nb, resources) -> str:
  from autograder.grader import _registry

  aid = (resources.get("nbgrader") or {}).get("assignment") or ""
  if aid:
    try:
      return _registry.resolve_id(aid)
    except ValueError:
      pass
  for cell in nb.cells:  # test cells are locked: nbgrader has restored them from the gradebook
    if _is_autograded_test(cell):
      m = _CALL.search(cell.source)
      if m:
        return m.group(1)
  raise ValueError(
    f"cannot tell which assignment this notebook is (nbgrader assignment {aid!r} is not an "
    'autograder id and no test cell calls grade("ID", ...)).'
  )


def check_lines(tests) -> list[str]:
  """The per-check lines of ``autograder check`` for a report's tests (``  [PASS] name  1/1``, feedback under it)."""
  from autograder.grader import _report

  return _report.check_lines([t.as_dict() for t in tests], 100)


def write_cell_outputs(nb, report, functions) -> dict[str, float]:
  """Give every autograded test cell of ``nb`` the outputs a kernel would; return {grade_id: score}."""
  by_fn: dict[str, list] = {}
  for t in report.tests:
    by_fn.setdefault(t.function, []).append(t)
  notes_left = list(report.notes)
  scores, count = {}, 0
  for cell in nb.cells:
    if not _is_autograded_test(cell):
      continue
    count += 1
    nbg = cell.metadata["nbgrader"]
    fn = cell_function(cell, functions)
    tests = by_fn.get(fn, []) if fn else []
    cap = float(nbg.get("points") or 0.0)
    score = min(round(sum(t.score for t in tests), 6), cap)
    if fn is None:
      text = (
        "No autograder tests belong to this cell (its grade_id is not test_<function> and it calls no "
        'grade("ID", "function", ...)); it scores 0.\n'
      )
      score = 0.0
    else:
      text = (
        "\n".join(check_lines(tests)) + f"\n{fn}: {score:g}/{cap:g} points (public and hidden tests, graded "
        "outside the notebook's kernel)\n"
      )
    if notes_left:
      text += "About the whole notebook:\n" + "\n".join("  " + n for n in notes_left) + "\n"
      notes_left = []
    cell.outputs = [
      nbformat.v4.new_output("stream", name="stdout", text=text),
      nbformat.v4.new_output("execute_result", data={"text/plain": repr(float(score))}, execution_count=count),
    ]
    cell.execution_count = count
    scores[nbg.get("grade_id", f"cell{count}")] = score
  return scores


class IsolatedGrade(NbGraderPreprocessor):
  """Replaces nbgrader's ``Execute``: grade with the isolated standalone grader, write the test cells' outputs."""

  timeout = Float(0.0, help="Seconds per call into the submission (0: the assignment's own limit).").tag(config=True)

  def preprocess(self, nb, resources):
    """Grade ``nb`` with the isolated grader (outputs stripped, hidden tests in); write the scores into its cells."""
    from autograder.grader import _registry, _runner

    aid = _assignment_id(nb, resources)
    a = _registry.load_assignment(aid)
    student = (resources.get("nbgrader") or {}).get("student") or "student"
    clean = cast(nbformat.NotebookNode, nbformat.from_dict(nb))  # a copy without outputs: only code is graded
    for cell in clean.cells:
      if cell.cell_type == "code":
        cell.outputs, cell.execution_count = [], None
    with tempfile.TemporaryDirectory(prefix="autograder-nbgrader-") as tmp:
      path = pathlib.Path(tmp) / f"{student}.ipynb"
      nbformat.write(clean, str(path))
      try:
        report = _runner.grade_submission(aid, path, hidden=True, timeout=self.timeout or None)
      except Exception:  # noqa: BLE001  (the grader's own failure: try once more, then let nbgrader report it)
        self.log.warning("autograder: grading %s failed once; trying again", student)
        report = _runner.grade_submission(aid, path, hidden=True, timeout=self.timeout or None)
    scores = write_cell_outputs(nb, report, a.functions)
    self.log.info(
      "autograder: %s scored %g/%g outside the kernel (%s)",
      student,
      report.score,
      report.max_score,
      ", ".join(f"{k} {v:g}" for k, v in scores.items()),
    )
    return nb, resources
