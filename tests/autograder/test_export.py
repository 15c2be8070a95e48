"""Gradescope and PrairieLearn contracts, emulated in temp folders (AUTOGRADER_ROOT), on assignment 01.

Gradescope: the zip's shape; setup.sh into a fresh virtual environment (its site-packages sees this environment's
packages through a .pth, minus dlfunc, and pip may not download: PIP_NO_INDEX); run_autograder on the reference,
the blank stub, a hostile submission (one function reads the hidden tests, one writes its own results.json and
exits, one loops forever; the other three are correct), a folder without a gradable file, and two grader
crashes. Every results.json is validated against Gradescope's schema. PrairieLearn: score in [0, 1],
``gradable: false`` on a syntax error, under 1 MB.
"""
import json
import os
import pathlib
import shutil
import stat
import subprocess
import sys
import sysconfig
import time
import zipfile

import jsonschema
import pytest

from autograder.authoring import _authoring
from autograder.platforms import _adapters
from autograder.grader._registry import load_assignment

REPO = pathlib.Path(__file__).resolve().parents[2]
A = load_assignment("01")
REF = _authoring.module_source(A.source, solved=True, assignment_id="01")
BLANK = _authoring.module_source(A.source, solved=False, assignment_id="01")

_TEST = {"type": "object", "additionalProperties": False,
         "required": ["name", "score", "max_score", "status", "output", "visibility"],
         "properties": {"name": {"type": "string"}, "score": {"type": "number"}, "max_score": {"type": "number"},
                        "status": {"enum": ["passed", "failed"]}, "output": {"type": "string"},
                        "output_format": {"enum": ["text", "html", "simple_format", "md", "ansi"]},
                        "visibility": {"enum": ["hidden", "after_due_date", "after_published", "visible"]},
                        "tags": {"type": "array", "items": {"type": "string"}}}}
GRADESCOPE_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["score", "execution_time", "tests"],
    "properties": {"score": {"type": "number", "minimum": 0}, "execution_time": {"type": "number", "minimum": 0},
                   "output": {"type": "string"}, "output_format": {"enum": ["text", "html", "simple_format", "md",
                                                                            "ansi"]},
                   "visibility": {"enum": ["hidden", "after_due_date", "after_published", "visible"]},
                   "stdout_visibility": {"enum": ["hidden", "visible"]},
                   "tests": {"type": "array", "items": _TEST}}}


def _hostile(root: pathlib.Path) -> str:
  """relu reads the hidden tests, sigmoid writes its own results.json and exits, tanh never returns."""
  tests_py = root / "source" / "assignments" / "01" / "tests.py"
  results = root / "results" / "results.json"
  src = REF
  src = src.replace("def relu(x):", f"def relu(x):\n  try:\n    print(open({str(tests_py)!r}).read())\n"
                    "  except Exception as e:\n    print(e)\n  return x * 0 + 3.0\n\n\ndef _old_relu(x):", 1)
  src = src.replace("def sigmoid(x):", f"def sigmoid(x):\n  import os\n  try:\n    with open({str(results)!r}, 'w') "
                    "as f:\n      f.write('{\"score\": 999, \"tests\": []}')\n  except Exception:\n    pass\n"
                    "  os._exit(0)\n\n\ndef _old_sigmoid(x):", 1)
  src = src.replace("def tanh(x):", "def tanh(x):\n  while True:\n    pass\n\n\ndef _old_tanh(x):", 1)
  return src


