"""Fast tests of the autograder's pieces: wire format, checks and their messages, submission
parsing, static refusal of dlfunc, authoring generators, registry validation, reports, and the
in-process ``sub`` (jit errors reported apart from wrong values)."""
import io
import json
import pathlib
import struct
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autograder import checks as C
from autograder.authoring import _authoring
from autograder.grader import _report
from autograder.worker import _submission, _wire
from autograder._errors import CheckFailed, SubmissionError
from autograder.grader._registry import collect_tests, hidden, load_assignment, points
from autograder.worker._remote import LocalSubmission
from autograder.grader._runner import run_test

# ---------------------------------------------------------------- wire


def test_wire_roundtrip_pytrees_keys_and_scalars():
  key = jax.random.key(3)
  tree = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": [np.int32(4), (1.5, float("nan"))],
          "k": key, "s": "text", "n": None, "flag": True, "big": 2**40}
  frame = _wire.encode(tree)
  (n,) = struct.unpack("<Q", frame[:8])
  out = _wire.decode_body(frame[8:8 + n])
  np.testing.assert_array_equal(out["w"], tree["w"])
  assert out["w"].dtype == np.float32
  assert isinstance(out["b"], list) and isinstance(out["b"][1], tuple) and np.isnan(out["b"][1][1])
  assert jax.dtypes.issubdtype(out["k"].dtype, jax.dtypes.prng_key)
  np.testing.assert_array_equal(jax.random.key_data(out["k"]), jax.random.key_data(key))
  assert (out["s"], out["n"], out["flag"], out["big"]) == ("text", None, True, 2**40)


def test_wire_marks_unsendable_values_opaque():
  out = _wire.decode_body(_wire.encode({"f": (lambda: 0), "o": object()})[8:])
  assert isinstance(out["f"], _wire.Opaque) and out["f"].type_name == "function"


