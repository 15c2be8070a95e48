"""Feedback that leads to the fix (issue 13, item 2): the exact shape of each pattern's message.

Fast: the checks run in-process on a LocalSubmission (the worker's answers are the same NumPy values);
the failing-callee message is checked on the runner's records.
"""
import re

import numpy as np
import pytest

from autograder import checks as C
from autograder._errors import CheckFailed
from autograder.grader._feedback import fix_callees_first, graded_callees
from autograder.worker._remote import LocalSubmission
from autograder.grader import _runner

X = C.normal(0, (5, 4))     # a batch of 5
G = C.normal(1, (5, 3))


def _message(fn, *args, **kw) -> str:
  with pytest.raises(CheckFailed) as e:
    fn(*args, **kw)
  return str(e.value)


def _bias_grad(x, g):
  return g.sum(axis=0)


def test_constant_ratio_names_the_factor_and_the_batch_size():
  sub = LocalSubmission({"bias_grad": lambda x, g: g.mean(axis=0)})   # averaged instead of summed
  msg = _message(C.matches, sub, "bias_grad", _bias_grad, X, G)
  assert re.fullmatch(
      r"bias_grad\(float32\[5, 4\] in \[.*\], float32\[5, 3\] in \[.*\]\): 3 of 3 values differ; first at index \(0,\): "
      r"expected \S+, got \S+ \(shape \(3,\), dtype float32, rtol 1e-05, atol 1e-06\)\. Every value is 1/5 of the "
      r"expected one \(got / expected = 0\.2 everywhere; 5 is the size of axis 0 of argument 1 \(5, 4\), the batch "
      r"size\): a constant factor is wrong, e\.g\. a mean where a sum belongs \(or the reverse\), or a missing or "
      r"extra scale\.", msg), msg


def test_constant_ratio_of_two_and_of_minus_one():
  e = C.normal(2, (4,))
  assert "Every value is 2 times the expected one (got / expected = 2 everywhere)" in _message(
      C.allclose, 2 * e, e, "f(x)")
  assert _message(C.allclose, -e, e, "f(x)").endswith(
      "Every value has the wrong sign (got / expected = -1 everywhere): check a minus sign or a subtraction's order.")


def test_transposed_output_says_transposed_not_reduce_axis():
  sub = LocalSubmission({"dw": lambda x, g: g.T @ x})
  msg = _message(C.matches, sub, "dw", lambda x, g: x.T @ g, X, G)
  assert msg.endswith("expected shape (4, 3), got shape (3, 4) (float32 vs float32). Your result is transposed "
                      "((3, 4) is (4, 3) reversed): check the order of the operands of the matrix product and any "
                      ".T, so the result comes out (4, 3)."), msg
  assert "reduce" not in msg
  sq = C.normal(3, (4, 4))
  assert _message(C.allclose, sq.T, sq, "f(x)").endswith(
      "Your values are the transpose of the expected ones: check the order of the operands of the matrix product "
      "and any .T.")


def test_wrong_reduction_axis_names_both_axes():
  sub = LocalSubmission({"bias_grad": lambda x, g: g.sum(axis=1)})
  msg = _message(C.matches, sub, "bias_grad", _bias_grad, X, G)
  assert msg.endswith("expected shape (3,), got shape (5,) (float32 vs float32). Your result has the shape of "
                      "argument 2 (5, 3) reduced over axis 1; the expected one reduces over axis 0: change the axis "
                      "you reduce over."), msg


def test_off_by_one_and_keepdims_shapes():
  assert _message(C.allclose, np.zeros((4, 3)), np.zeros((5, 3)), "conv(x)").endswith(
      "Off by one along axis 0 (5 expected, 4 got): check a range, a slice bound, the padding or the output-size "
      "formula.")
  assert _message(C.allclose, np.zeros((1, 3)), np.zeros((3,)), "f(x)").endswith(
      "Axis 0 (size 1) is extra: reduce without keepdims, or drop it.")
  assert _message(C.allclose, np.zeros((3,)), np.zeros((3, 1)), "f(x)").endswith(
      "Axis 1 (size 1) is missing: keep it with keepdims=True.")


def test_multi_output_names_come_from_the_tests_outputs():
  got = ((np.ones(2), np.ones(2)), np.ones(2))
  want = ((np.ones(2), np.full(2, 3.0)), np.ones(2))
  msg = _message(C.allclose, got, want, "lstm_step(params, (h, c), x)", outputs=(("h", "c"), "h"))
  assert msg.startswith("lstm_step(params, (h, c), x)[0][1] (`c`): 2 of 2 values differ"), msg
  # from the calling tests.py's OUTPUTS (this module plays tests.py here)
  global OUTPUTS, FUNCTIONS
  OUTPUTS, FUNCTIONS = {"lstm_step": "((h, c), h)"}, ("lstm_step",)
  try:
    msg = _message(C.allclose, got, want, "lstm_step(params, (h, c), x)")
  finally:
    del OUTPUTS, FUNCTIONS
  assert msg.startswith("lstm_step(params, (h, c), x)[0][1] (`c`)"), msg


def test_parameter_trees_are_summarised_by_path_shape_and_dtype():
  params = {"gru": {"kernel": np.zeros((8, 96), np.float32), "recurrent_kernel": np.zeros((32, 96), np.float32),
                    "bias": np.zeros(96, np.float32), "recurrent_bias": np.zeros(96, np.float32)},
            "dense": {"w": np.zeros((32, 10), np.float32), "b": np.zeros(10, np.float32)}}
  assert C.describe(params) == ("{gru/kernel float32[8, 96], gru/recurrent_kernel float32[32, 96], gru/bias "
                                "float32[96], gru/recurrent_bias float32[96], dense/w float32[32, 10], dense/b "
                                "float32[10]}")
  layers = [{"w": np.zeros((3, 3), np.float32), "b": np.zeros(3, np.float32)}] * 6
  assert C.describe(layers).endswith("3/w float32[3, 3], 3/b float32[3], ... and 4 more leaves]")
  from autograder.grader._checks import _call_text
  text = _call_text("classifier_apply", (params, np.zeros((12, 8, 8), np.float32)) * 3, {})
  assert len(text) <= 320 and text.endswith("more arguments)"), text   # whole arguments, never cut mid-word


