"""The `autograder` CLI and the pytest plugin, run as a user would (subprocesses)."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from autograder import _authoring, load_assignment

REPO = pathlib.Path(__file__).resolve().parent.parent


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