def test_wire_refuses_pickled_object_arrays():
  buf = io.BytesIO()
  np.save(buf, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
  blob = buf.getvalue()
  head = json.dumps({"tree": {"$a": 0}, "blobs": [len(blob)]}).encode()
  with pytest.raises(_wire.WireError):
    _wire.decode_body(struct.pack("<I", len(head)) + head + blob)


@pytest.mark.parametrize("body", [b"", b"\x05\x00\x00\x00{}", struct.pack("<I", 2) + b"[]",
                                  struct.pack("<I", 22) + b'{"tree":1,"blobs":[9]}'])
def test_wire_refuses_malformed_frames(body):
  with pytest.raises(_wire.WireError):
    _wire.decode_body(body)


def test_wire_refuses_deep_structures():
  tree = {"$l": []}
  node = tree
  for _ in range(200):
    child = {"$l": []}
    node["$l"].append(child)
    node = child
  head = json.dumps({"tree": tree, "blobs": []}).encode()
  with pytest.raises(_wire.WireError):
    _wire.decode_body(struct.pack("<I", len(head)) + head)

# ---------------------------------------------------------------- checks


def test_allclose_message_names_index_expected_got_shape_dtype():
  exp = np.array([1.0, 2.0, 3.0], np.float32)
  got = np.array([1.0, 2.5, 3.0], np.float32)
  with pytest.raises(CheckFailed) as e:
    C.allclose(got, exp, "relu(x)")
  msg = str(e.value)
  assert "relu(x)" in msg and "(1,)" in msg and "expected 2" in msg and "got 2.5" in msg
  assert "(3,)" in msg and "float32" in msg


def test_allclose_nan_and_inf_never_pass():
  with pytest.raises(CheckFailed, match="NaN/Inf"):
    C.allclose(np.array([np.nan], np.float32), np.array([1.0], np.float32), "f(x)", rtol=1e9, atol=1e9)
  with pytest.raises(CheckFailed, match="NaN/Inf"):
    C.allclose(np.array([np.inf], np.float32), np.array([1e30], np.float32), "f(x)", rtol=1e9)


def test_allclose_shape_dtype_and_type_mismatch():
  with pytest.raises(CheckFailed, match=r"expected shape \(3,\), got shape \(1, 3\)"):
    C.allclose(np.zeros((1, 3), np.float32), np.zeros(3, np.float32), "f")
  with pytest.raises(CheckFailed, match="expected dtype float32, got float64"):
    C.allclose(np.zeros(3), np.zeros(3, np.float32), "f")
  with pytest.raises(CheckFailed, match="got str"):
    C.allclose("nope", np.zeros(3, np.float32), "f")


def test_allclose_pytrees_and_tolerance_per_dtype():
  C.allclose({"w": np.float32(1.0 + 5e-7)}, {"w": np.float32(1.0)}, "p")
  with pytest.raises(CheckFailed, match=r"p\['w'\]"):
    C.allclose({"w": np.float64(1.0 + 5e-7)}, {"w": np.float64(1.0)}, "p")
  with pytest.raises(CheckFailed, match="keys"):
    C.allclose({"kernel": np.zeros(1)}, {"w": np.zeros(1)}, "p")


def test_each_gives_partial_credit_with_messages():
  credit = C.each(lambda: None, lambda: C.fail("second part wrong"), lambda: None, lambda: None)
  assert credit.fraction == 0.75 and credit.messages == ["second part wrong"]


def test_normal_inputs_are_deterministic():
  np.testing.assert_array_equal(C.normal(5, (3,)), C.normal(5, (3,)))
  assert C.normal(5, (3,), np.float64).dtype == np.float64

# ---------------------------------------------------------------- in-process sub: jit vs values


def _ns(src):
  ns = {}
  exec(compile(src, "<cell 1>", "exec"), ns)
  return ns


def test_jit_failure_is_reported_apart_from_wrong_values():
  ns = _ns("import jax.numpy as jnp\ndef relu(x):\n  if x.sum() > 0:\n    return jnp.maximum(x, 0)\n"
           "  return jnp.maximum(x, 0)\n")
  sub = LocalSubmission(ns)
  x = np.array([1.0, -1.0], np.float32)
  C.matches(sub, "relu", jax.nn.relu, x)                        # fine eagerly
  with pytest.raises(SubmissionError) as e:
    C.jit_matches(sub, "relu", jax.nn.relu, x)
  assert e.value.kind == "jit"
  assert "works eagerly but not under jax.jit" in e.value.message and "Python `if`" in e.value.message
  assert "line 3" in e.value.message


def test_not_implemented_and_missing_are_named():
  sub = LocalSubmission(_ns("def relu(x):\n  raise NotImplementedError('hint')\n"))
  with pytest.raises(SubmissionError, match="relu: not implemented yet") as e:
    sub.relu(np.zeros(2))
  assert e.value.kind == "not_implemented"
  with pytest.raises(SubmissionError, match="sigmoid is not defined") as e:
    sub.sigmoid(np.zeros(2))


def test_grad_matches_explains_inconsistent_gradient():
  ns = _ns("import jax, jax.numpy as jnp\ndef sigmoid(x):\n"
           "  return jax.lax.stop_gradient(0.5 * (jnp.tanh(0.5 * x) + 1.0))\n")
  with pytest.raises(CheckFailed, match="inconsistent with your own function"):
    C.grad_matches(LocalSubmission(ns), "sigmoid", jax.nn.sigmoid, C.normal(0, (4,), np.float64))


def test_prng_discipline_catches_fixed_key():
  ns = _ns("import jax\ndef init(key, n):\n  return jax.random.normal(jax.random.key(0), (n,))\n")
  with pytest.raises(CheckFailed, match="different key gave exactly the same"):
    C.prng_discipline(LocalSubmission(ns), "init", C.key(1), 4)


def test_compiles_once_counts_traces():
  ns = _ns("import jax.numpy as jnp\ndef f(x, n):\n  return x * n\n")
  sub = LocalSubmission(ns)
  C.compiles_once(sub, "f", [(np.ones(2, np.float32), np.float32(k)) for k in range(3)])
  with pytest.raises(CheckFailed, match="traced 3 times"):
    C.compiles_once(sub, "f", [(np.ones(2, np.float32), k) for k in range(3)], static_argnums=(1,))


def test_run_test_scores_partial_and_errors():
  @points(2)
  def t_partial(sub):
    """relu: half"""
    return C.each(lambda: None, lambda: C.fail("no"))

  @points(1)
  def t_bug(sub):
    """relu: a test with a bug"""
    return 1 / 0
  mod = types.SimpleNamespace(t_partial=t_partial, t_bug=t_bug)
  tests = collect_tests(mod, ("relu",))
  assert run_test(tests[0], None)[:2] == (0.5, "partial")
  frac, status, msg = run_test(tests[1], None)
  assert (frac, status) == (0.0, "error") and "ZeroDivisionError" in msg

# ---------------------------------------------------------------- registry & authoring


def test_registry_rejects_badly_named_tests():
  @points(1)
  def t(sub):
    """no function prefix here"""
  with pytest.raises(ValueError, match="<function>: <what it checks>"):
    collect_tests(types.SimpleNamespace(t=t), ("relu",))


def test_points_and_hidden_decorators():
  @points(3)
  @hidden
  def t(sub):
    """relu: x"""
  test, = collect_tests(types.SimpleNamespace(t=t), ("relu",))
  assert test.hidden and test.points == 3.0


def test_stub_keeps_hint_and_raises_with_it():
  src = "def relu(x):\n  # Hint: use jnp.maximum.\n  ### BEGIN SOLUTION\n  return x\n  ### END SOLUTION\n"
  out = _authoring.stub_source(src, "relu")
  assert "return x" not in out and "# Hint: use jnp.maximum." in out
  assert 'raise NotImplementedError("relu: use jnp.maximum.")' in out
  with pytest.raises(ValueError):
    _authoring.stub_source("### BEGIN SOLUTION\nx = 1\n")


def test_assignment_01_lints_clean_and_student_versions_hide_answers(tmp_path):
  a = load_assignment("01")
  assert _authoring.lint(a) == []
  nb = _authoring.student_notebook(a.source)
  text = json.dumps(nb)
  assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text and "hidden=True" not in text
  assert "jnp.maximum(x, jnp.zeros" not in text
  stub = _authoring.module_source(a.source, solved=False, assignment_id="01")
  assert stub.count("raise NotImplementedError") == len(a.functions) and "grade(" not in stub
  assert "matplotlib" not in stub


# ---------------------------------------------------------------- submissions


def test_notebook_magics_skipped_and_test_cells_left_out(tmp_path):
  cells = [{"cell_type": "code", "metadata": {}, "source": "%matplotlib inline\n!ls\nx = 1\n"},
           {"cell_type": "code", "metadata": {}, "source": "%%bash\necho hi\n"},
           {"cell_type": "code", "metadata": {"nbgrader": {"grade": True, "solution": False}}, "source": "grade()"},
           {"cell_type": "code", "metadata": {"tags": ["skip-grading"]}, "source": "plot()"},
           {"cell_type": "markdown", "metadata": {}, "source": "# hi"}]
  p = tmp_path / "nb.ipynb"
  p.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
  sub = _submission.read_submission(p)
  assert [c["source"] for c in sub.cells] == ["\n\nx = 1\n"]
  assert len(sub.notes) == 3


def test_py_submission_leaves_out_skip_grading_cells_and_keeps_line_numbers(tmp_path):
  src = ('# %%\ndef f(x):\n  return x\n'
         '# %% tags=["skip-grading"]\nraise SystemExit("a figure cell ran")\n'
         "# %% tags=['active-ipynb', 'skip-grading']\nplot()\n"
         '# %% tags=["solution"]\ndef g(x):\n  return 2 * x\n'
         '# %% nbgrader={"grade": true, "grade_id": "t", "solution": false}\nscore = grade("01", "f", globals())\n'
         '# %% nbgrader={"grade": true, "grade_id": "s", "solution": true}\nh = 3\n')
  p = tmp_path / "work.py"
  p.write_text(src)
  sub = _submission.read_submission(p)
  out = sub.cells[0]["source"].splitlines()
  assert len(out) == len(src.splitlines())          # tracebacks still point at the file's own lines
  assert "raise SystemExit" not in sub.cells[0]["source"] and "plot()" not in sub.cells[0]["source"]
  assert out[1] == "def f(x):" and out[8] == "def g(x):"
  assert "grade(" not in sub.cells[0]["source"] and out[-1] == "h = 3"   # a graded solution cell stays
  assert sub.notes == ["line 4: skip-grading cell left out", "line 6: skip-grading cell left out",
                       "line 11: test cell left out"]
  plain = tmp_path / "plain.py"
  plain.write_text("x = 1  # %% tags=['skip-grading'] is not a cell header here\n")
  assert _submission.read_submission(plain).cells[0]["source"] == plain.read_text()


def test_folder_submission_finds_the_notebook(tmp_path):
  (tmp_path / "s").mkdir()
  (tmp_path / "s" / "helper.py").write_text("x = 1\n")
  (tmp_path / "s" / "work.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4,
                                                          "nbformat_minor": 5}))
  assert _submission.read_submission(tmp_path / "s").entry.name == "work.ipynb"


