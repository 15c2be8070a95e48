"""The notebook's last cell (issue 13, item 4): every public test at once, as `autograder check` prints them."""
import textwrap

import pytest

from autograder.authoring import _authoring
from autograder.grader import _registry
from autograder.selfcheck import check_all

AID = "03"


@pytest.mark.slow
def test_last_cell_runs_every_public_test_with_a_summary(capsys):
  a = _registry.load_assignment(AID)
  source = _authoring.module_source(a.source, True, AID)
  broken = textwrap.dedent("""
      def dense_backward(params, x, g):
        return {"w": g.T @ x, "b": jnp.sum(g, axis=0)}, g @ params["w"].T
  """)
  ns = {"__name__": "__main__", "In": [source, broken]}     # the kernel keeps the cells' sources in In
  exec(compile(source, "<cell 1>", "exec"), ns)  # noqa: S102
  exec(compile(broken, "<cell 2>", "exec"), ns)  # noqa: S102
  report = check_all(AID, ns)
  out = capsys.readouterr()
  assert out.err == ""
  public = [t for t in a.tests if not t.hidden]
  assert [t["name"] for t in report["tests"]] == [t.name for t in public]
  # the same per-test lines as `autograder check`
  assert "  [FAIL] dense_backward: dW = x^T g, db = sum of g over the batch, dx = g W^T for a random g (float64)  0/2" \
      in out.out
  assert "Your result is transposed" in out.out
  assert "These are the public tests only: hidden tests also count towards your grade." in out.out
  # a caller of the broken function is told to fix it first
  mlp = [t for t in report["tests"] if t["function"] == "mlp_backward" and t["score"] < t["max_score"]]
  assert mlp and all(t["output"].startswith("fix `dense_backward` first") for t in mlp)
  # the summary table
  lines = out.out.splitlines()
  assert lines[lines.index("function                        public points") + 2].split() == ["numerical_grad", "2/2",
                                                                                                 "ok"]
  assert any(l.split() == ["dense_backward", "0/4", "to", "fix"] for l in lines), out.out
  assert lines[-1].split()[:2] == ["total", f"{report['score']:g}/{report['max_score']:g}"]


def test_the_last_cell_is_in_the_notebook_not_in_the_py_stub():
  for aid in ("01", "02", "03", "04", "05", "06", "07", "08", "09", "10"):
    a = _registry.load_assignment(aid)
    nb = _authoring.student_notebook(a.source)
    assert nb.cells[-1].source.strip().endswith(f'check_all("{aid}", globals())'), aid
    assert "check_all" not in _authoring.module_source(a.source, False, aid), aid
