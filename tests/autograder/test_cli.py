"""The `autograder` CLI and the pytest plugin, run as a user would (subprocesses)."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from autograder import load_assignment
from autograder.authoring import _authoring

REPO = pathlib.Path(__file__).resolve().parents[2]


def _run(*args, timeout=600):
  return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                        cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu"))


def test_list_names_assignment_01():
  r = _run("-m", "autograder.cli", "list")
  assert r.returncode == 0 and r.stdout.splitlines()[0].startswith("01  relu, sigmoid, tanh, softmax")


def test_unknown_assignment_is_one_clear_line(tmp_path):
  (tmp_path / "x.py").write_text("x = 1\n")
  r = _run("-m", "autograder.cli", "grade", "99", tmp_path / "x.py")
  assert r.returncode == 2 and "no assignment '99'" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_pytest_plugin_records_points(tmp_path):
  a = load_assignment("01")
  src = _authoring.module_source(a.source, solved=True, assignment_id="01")
  sub = tmp_path / "relu_wrong.py"
  sub.write_text(src.replace("return jnp.maximum(x, jnp.zeros((), x.dtype))", "return jnp.abs(x)"))
  out = tmp_path / "records.json"
  r = _run("-m", "pytest", "-p", "autograder.pytest_plugin", "assignments/01/tests.py", "--submission", sub,
           "--grade-json", out, "-q", "-k", "relu or tanh", "-p", "no:cacheprovider")
  assert r.returncode == 1, r.stdout[-2000:]          # relu's tests fail
  assert "autograder: 2/6 points" in r.stdout
  d = json.loads(out.read_text())
  assert d["score"] == 2 and d["max_score"] == 6
  assert {t["function"] for t in d["tests"] if t["status"] == "failed"} == {"relu"}


def test_list_reads_ids_without_importing_jax():
  code = ("import sys; from autograder import cli; rc = cli.main(['list']); "
          "assert 'jax' not in sys.modules and 'numpy' not in sys.modules, sorted(sys.modules); sys.exit(rc)")
  r = _run("-c", code)
  assert r.returncode == 0, r.stderr[-2000:]
  lines = r.stdout.splitlines()
  assert lines[0] == "01  relu, sigmoid, tanh, softmax, init_dense, dense  (25 points)"
  assert [ln.split()[0] for ln in lines] == [f"{i:02d}" for i in range(1, 11)]


def test_a_reader_that_leaves_early_gets_no_traceback():
  """`autograder list | head -0`: output into a pipe nobody reads ends quietly, with a failing status."""
  r_fd, w_fd = os.pipe()
  os.close(r_fd)  # the reader is gone before the first line is written
  try:
    p = subprocess.run([sys.executable, "-m", "autograder.cli", "list"], stdout=w_fd, stderr=subprocess.PIPE,
                       text=True, cwd=REPO, timeout=120)
  finally:
    os.close(w_fd)
  assert p.returncode == 1 and p.stderr == "", p.stderr[-2000:]


def test_list_says_where_it_looks_when_nothing_is_there(tmp_path):
  r = subprocess.run([sys.executable, "-m", "autograder.cli", "list"], capture_output=True, text=True, cwd=tmp_path,
                     env=dict(os.environ, AUTOGRADER_ASSIGNMENTS=str(tmp_path / "none")))
  assert r.returncode == 2 and r.stdout == ""
  assert str(tmp_path / "none") in r.stderr and "AUTOGRADER_ASSIGNMENTS" in r.stderr and len(r.stderr.splitlines()) == 1


@pytest.mark.parametrize("args,said", [
    (["check", "01", "missing.py"], "missing.py: no such file or folder"),
    (["grade", "01", "notes.txt"], "a submission is a .py or .ipynb file"),
    (["check", "01", "broken.ipynb"], "broken.ipynb is not a readable notebook"),
    (["grade", "99", "solved.py"], "no assignment '99'"),
    (["check", "1", "solved.py", "--only", "nope"], "has no function(s) nope"),
    (["check", "01"], "no 01.py or 01.ipynb in"),
])
def test_bad_input_is_exit_2_with_one_line(tmp_path, monkeypatch, capsys, args, said):
  from autograder import cli
  (tmp_path / "notes.txt").write_text("hello\n")
  (tmp_path / "broken.ipynb").write_text('{"cells": [ not json')
  (tmp_path / "solved.py").write_text("x = 1\n")
  monkeypatch.chdir(tmp_path)
  assert cli.main(args) == 2
  out, err = capsys.readouterr()
  assert out == "" and len(err.strip().splitlines()) == 1 and said in err, err


@pytest.mark.parametrize("cmd", ["check", "grade"])
def test_help_documents_exit_codes(cmd, capsys):
  from autograder import cli
  with pytest.raises(SystemExit):
    cli.main([cmd, "--help"])
  text = capsys.readouterr().out
  assert "0  every test passed" in text and "1  some test failed" in text and "2  bad input" in text


@pytest.mark.slow
def test_check_names_the_file_and_exit_status(tmp_path, monkeypatch, capsys):
  """A solved 01.py beside the untouched 01.ipynb: the newer one is checked, and the output says so."""
  from autograder import cli
  a = load_assignment("01")
  cli.release_student("01", tmp_path)
  (tmp_path / "01.py").write_text(_authoring.module_source(a.source, solved=True, assignment_id="01"))
  os.utime(tmp_path / "01.ipynb", (1e9, 1e9))          # the notebook is older: the .py is checked
  monkeypatch.chdir(tmp_path)
  public = {f: sum(t.points for t in a.tests if t.function == f and not t.hidden) for f in ("relu", "tanh")}
  assert cli.main(["check", "1", "--only", "relu", "tanh"]) == 0      # '1' is '01'
  out = capsys.readouterr().out
  assert "both 01.py and 01.ipynb" in out and "the more recently modified one is checked" in out
  total = public["relu"] + public["tanh"]
  assert f"checking {tmp_path / '01.py'}" in out and f"Total: {total:g}/{total:g}" in out and "sigmoid" not in out
  os.utime(tmp_path / "01.ipynb")                         # now the untouched notebook is newer
  assert cli.main(["check", "01", str(tmp_path), "--only", "relu"]) == 1
  out = capsys.readouterr().out
  assert "checking 01.ipynb" in out and f"checking {tmp_path / '01.ipynb'}" in out and f"Total: 0/{public['relu']:g}" in out
  assert cli.main(["grade", "01", str(tmp_path / "01.py"), "--only", "relu,tanh"]) == 0
  assert f"grading {tmp_path / '01.py'} with the public and hidden tests of 01" in capsys.readouterr().out


def test_release_nbgrader_config_keeps_instructor_lines(tmp_path):
  from autograder.authoring import _nbgrader
  mine = "c = get_config()\n# course settings\nc.Execute.timeout = 300\nc.Exchange.root = '/srv/ex'\n" \
         "c.Autograde.exclude_overwriting = {'01': ['data.csv']}\n"
  text, changes = _nbgrader.merge_config(mine, tmp_path, ["01"])
  assert text.startswith(mine)                                   # every instructor line kept, in place
  assert "kept your c.Execute.timeout" in changes
  assert any(c.startswith("added c.Autograde.autograde_preprocessors") for c in changes)
  assert "c.Autograde.exclude_overwriting = {'01': ['01.py', 'data.csv']}" in text     # merged, not replaced
  assert text.count("c.Execute.timeout") == 1 and "IsolatedGrade" in text
  again, changes2 = _nbgrader.merge_config(text, tmp_path, ["01", "02"])
  assert again.startswith(mine) and again.count(_nbgrader.BEGIN) == 1
  assert [c for c in changes2 if c.startswith("changed")] == [
      "changed c.Autograde.exclude_overwriting: {'01': ['01.py', 'data.csv']} -> "
      "{'01': ['01.py', 'data.csv'], '02': ['02.py']} (your entries merged in)"]
  cfg = {}
  exec(compile(again, "nbgrader_config.py", "exec"), {"get_config": lambda: cfg.setdefault("c", _Cfg())})  # noqa: S102
  assert cfg["c"].Execute.timeout == 300 and cfg["c"].Exchange.root == "/srv/ex"


class _Cfg:
  """Enough of traitlets' Config for the test: ``c.Section.name = value``."""

  def __getattr__(self, name):
    self.__dict__[name] = sec = type("Section", (), {})()
    return sec


def test_a_worker_that_cannot_start_is_the_graders_failure_not_the_students(tmp_path, monkeypatch, capsys):
  """A worker that dies before any submission code runs (here: an interpreter that cannot import JAX) stops
  grading with exit 2 and says whose fault it is, instead of giving a correct submission 0."""
  from autograder import cli
  from autograder.grader import _runner
  from autograder._errors import GraderBroken
  a = load_assignment("01")
  sub = tmp_path / "01.py"
  sub.write_text(_authoring.module_source(a.source, solved=True, assignment_id="01"))
  broken = tmp_path / "python3"
  broken.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'jax'\" >&2\nexit 1\n")
  broken.chmod(0o755)
  monkeypatch.setattr(sys, "executable", str(broken))     # the interpreter the worker is started with
  with pytest.raises(GraderBroken, match="before any submission code ran"):
    _runner.grade_submission("01", sub, functions=["relu"])
  assert cli.main(["grade", "01", str(sub), "--only", "relu"]) == 2
  err = capsys.readouterr().err
  assert "grading worker could not start" in err and "nothing was graded" in err and len(err.splitlines()) == 1