@pytest.mark.parametrize("src, expected", [
    ("from dlfunc.nn import relu as r\ndef relu(x):\n  return r(x)\n", {"relu": "dlfunc.nn.relu"}),
    ("import dlfunc.nn as F\ndef _h(x):\n  return F.softmax(x)\ndef softmax(x):\n  return _h(x)\n",
     {"softmax": "dlfunc.nn.softmax"}),
    ("import jax\nrelu = jax.nn.relu\n", {"relu": "jax.nn.relu"}),
    ("import jax\ndef sigmoid(x):\n  return jax.nn.sigmoid(x)\ndef relu(x):\n  return x\n",
     {"sigmoid": "jax.nn.sigmoid"}),
    ("import jax.numpy as jnp\ndef relu(x):\n  return jnp.maximum(x, 0)\n", {}),
])
def test_forbidden_uses_resolve_aliases_and_calls(src, expected):
  forbidden = {"relu": ("jax.nn.relu",), "sigmoid": ("jax.nn.sigmoid",)}
  got = _submission.forbidden_uses([{"index": None, "source": src}], ("relu", "sigmoid", "softmax"), forbidden)
  assert got == expected

# ---------------------------------------------------------------- reports


def _fake_report():
  return {"assignment": "01", "submission": "alice", "score": 1.5, "max_score": 3.0, "seconds": 1.0,
          "isolation": "x", "notes": ["n"], "tests": [
              {"name": "relu: a", "function": "relu", "score": 1.0, "max_score": 1.0, "hidden": False,
               "status": "passed", "output": "", "seconds": 0.1},
              {"name": "relu: b", "function": "relu", "score": 0.5, "max_score": 2.0, "hidden": True,
               "status": "partial", "output": "half wrong", "seconds": 0.1}]}


