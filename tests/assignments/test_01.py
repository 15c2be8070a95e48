"""Assignment 01 end to end: reference 100 %, blank 0 %, exactly one wrong function loses exactly
its points — standalone (the `autograder` CLI, isolated worker) and through a real nbgrader course
(release --nbgrader, generate_assignment, three students, autograde, gradebook)."""
import json
import os
import pathlib
import subprocess
import sys
import time

import nbformat
import pytest

from autograder import load_assignment
from autograder.authoring import _authoring, _nbgrader

REPO = pathlib.Path(__file__).resolve().parents[2]
A = load_assignment("01")


def _cli(*args, timeout=600, rc=0):
  r = subprocess.run([sys.executable, "-m", "autograder.cli", *map(str, args)], capture_output=True, text=True,
                     timeout=timeout, cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert r.returncode == rc, r.stderr[-3000:]
  return r


def _only_relu_wrong(src: str) -> str:
  return src.replace("return jnp.maximum(x, jnp.zeros((), x.dtype))", "return jnp.abs(x)")


def test_points_per_function():
  assert {f: A.points_for(f) for f in A.functions} == {
      "relu": 4, "sigmoid": 4, "tanh": 2, "softmax": 6, "init_dense": 5, "dense": 4}
  assert A.max_score == 25
  for f in A.functions:   # every function has public and hidden tests
    assert A.tests_for(f, hidden=False) and A.tests_for(f, hidden=True)


def test_release_out_writes_student_files(tmp_path):
  _cli("release", "01", "--out", tmp_path)
  nb = nbformat.read(str(tmp_path / "01.ipynb"), 4)
  text = "\n".join(c.source for c in nb.cells)
  assert "BEGIN SOLUTION" not in text and "hidden=True" not in text
  assert text.count("raise NotImplementedError") == 6
  stub = (tmp_path / "01.py").read_text()
  compile(stub, "01.py", "exec")
  assert stub.count("raise NotImplementedError") == 6


@pytest.mark.slow
def test_standalone_reference_blank_and_one_wrong(tmp_path):
  subs = tmp_path / "subs"
  subs.mkdir()
  ref = _authoring.module_source(A.source, solved=True, assignment_id="01")
  (subs / "reference.py").write_text(ref)
  (subs / "blank.py").write_text(_authoring.module_source(A.source, solved=False, assignment_id="01"))
  (subs / "relu_wrong.py").write_text(_only_relu_wrong(ref))
  t0 = time.monotonic()
  r = _cli("grade", "01", subs / "reference.py", "--format", "json")
  cold = time.monotonic() - t0
  assert json.loads(r.stdout)["score"] == 25
  print(f"autograder grade 01 reference.py: {cold:.1f} s wall (cold, this machine)")
  blank = json.loads(_cli("grade", "01", subs / "blank.py", "--format", "json", rc=1).stdout)
  assert blank["score"] == 0 and blank["max_score"] == 25
  assert all("not implemented yet" in t["output"] for t in blank["tests"])
  _cli("grade", "01", subs / "relu_wrong.py", "--format", "gradescope", "--out", tmp_path / "results.json", rc=1)
  gs = json.loads((tmp_path / "results.json").read_text())
  assert gs["score"] == 25 - 4
  lost = [t for t in gs["tests"] if t["score"] < t["max_score"]]
  assert {t["name"].split(":")[0] for t in lost} == {"relu"} and len(lost) == 4
  assert all("relu" in t["output"] for t in lost)
  text = _cli("grade", "01", subs / "relu_wrong.py", rc=1).stdout
  assert f"grading {subs / 'relu_wrong.py'}" in text
  assert "relu  0/4" in text and "Total: 21/25" in text
  check = _cli("check", "01", subs / "relu_wrong.py", rc=1).stdout
  assert "hidden tests also count" in check and "(hidden)" not in check


@pytest.mark.slow
def test_folder_submission_with_a_helper_module(tmp_path):
  folder = tmp_path / "bob"
  folder.mkdir()
  (folder / "helpers.py").write_text("import jax.numpy as jnp\ndef clip_at_zero(x):\n  return jnp.maximum(x, 0.0)\n")
  stub = _authoring.module_source(A.source, solved=False, assignment_id="01")
  stub += "\n\nfrom helpers import clip_at_zero\n\n\ndef relu(x):\n  return clip_at_zero(x)\n"
  (folder / "work.py").write_text(stub)
  rep = json.loads(_cli("grade", "01", folder, "--format", "json", "--only", "relu,tanh",
                        rc=1).stdout)
  assert rep["submission"] == "bob" and rep["score"] == 4 and rep["max_score"] == 6


@pytest.mark.slow
def test_validate_standalone():
  r = _cli("validate", "01", "--no-nbgrader")
  assert "01: valid" in r.stdout


def _solve_only(released: nbformat.NotebookNode, source: nbformat.NotebookNode, function: str):
  sol = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in source.cells}
  for c in released.cells:
    if c.metadata.get("nbgrader", {}).get("grade_id") == function:
      c.source = _authoring.solution_source(sol[function])
  return released