@pytest.fixture(scope="module")
def gs(tmp_path_factory):
  """The exported zip, and a fresh venv set up by its setup.sh; ``run(files)`` grades in a fresh root."""
  base = tmp_path_factory.mktemp("gradescope")
  t0 = time.monotonic()
  r = subprocess.run([sys.executable, "-m", "autograder.cli", "export", "01", "--gradescope", base / "ag.zip"],
                     capture_output=True, text=True, cwd=REPO, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  export_s = time.monotonic() - t0
  # A fresh virtual environment whose site-packages sees ours (not dlfunc) through a folder of links inside it
  # (inside: bubblewrap binds the environment's prefix for the worker, not the rest of /tmp).
  venv = base / "venv"
  subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
  farm = venv / "deps"
  farm.mkdir()
  ours = pathlib.Path(sysconfig.get_paths()["purelib"])
  for p in ours.iterdir():
    if "dlfunc" not in p.name.lower() and not p.name.endswith(".pth"):
      (farm / p.name).symlink_to(p)
  site = next(venv.glob("lib/python3*/site-packages"))
  (site / "deps.pth").write_text(str(farm) + "\n")
  root0 = base / "root0"
  (root0 / "source").mkdir(parents=True)
  with zipfile.ZipFile(base / "ag.zip") as z:
    z.extractall(root0 / "source")
  for name in ("setup.sh", "run_autograder"):
    (root0 / "source" / name).chmod(0o755)
  env = dict(os.environ, PATH=f"{venv / 'bin'}:/usr/bin:/bin", AUTOGRADER_ROOT=str(root0), PIP_NO_INDEX="1")
  env.pop("VIRTUAL_ENV", None)
  t0 = time.monotonic()
  setup = subprocess.run(["bash", root0 / "source" / "setup.sh"], capture_output=True, text=True, env=env,
                         timeout=600)
  setup_s = time.monotonic() - t0
  assert setup.returncode == 0, setup.stdout[-2000:] + setup.stderr[-3000:]
  print(f"export {export_s:.1f} s, zip {(base / 'ag.zip').stat().st_size / 1e6:.2f} MB, setup.sh {setup_s:.1f} s")
  counter = [0]

  def run(files: dict, mutate=None):
    counter[0] += 1
    root = base / f"root{counter[0]}"
    shutil.copytree(root0 / "source", root / "source", symlinks=True)
    (root / "submission").mkdir()
    (root / "results").mkdir()
    if mutate:
      mutate(root)
    for name, text in files.items():
      text = text(root) if callable(text) else text
      (root / "submission" / name).write_text(text)
    (root / "submission_metadata.json").write_text("{}")
    t0 = time.monotonic()
    p = subprocess.run(["bash", root / "source" / "run_autograder"], capture_output=True, text=True,
                       env=dict(env, AUTOGRADER_ROOT=str(root)), timeout=900, cwd=REPO)   # a checkout in cwd
    wall = time.monotonic() - t0
    assert p.returncode == 0, p.stderr[-2000:]
    text = (root / "results" / "results.json").read_text()
    res = json.loads(text)
    jsonschema.validate(res, GRADESCOPE_SCHEMA)
    return res, text, wall, p

  return {"zip": base / "ag.zip", "venv": venv, "run": run, "setup": setup, "root0": root0}


def test_zip_shape(gs):
  with zipfile.ZipFile(gs["zip"]) as z:
    names = z.namelist()
    assert {"setup.sh", "run_autograder"} <= set(names)
    assert all(n.count("/") == 0 or n.startswith("assignments/01/") for n in names)
    assert any(n.startswith("dlfunc-") and n.endswith(".whl") for n in names)
    assert "assignments/01/tests.py" in names
    for name in ("setup.sh", "run_autograder"):
      info = z.getinfo(name)
      mode = info.external_attr >> 16
      assert stat.S_ISREG(mode) and mode & 0o111 == 0o111, oct(mode)
      data = z.read(name)
      assert data.startswith(b"#!") and b"\r" not in data
    reqs = z.read("requirements.txt").decode().split()
    assert reqs and all("==" in r for r in reqs) and any(r.startswith("jax==") for r in reqs)
    assert "768" in z.read("README.md").decode()


def test_setup_installed_the_wheel_into_the_python_on_path(gs):
  py = (gs["root0"] / "source" / ".python").read_text().strip()
  assert py.startswith(str(gs["venv"]))
  r = subprocess.run([py, "-c", "import autograder, dlfunc; print(autograder.__file__, dlfunc.__file__)"],
                     capture_output=True, text=True, cwd=gs["venv"])
  assert r.returncode == 0 and str(gs["venv"]) in r.stdout and str(REPO) not in r.stdout, r.stdout + r.stderr
  assert stat.S_IMODE((gs["root0"] / "source").stat().st_mode) == 0o700


@pytest.mark.slow
def test_reference_full_marks(gs):
  res, _, wall, p = gs["run"]({"01.py": REF})
  assert res["score"] == A.max_score and all(t["status"] == "passed" for t in res["tests"])
  hidden = {t.name for t in A.tests if t.hidden}
  assert {t["name"] for t in res["tests"] if t["visibility"] == "after_published"} == hidden
  assert "isolation:" in res["output"] and "graded 01.py" in res["output"]
  assert f"grader at {gs['venv']}" in p.stdout      # the wheel's grader, not the checkout in the working folder
  print(f"reference graded in {wall:.1f} s (execution_time {res['execution_time']})")


@pytest.mark.slow
def test_blank_stub_zero(gs):
  res, _, _, _ = gs["run"]({"01.py": BLANK})
  assert res["score"] == 0 and all(t["status"] == "failed" for t in res["tests"])


@pytest.mark.slow
def test_hostile_submission_gets_its_honest_score(gs):
  res, text, wall, _ = gs["run"]({"01.py": _hostile})
  honest = A.points_for("softmax") + A.points_for("init_dense") + A.points_for("dense")
  assert res["score"] == honest, [(t["name"], t["output"][:200]) for t in res["tests"] if t["score"] < t["max_score"]]
  assert "999" not in json.dumps(res["score"])
  for fn in ("relu", "sigmoid", "tanh"):
    assert all(t["score"] == 0 for t in res["tests"] if t["tags"] == [fn])
  # none of the hidden tests' code reaches the results
  assert "def test_" not in text and "@hidden" not in text
  hidden_src = (A.path / "tests.py").read_text().splitlines()
  leaked = [ln.strip() for ln in hidden_src if len(ln.strip()) > 30 and ln.strip() in text]
  assert not leaked, leaked[:3]
  assert wall < 600     # Gradescope's default timeout, with the loop stopped by the per-call limit


def test_no_gradable_file_names_what_was_found(gs):
  res, _, _, _ = gs["run"]({"notes.txt": "see pdf", "answers.pdf": "%PDF"})
  assert res["score"] == 0 and len(res["tests"]) == 1 and res["tests"][0]["visibility"] == "visible"
  assert "notes.txt" in res["output"] and "answers.pdf" in res["output"]


def test_grader_crash_gives_a_valid_zero(gs):
  def break_tests(root):
    (root / "source" / "assignments" / "01" / "tests.py").write_text("raise RuntimeError('broken grader')\n")
  res, _, _, p = gs["run"]({"01.py": REF}, mutate=break_tests)
  assert res["score"] == 0 and res["tests"][0]["visibility"] == "visible"
  assert "failed" in res["tests"][0]["name"] and "broken grader" in p.stderr   # details for the instructor only

  def break_python(root):
    (root / "source" / ".python").write_text("/nonexistent/python3\n")
  res, _, _, _ = gs["run"]({"01.py": REF}, mutate=break_python)
  assert res["score"] == 0 and "exit status" in res["tests"][0]["output"]


# ---------------------------------------------------------------- PrairieLearn

@pytest.fixture(scope="module")
def pl(tmp_path_factory):
  base = tmp_path_factory.mktemp("prairielearn")
  r = subprocess.run([sys.executable, "-m", "autograder.cli", "export", "01", "--prairielearn", base / "export"],
                     capture_output=True, text=True, cwd=REPO, timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  counter = [0]

  def run(files: dict):
    counter[0] += 1
    root = base / f"grade{counter[0]}"
    shutil.copytree(base / "export" / "tests", root / "tests")
    (root / "student").mkdir()
    (root / "data").mkdir()
    (root / "data" / "data.json").write_text("{}")
    for name, text in files.items():
      (root / "student" / name).write_text(text)
    p = subprocess.run(["bash", root / "tests" / "run.sh"], capture_output=True, text=True, timeout=900,
                       env=dict(os.environ, AUTOGRADER_ROOT=str(root), AUTOGRADER_PYTHON=sys.executable))
    assert p.returncode == 0, p.stderr[-2000:]
    raw = (root / "results" / "results.json").read_bytes()
    assert len(raw) <= 1_000_000
    return json.loads(raw)

  return {"base": base, "run": run}


def test_prairielearn_export_files(pl):
  snippet = json.loads((pl["base"] / "export" / "info.json.snippet").read_text())["externalGradingOptions"]
  assert snippet["entrypoint"] == "/grade/tests/run.sh" and snippet["image"] and snippet["enabled"]
  run = pl["base"] / "export" / "tests" / "run.sh"
  assert run.stat().st_mode & 0o111 and run.read_bytes().startswith(b"#!")


@pytest.mark.slow
def test_prairielearn_partial_score_and_syntax_error(pl):
  relu_only = BLANK.replace("def relu(x):", "def relu(x):\n  import jax.numpy as jnp\n  return jnp.maximum(x, 0)\n"
                            "\n\ndef _old_relu(x):", 1)
  res = pl["run"]({"01.py": relu_only})
  assert res["gradable"] is True and res["score"] == pytest.approx(A.points_for("relu") / A.max_score)
  assert 0 <= res["score"] <= 1 and sum(t["max_points"] for t in res["tests"]) == A.max_score
  assert all({"name", "description", "points", "max_points", "message", "output"} <= set(t) for t in res["tests"])
  bad = pl["run"]({"01.py": REF.replace("def relu(x):", "def relu(x) oops:", 1)})
  assert bad["gradable"] is False and bad["format_errors"] and "syntax" in bad["format_errors"][0].lower()
  assert bad["score"] == 0


def test_prairielearn_result_stays_under_1mb():
  report = {"score": 1.0, "max_score": 2.0, "tests": [
      {"name": f"relu: t{i}", "function": "relu", "score": 0.5, "max_score": 1.0, "hidden": False,
       "status": "partial", "output": "x" * 200_000} for i in range(20)]}
  res = _adapters.pl_result(report, message="m" * 2_000_000)
  assert len(json.dumps(res).encode()) <= _adapters.PL_MAX_BYTES and res["score"] == 0.5