def test_gradescope_schema():
  gs = _report.gradescope(_fake_report())
  assert gs["score"] == 1.5 and sum(t["max_score"] for t in gs["tests"]) == 3.0
  assert [set(t) for t in gs["tests"]] == [{"name", "score", "max_score", "status", "output", "output_format",
                                            "visibility", "tags"}] * 2
  assert [t["status"] for t in gs["tests"]] == ["passed", "failed"]
  assert [t["visibility"] for t in gs["tests"]] == ["visible", "after_published"]


def test_text_table_and_csv():
  text = _report.text_table(_fake_report(), self_check=True)
  assert "relu  1.5/3" in text and "half wrong" in text and "hidden tests also count" in text
  rows = _report.csv_text([_fake_report()], ("relu",)).strip().splitlines()
  assert rows[0].startswith("submission,score,max_score,percent,relu") and rows[1].startswith("alice,1.5,3,50.0,1.5")


def test_notebook_grade_times_out_a_hanging_function(capsys):
  from autograder import notebook
  a = load_assignment("01")
  test = a.tests_for("relu", hidden=False)
  ns = _ns("def relu(x):\n  while True:\n    pass\n")
  old = a.timeout
  a.timeout = 0.5
  try:
    score = notebook.grade("01", "relu", ns)
  finally:
    a.timeout = old
  out = capsys.readouterr()
  assert score == 0 and out.err == ""
  assert f"relu  0/{sum(t.points for t in test):g}\n  [FAIL] " in out.out
  assert "did not finish within 0.5 s" in out.out


