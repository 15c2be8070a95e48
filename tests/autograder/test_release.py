"""Student releases: public tests only, self-contained, usable from a wheel install with no checkout."""
import ast
import inspect
import json
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import textwrap

import pytest

from autograder import load_assignment
from autograder.authoring import _authoring
from autograder.grader import _registry
from autograder.cli import release_student

REPO = pathlib.Path(__file__).resolve().parents[2]


def _hidden_marks(aid: str) -> list[tuple[str, str]]:
  """(what, text) that must not appear in a release: each hidden test's key, name and re-printed code."""
  a = load_assignment(aid)
  out = []
  for t in a.tests_for(hidden=True):
    fn = ast.parse(textwrap.dedent(inspect.getsource(t.fn))).body[0]
    fn.decorator_list, fn.body = [], fn.body[1:] or fn.body                  # without the docstring
    body = ast.unparse(fn).split("\n", 1)[1]                                  # indented as in a module
    out += [("key", t.key), ("name", t.name), ("code", body)]
  return out


def _leaks(folder: pathlib.Path, aid: str) -> list[str]:
  found = []
  for p in folder.rglob("*"):
    if p.is_file():
      text = p.read_bytes().decode("latin-1")
      if p.suffix == ".py":                       # code is compared as the syntax tree prints it
        text += "\n" + ast.unparse(ast.parse(p.read_text()))
      found += [f"{p.name}: hidden test {what} {s[:60]!r}" for what, s in _hidden_marks(aid) if s in text]
  return found


@pytest.mark.parametrize("aid", [f"{i:02d}" for i in range(1, 11)])
def test_release_has_public_tests_and_data_but_no_hidden_test(tmp_path, aid):
  a = load_assignment(aid)
  release_student(aid, tmp_path)
  public = tmp_path / _registry.RELEASE_DIR / aid / "tests.py"
  compile(public.read_text(), str(public), "exec")
  text = a.source.read_text()
  for p in a.path.iterdir():                     # every data file the text names is next to the notebook
    if p.name not in ("assignment.py", "tests.py") and p.is_file() and p.name in text:
      assert (tmp_path / p.name).read_bytes() == p.read_bytes(), p.name
  assert not _leaks(tmp_path, aid)
  m = _registry.manifest(aid)
  assert m["public_points"] == a.points_for(hidden=False) and m["points"] == a.max_score


def test_release_finds_the_data_files_of_07_09_10():
  names = {aid: {k: [p.name for p in v] for k, v in _authoring.data_files(load_assignment(aid)).items()}
           for aid in ("07", "09", "10")}
  assert names["07"] == {"text": ["record_fixtures.py"], "tests": ["fixtures.npz"]}
  assert names["10"] == {"text": ["fixtures.npz", "record_fixtures.py"], "tests": ["fixtures.npz"]}
  assert "backbone.npz" in names["09"]["text"] and names["09"]["tests"] == ["backbone.npz"]


def test_the_leak_scan_can_fail(tmp_path):
  a = load_assignment("01")
  shutil.copyfile(a.path / "tests.py", tmp_path / "tests.py")
  assert len(_leaks(tmp_path, "01")) == 3 * len(a.tests_for(hidden=True))


@pytest.mark.slow
def test_wheel_install_release_and_check_without_a_checkout(tmp_path):
  """Build the wheel, install it in a fresh venv, release 01, check a solved stub there: no checkout reachable."""
  src = tmp_path / "src"
  src.mkdir()
  for name in ("dlfunc", "autograder", "pyproject.toml", "README.md"):
    (shutil.copytree if (REPO / name).is_dir() else shutil.copyfile)(REPO / name, src / name)
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AUTOGRADER_ASSIGNMENTS")}
  env["JAX_PLATFORMS"] = "cpu"
  run = lambda *a, **k: subprocess.run([str(x) for x in a], capture_output=True, text=True, env=env,  # noqa: E731
                                       timeout=600, **k)
  r = run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp_path / "dist", src)
  assert r.returncode == 0, r.stderr[-3000:]
  wheel = next((tmp_path / "dist").glob("dlfunc-*.whl"))
  venv = tmp_path / "venv"
  r = run(sys.executable, "-m", "venv", "--without-pip", venv)
  assert r.returncode == 0, r.stderr[-2000:]
  py = venv / "bin" / "python"
  inner = pathlib.Path(run(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
  # Dependencies (JAX, ...) from this environment's site-packages, without its .pth files (the editable install).
  (inner / "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
  r = run(sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps", wheel)
  assert r.returncode == 0, r.stderr[-3000:]
  where = run(py, "-c", "import autograder, dlfunc; print(autograder.__file__); print(dlfunc.__file__)",
              cwd=tmp_path).stdout.split()
  assert where and all(pathlib.Path(w).is_relative_to(inner) for w in where), where
  ag = venv / "bin" / "autograder"
  r = run(ag, "list", cwd=tmp_path)                   # a wheel carries no assignments: it says where it looked
  assert r.returncode == 2 and "AUTOGRADER_ASSIGNMENTS" in r.stderr and "public_tests" in r.stderr
  rel = tmp_path / "release"
  release_student("01", rel)                          # the instructor's side, from the checkout
  a = load_assignment("01")
  (rel / "01.py").write_text(_authoring.module_source(a.source, solved=True, assignment_id="01"))
  r = run(ag, "list", cwd=rel)
  assert r.returncode == 0 and r.stdout.startswith("01  relu, sigmoid"), r.stderr
  r = run(ag, "check", "01", cwd=rel)
  pub = a.points_for(hidden=False)
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
  assert f"Total: {pub:g}/{pub:g}" in r.stdout
  assert f"against the public tests of 01 ({rel / 'public_tests' / '01' / 'tests.py'})" in r.stdout
  # The notebook's test cells, run in the release folder on the solved functions (as a kernel would).
  nb = json.loads((rel / "01.ipynb").read_text())
  tests = [c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade")]
  code = ("import json, sys\nns = {}\nexec(open('01.py').read(), ns)\nout = []\n"
          "for src in json.load(sys.stdin):\n  exec(src, ns)\n  out.append(ns['score'])\nprint(json.dumps(out))\n")
  r = run(py, "-c", code, cwd=rel, input=json.dumps(["".join(c["source"]) for c in tests]))
  assert r.returncode == 0, r.stderr[-3000:]
  got = json.loads(r.stdout.strip().splitlines()[-1])
  assert got == [a.points_for(f, hidden=False) for f in a.functions]
  assert not _leaks(rel, "01")