def test_failing_callee_says_fix_it_first():
  cells = [{"source": "def gru_step(p, h, x):\n  return h\n\n"
                      "def _helper(p, xs):\n  return gru_step(p, xs, xs)\n\n"
                      "def classifier_apply(p, xs):\n  return _helper(p, xs)\n\n"
                      "def other(p):\n  return p\n"}]
  callees = graded_callees(cells, ["gru_step", "classifier_apply", "other"])
  assert callees == {"gru_step": [], "classifier_apply": ["gru_step"], "other": []}
  results = [_runner.TestResult("gru_step: values", "gru_step", 0.0, 1.0, False, "failed", "gru_step(...): wrong", 0.1),
             _runner.TestResult("classifier_apply: logits", "classifier_apply", 0.0, 2.0, False, "failed",
                        "classifier_apply(...): 120 of 120 values differ", 0.1),
             _runner.TestResult("other: ok", "other", 0.0, 1.0, False, "failed", "other: wrong", 0.1)]
  fix_callees_first(results, callees)
  assert results[1].output == ("fix `gru_step` first: `classifier_apply` calls `gru_step`, which fails its own "
                               "tests, so this verdict says nothing about `classifier_apply` itself yet.\n"
                               "what this test saw: classifier_apply(...): 120 of 120 values differ")
  assert results[0].output == "gru_step(...): wrong" and results[2].output == "other: wrong"


def _reference_source(aid):
  from autograder.authoring import _authoring
  from autograder.grader import _registry
  a = _registry.load_assignment(aid)
  return a, _authoring.module_source(a.source, True, aid)


@pytest.mark.slow
def test_syntax_error_in_a_py_comes_first_and_alone(tmp_path):
  from autograder.grader import _report
  from autograder.grader._runner import grade_submission
  a, src = _reference_source("03")
  bad = src.replace('  return grads, g @ params["w"].T', '  return grads, g @ params["w"].T)')
  line = bad.splitlines().index('  return grads, g @ params["w"].T)') + 1
  path = tmp_path / "typo.py"
  path.write_text(bad)
  report = grade_submission("03", path, hidden=False, functions=["relu_backward", "dense_backward"])
  assert report.score == 0
  assert report.notes[0] == (f"syntax error at line {line}: unmatched ')'.\n"
                             f"    {line} | return grads, g @ params[\"w\"].T)\n"
                             f"    {' ' * len(str(line))} | {' ' * 31}^\n"
                             "Nothing in the file ran, so every test fails until it is fixed.")
  assert all(t.output == "" for t in report.tests)           # alone: no "not defined" lines before it
  assert not any("not defined" in n for n in report.notes)
  text = _report.text_table(report.as_dict(), self_check=True)
  assert text.splitlines()[2] == f"syntax error at line {line}: unmatched ')'."


@pytest.mark.slow
def test_syntax_error_in_a_notebook_names_the_cell_as_jupyter_counts_it(tmp_path):
  import nbformat
  from autograder.authoring import _authoring
  from autograder.grader._runner import grade_submission
  a, _ = _reference_source("03")
  nb = _authoring.instructor_notebook(a.source)
  for cell in nb.cells:
    if cell.metadata.get("nbgrader", {}).get("grade_id") == "dense_backward":
      cell.source = _authoring.solution_source(cell.source).replace("g @ params[\"w\"].T", "g @ params[\"w\"].T)")
    elif cell.metadata.get("nbgrader", {}).get("solution"):
      cell.source = _authoring.solution_source(cell.source)
  position = next(i for i, c in enumerate(nb.cells, 1) if c.metadata.get("nbgrader", {}).get("grade_id")
                  == "dense_backward")
  assert position != sum(1 for c in nb.cells[:position] if c.cell_type == "code")   # markdown cells count
  path = tmp_path / "typo.ipynb"
  nbformat.write(nb, str(path))
  report = grade_submission("03", path, hidden=False, functions=["relu_backward", "dense_backward"])
  assert report.notes[0].startswith(f"syntax error in cell {position} (defines `dense_backward`), line ")
  assert report.notes[0].splitlines()[-1] == "That cell did not run, so `dense_backward` is not defined."
  by_fn = report.by_function()
  assert by_fn["relu_backward"][0] == by_fn["relu_backward"][1]     # the other cells still ran
  assert by_fn["dense_backward"][0] == 0


def test_exception_location_names_the_function_and_the_chain_of_student_calls():
  from autograder._errors import SubmissionError
  import linecache
  src = "def gru_step(h):\n  return h + 'x'\n\ndef classifier_apply(h):\n  return gru_step(h) * 2\n"
  linecache.cache["<cell 4>"] = (len(src), None, src.splitlines(True), "<cell 4>")   # as the kernel does
  ns = {}
  exec(compile(src, "<cell 4>", "exec"), ns)  # noqa: S102
  with pytest.raises(SubmissionError) as e:
    LocalSubmission(ns).call("classifier_apply", np.ones(2))
  assert "at line 2 of its cell in `gru_step` (called as classifier_apply -> gru_step): `return h + 'x'`" \
      in e.value.message, e.value.message