def test_notebook_grade_refuses_a_tampered_kernel(capsys, monkeypatch):
  from autograder import notebook
  ns = _ns("import jax.numpy as jnp\ndef relu(x):\n  return jnp.abs(x)\n")
  monkeypatch.setattr(np, "allclose", lambda *a, **k: True)
  assert notebook.grade("01", "relu", ns) == 0
  out = capsys.readouterr().out
  assert "replaced numpy.allclose" in out and "Restart the kernel" in out


def test_matches_runs_float64_inputs_with_float64_enabled():
  """C.matches on float64 inputs: the student's code sees float64 too, so a correct answer passes the dtype check."""
  import jax.numpy as jnp
  import numpy as np

  from autograder import checks as C
  from autograder.worker._remote import LocalSubmission

  def relu(x):
    x = jnp.asarray(x)
    return jnp.maximum(x, jnp.zeros((), x.dtype))

  sub = LocalSubmission({"relu": relu})
  ref = lambda x: jnp.maximum(jnp.asarray(x), 0.0)  # noqa: E731
  assert C.matches(sub, "relu", ref, C.normal(0, (5,), np.float64)).dtype == np.float64
  assert C.matches(sub, "relu", ref, C.normal(0, (5,))).dtype == np.float32


def test_layout_worker_side_never_imports_the_grader_side_and_old_import_paths_still_work():
  import ast
  import importlib
  root = pathlib.Path(__file__).resolve().parents[1] / "autograder"
  if not root.is_dir():
    root = pathlib.Path(importlib.import_module("autograder").__file__).parent
  upper = ("autograder.grader", "autograder.authoring", "autograder.platforms", "autograder.cli",
           "autograder.notebook", "autograder.selfcheck", "autograder.checks", "autograder.pytest_plugin")
  for side, above in (("worker", upper), ("grader", upper[1:])):
    for f in (root / side).glob("*.py"):
      for node in ast.walk(ast.parse(f.read_text())):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                 [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
                 if isinstance(node, ast.ImportFrom) else [])
        bad = [n for n in names if n.startswith(above)]
        assert not bad, f"{f.relative_to(root)} imports {bad}: the {side} side must not depend on a layer above it"
  # paths written into released notebooks and earlier nbgrader_config.py files
  from autograder import _nbgrader_grade, notebook
  from autograder.authoring import _nbgrader_grade as impl
  assert _nbgrader_grade.IsolatedGrade is impl.IsolatedGrade
  assert notebook is importlib.import_module("autograder.authoring._notebook") and callable(notebook.grade)


# ---------------------------------------------------------------- issue 13.3: a fast check


def _reference_01():
  a = load_assignment("01")
  return _authoring.module_source(a.source, solved=True, assignment_id="01")