FAKE_GRADE = """import autograder.notebook as n
def _fake(aid, fn, ns, hidden=False, verbose=True):
  print(fn + ": 4/4 points from public tests")
  return 4.0
n.grade = _fake
"""
SILENT = """import builtins
get_ipython().ast_node_interactivity = "none"
builtins.print = lambda *a, **k: None
"""


def _with_cell_prefix(nb: nbformat.NotebookNode, grade_id: str, prefix: str) -> nbformat.NotebookNode:
  for c in nb.cells:
    if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
      c.source = prefix + c.source
  return nb


@pytest.mark.slow
def test_nbgrader_end_to_end(tmp_path):
  """One course, six students, graded by nbgrader autograde with the isolated grader in place of Execute."""
  course = tmp_path / "course"
  course.mkdir()
  (course / "nbgrader_config.py").write_text("c = get_config()\n# my own settings\nc.Execute.timeout = 300\n")
  out = _cli("release", "01", "--nbgrader", course).stdout
  config = (course / "nbgrader_config.py").read_text()
  assert config.startswith("c = get_config()\n# my own settings\nc.Execute.timeout = 300\n")   # instructor's lines kept
  assert config.count("c.Execute.timeout") == 1 and "kept your c.Execute.timeout" in out
  assert "added c.Autograde.autograde_preprocessors" in out and "IsolatedGrade" in config
  assert "c.ClearSolutions.code_stub" in config and "c.Autograde.exclude_overwriting" in config
  released_path = _nbgrader.generate(course, "01")
  released_text = released_path.read_text()
  assert "BEGIN HIDDEN TESTS" not in released_text and "hidden=True" not in released_text
  assert "BEGIN SOLUTION" not in released_text
  source = nbformat.read(str(course / "source" / "01" / "01.ipynb"), 4)
  assert "hidden=True" in json.dumps(source)
  # alice: the instructor's solution; bob: the release untouched; carol: only relu solved (she also edited
  # sigmoid's test cell to claim full marks); mallory: replaces the notebook's grade() from her relu cell;
  # eve: hides every test cell's value and output; zed: a notebook nbgrader cannot parse.
  only_relu = _solve_only(nbformat.read(str(released_path), 4), source, "relu")
  for c in only_relu.cells:
    if c.metadata.get("nbgrader", {}).get("grade_id") == "test_sigmoid":
      c.source = "4.0"
  students = {
      "alice": source, "bob": nbformat.read(str(released_path), 4), "carol": only_relu,
      "mallory": _with_cell_prefix(nbformat.read(str(released_path), 4), "relu", FAKE_GRADE),
      "eve": _with_cell_prefix(nbformat.read(str(released_path), 4), "relu", SILENT)}
  for name, nb in students.items():
    nbformat.write(nb, str(tmp_path / f"{name}.ipynb"))
    _nbgrader.submit(course, "01", name, tmp_path / f"{name}.ipynb")
  (tmp_path / "zed.ipynb").write_text('{"cells": [ not json')
  _nbgrader.submit(course, "01", "zed", tmp_path / "zed.ipynb")
  t0 = time.monotonic()
  scores, failed, log = _nbgrader.autograde_batch(course, "01")
  dt = time.monotonic() - t0
  print(f"nbgrader autograde, 6 students: {dt:.1f} s ({dt / 6:.1f} s per student, this machine)")
  assert failed == ["zed"], log[-3000:]                        # reported, and the batch went on
  assert {k: v for k, v in scores.items() if k != "zed"} == {
      "alice": (25.0, 25.0), "bob": (0.0, 25.0), "carol": (4.0, 25.0), "mallory": (0.0, 25.0), "eve": (0.0, 25.0)}
  cells = _nbgrader.cell_scores(course, "01", "carol")
  assert cells["test_relu"] == 4.0 and cells["test_sigmoid"] == 0.0
  graded = nbformat.read(str(course / "autograded" / "carol" / "01" / "01.ipynb"), 4)
  by_id = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in graded.cells}
  assert "hidden=True" in by_id["test_relu"].source           # hidden tests restored and run
  assert 'grade("01", "sigmoid", globals())' in by_id["test_sigmoid"].source   # edited test cell restored
  outs = [o for o in by_id["test_relu"].outputs if o.get("output_type") == "stream"]
  assert outs and all(o["name"] == "stdout" for o in outs)     # nothing on stderr
  relu_text = "".join(o["text"] for o in outs)
  assert "graded outside the notebook's kernel" in relu_text and "(hidden)" in relu_text
  assert all(not c.get("outputs") for c in graded.cells if c.cell_type == "code"
             and not c.metadata.get("nbgrader", {}).get("grade"))   # student cells: no outputs, nothing ran there
  _nbgrader.feedback(course, "01")
  html = (course / "feedback" / "carol" / "01" / "01.html").read_text()
  assert "  [PASS] relu: matches max(x, 0) on a random vector  1/1" in html   # the lines of `autograder check`
  assert "[FAIL] sigmoid:" in html
