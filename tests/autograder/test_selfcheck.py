"""Issue 13, item 4: a notebook's test cells print `autograder check`'s per-check lines; the last cell summarises."""
import re
import textwrap

import pytest

from autograder.authoring import _authoring
from autograder.grader import _registry, _report, _runner
from autograder.notebook import grade
from autograder.selfcheck import check_all

SOLVED_01 = """import jax.numpy as jnp

def relu(x):
  return jnp.maximum(x, 0)

def sigmoid(x):
  return 1 / (1 + jnp.exp(-x))      # right values, NaN gradient at |x| = 1e4
"""


def _kernel(*cells: str) -> dict:
  """A notebook kernel's globals after running ``cells`` (the kernel keeps the cells' sources in ``In``)."""
  ns = {"__name__": "__main__", "In": ["", *cells]}
  for i, src in enumerate(cells, 1):
    exec(compile(src, f"<cell {i}>", "exec"), ns)  # noqa: S102
  return ns


def _check_lines(out: str, function: str) -> list[str]:
  """The block a cell printed for ``function``: its ``function  got/max`` line and the per-check lines under it."""
  lines = out.splitlines()
  start = next(i for i, l in enumerate(lines) if l.startswith(function + "  "))
  end = lines.index("Public tests only: hidden tests also count towards your grade.", start)
  return lines[start:end]


def test_test_cells_print_the_lines_of_check_and_the_last_cell_a_summary(capsys, tmp_path):
  a = _registry.load_assignment("01")
  ns = _kernel(SOLVED_01)
  assert grade("01", "relu", ns) == sum(t.points for t in a.tests_for("relu", hidden=False))
  relu_out = capsys.readouterr()
  sig = a.tests_for("sigmoid", hidden=False)
  assert 0 < grade("01", "sigmoid", ns) < sum(t.points for t in sig)
  sig_out = capsys.readouterr()
  assert relu_out.err == sig_out.err == ""        # nbgrader zeroes a cell with anything on stderr
  # a passing function: its line, then one [PASS] line per check, exactly as `check` prints them
  relu = [t for t in a.tests_for("relu", hidden=False)]
  most = sum(t.points for t in relu)
  assert relu_out.out.splitlines() == [f"relu  {most:g}/{most:g}"] + [
      f"  [PASS] {t.name}  {t.points:g}/{t.points:g}" for t in relu] + [
      "Public tests only: hidden tests also count towards your grade."]
  assert "  [PASS] relu: matches max(x, 0) on a random vector  1/1" in relu_out.out
  # a failing function: [FAIL] lines with the message indented under them
  lines = _check_lines(sig_out.out, "sigmoid")
  assert re.fullmatch(r"sigmoid  \d+/" + f"{sum(t.points for t in sig):g}", lines[0])
  fail = next(i for i, l in enumerate(lines) if l.startswith("  [FAIL] "))
  assert re.fullmatch(r"  \[FAIL\] sigmoid: .+  0/\d+", lines[fail])
  assert lines[fail + 1].startswith("         ") and "got nan" in sig_out.out
  # the same lines as `autograder check` on the same code in a .py (the one renderer, _report.check_lines)
  (tmp_path / "01.py").write_text(SOLVED_01)
  r = _runner.grade_submission("01", tmp_path / "01.py", hidden=False, functions=["relu", "sigmoid"])
  table = _report.text_table(r.as_dict(), self_check=True).splitlines()
  for block in (_check_lines(relu_out.out, "relu"), lines):
    start = table.index(block[0])
    assert table[start:start + len(block)] == block
  # the last cell: one summary table over every function's public tests, then the total
  report = check_all("01", ns)
  out = capsys.readouterr()
  assert out.err == ""
  assert [t["name"] for t in report["tests"]] == [t.name for t in a.tests if not t.hidden]
  rows = out.out.splitlines()
  head = rows.index(next(l for l in rows if l.startswith("function ")))
  assert rows[head].split() == ["function", "points", "passed", "first", "failing", "message"]
  col = rows[head].index("first failing message")
  by_fn = {l.split()[0]: l for l in rows[head + 2:-1] if l[:1].strip() and not l.startswith("---")}
  assert list(by_fn) == [*a.functions, "total"]
  assert by_fn["relu"].split() == ["relu", f"{most:g}/{most:g}", f"{len(relu)}/{len(relu)}"]
  got = report["tests"]
  sig_row = by_fn["sigmoid"]
  passed = sum(t["status"] == "passed" for t in got if t["function"] == "sigmoid")
  assert sig_row.split()[1:3] == [f"{grade('01', 'sigmoid', ns, verbose=False):g}/{sum(t.points for t in sig):g}",
                                  f"{passed}/{len(sig)}"]
  first_fail = next(t for t in got if t["function"] == "sigmoid" and t["status"] != "passed")
  assert len(sig_row) > col + 20 and first_fail["output"].startswith(sig_row[col:])   # its message, in its column
  assert by_fn["tanh"][col:] == "tanh is not defined (or not a function) in the notebook."
  n_pass = sum(t["status"] == "passed" for t in got)
  assert by_fn["total"].split() == ["total", f"{report['score']:g}/{report['max_score']:g}", f"{n_pass}/{len(got)}",
                                    f"({100 * report['score'] / report['max_score']:.0f}%)"]
  assert rows[-1] == "Public tests only: hidden tests also count towards your grade."


@pytest.mark.slow
def test_a_caller_is_told_to_fix_its_failing_callee_first(capsys):
  """03: dense_backward transposed. Its caller's cell says "fix `dense_backward` first"; check_all's row says it."""
  a = _registry.load_assignment("03")
  source = _authoring.module_source(a.source, True, "03")
  broken = textwrap.dedent("""
      def dense_backward(params, x, g):
        return {"w": g.T @ x, "b": jnp.sum(g, axis=0)}, g @ params["w"].T
  """)
  ns = _kernel(source, broken)
  assert grade("03", "dense_backward", ns) == 0
  grade("03", "mlp_backward", ns)
  out = capsys.readouterr()
  assert out.err == ""
  assert "Your result is transposed" in " ".join(_check_lines(out.out, "dense_backward")[2:])
  mlp = _check_lines(out.out, "mlp_backward")
  assert mlp[1].startswith("  [FAIL] mlp_backward: ")
  assert mlp[2].startswith("         fix `dense_backward` first:")         # wrapped to the terminal's width
  assert " ".join(l.strip() for l in mlp[2:]).startswith("fix `dense_backward` first: `mlp_backward` calls `dense_backward`")
  report = check_all("03", ns, details=True)
  out = capsys.readouterr()
  assert out.err == ""
  assert "  [FAIL] dense_backward: dW = x^T g, db = sum of g over the batch, dx = g W^T for a random g (float64)  0/2" \
      in out.out                                             # details=True: every check's line first
  row = [l for l in out.out.splitlines() if l.startswith("mlp_backward ")][-1]   # the summary's row
  assert "fix `dense_backward` first" in row
  mlp = [t for t in report["tests"] if t["function"] == "mlp_backward" and t["score"] < t["max_score"]]
  assert mlp and all(t["output"].startswith("fix `dense_backward` first") for t in mlp)


def test_the_last_cell_is_in_the_notebook_not_in_the_py_stub():
  for aid in ("01", "02", "03", "04", "05", "06", "07", "08", "09", "10"):
    a = _registry.load_assignment(aid)
    nb = _authoring.student_notebook(a.source)
    assert nb.cells[-1].source.strip().endswith(f'check_all("{aid}", globals())'), aid
    assert "check_all" not in _authoring.module_source(a.source, False, aid), aid