@pytest.mark.slow
def test_an_endless_loop_costs_its_time_limit_once(tmp_path):
  """relu hangs; dense calls relu: only relu's first test waits for the limit, the rest fail at once, saying so."""
  src = _reference_01() + (
    "\n\ndef relu(x):\n  while True:\n    pass\n\n\n"
    "def dense(params, x):\n  return relu(jnp.asarray(x)) * 0 + jnp.asarray(x) @ params['w'] + params['b']\n"
  )
  path = tmp_path / "01.py"
  path.write_text(src)
  from autograder.grader._runner import grade_submission

  r = grade_submission("01", path, functions=["relu", "dense", "sigmoid"], timeout=2.0, hidden=False)
  by_fn = {f: [t for t in r.tests if t.function == f] for f in ("relu", "dense", "sigmoid")}
  assert all(t.score == 0 for t in by_fn["relu"] + by_fn["dense"])
  assert all(t.score == t.max_score for t in by_fn["sigmoid"]), [t.output for t in by_fn["sigmoid"]]
  waited = [t for t in r.tests if "did not finish within 2 s" in t.output and "not run again" not in t.output]
  assert [t.function for t in waited] == ["relu"], [(t.name, t.output[:120]) for t in r.tests]
  assert all("not run again" in t.output for t in by_fn["relu"][1:])
  for t in by_fn["dense"]:
    assert "dense was not run: it calls relu, which did not finish within its time limit" in t.output, t.output


@pytest.mark.slow
def test_a_rejected_xla_flag_restarts_the_worker_without_flags(tmp_path, monkeypatch):
  """A jaxlib that does not know one of the worker's XLA flags aborts at start-up: grading goes on without them."""
  monkeypatch.setenv("AUTOGRADER_XLA_FLAGS", "--xla_autograder_no_such_flag=1")
  path = tmp_path / "01.py"
  path.write_text(_reference_01())
  from autograder.grader._runner import grade_submission

  r = grade_submission("01", path, functions=["relu"], hidden=False)
  assert r.score == r.max_score, [(t.name, t.output[:200]) for t in r.tests]
  note = [n for n in r.notes if "XLA_FLAGS" in n]
  assert note and "started again without them" in note[0], r.notes
  monkeypatch.setenv("AUTOGRADER_XLA_FLAGS", "")  # no flags at all: no note
  r = grade_submission("01", path, functions=["relu"], hidden=False)
  assert r.score == r.max_score and not [n for n in r.notes if "XLA_FLAGS" in n]


def test_spawn_info_matches_the_imported_tests_without_importing_them():
  """The worker's parameters read from tests.py's constants agree with the imported module, for every assignment."""
  import subprocess
  import sys

  from autograder import list_assignments
  from autograder.grader import _registry

  code = (
    "import sys\nfrom autograder.grader import _registry\n"
    "for i in _registry.list_assignments():\n  _registry.spawn_info(i)\n"
    "print('jax' in sys.modules, 'autograder.worker._ops' in sys.modules)\n"
  )
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       cwd=pathlib.Path(__file__).resolve().parents[2]).stdout.split()
  assert out == ["False", "False"], out
  for i in list_assignments():
    assert _registry.spawn_info(i).same_as(load_assignment(i)), i


@pytest.mark.parametrize("seed", [0, 1, 7, 12345, 2**31 - 1, 2**32 - 1, 2**32, -1])
def test_checks_key_is_jax_random_key(seed):
  """C.key wraps threefry key data directly (no compile) and must equal jax.random.key bit for bit."""
  got, want = C.key(seed), jax.random.key(seed)
  assert got.dtype == want.dtype and str(jax.random.key_impl(got)) == str(jax.random.key_impl(want))
  np.testing.assert_array_equal(np.asarray(jax.random.key_data(got)), np.asarray(jax.random.key_data(want)))
  np.testing.assert_array_equal(np.asarray(jax.random.normal(got, (3,))), np.asarray(jax.random.normal(want, (3,))))
