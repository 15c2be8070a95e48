"""From ``assignments/<ID>/assignment.py`` (jupytext percent) to notebooks and .py files.

- instructor notebook: the source as a notebook (solutions and hidden tests in
  place, nbgrader schema-3 metadata) — what nbgrader's ``source/`` holds;
- student notebook: solution regions replaced by stubs, hidden-test regions removed;
- solution / stub ``.py``: the code cells a student writes in, as a module
  (no test cells, no ``skip-grading`` cells).
"""

from __future__ import annotations

import json
import pathlib
import re

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
NBGRADER_STUB = 'raise NotImplementedError("Replace this line with your solution (see the Hint above).")'
_HINT = re.compile(r"^\s*#\s*Hint:\s*(.*)$")


def instructor_notebook(source: pathlib.Path):
  """The assignment as an nbformat notebook (solutions, hidden tests and metadata in place)."""
  import jupytext

  nb = jupytext.reads(pathlib.Path(source).read_text(encoding="utf-8"), fmt="py:percent")
  nb.metadata.pop("jupytext", None)
  nb.metadata.setdefault("kernelspec", {"display_name": "Python 3", "language": "python", "name": "python3"})
  nb.metadata.setdefault("language_info", {"name": "python"})
  for cell in nb.cells:
    nbg = cell.metadata.get("nbgrader")
    if nbg is not None:
      nbg.setdefault("schema_version", 3)
      if nbg.get("grade") and not nbg.get("solution"):
        nbg["locked"] = True
    if cell.cell_type == "code":
      cell.outputs, cell.execution_count = [], None
  return nb


def stub_source(src: str, function: str | None = None) -> str:
  """Replace each solution region by ``raise NotImplementedError("<function>: <hint>")``."""
  out, lines, skipping = [], src.split("\n"), False
  for i, line in enumerate(lines):
    if BEGIN_SOLUTION in line:
      if skipping:
        raise ValueError(f"nested {BEGIN_SOLUTION} in:\n{src}")
      skipping = True
      indent = line[: len(line) - len(line.lstrip())]
      hint = ""
      if i and (m := _HINT.match(lines[i - 1])):
        hint = m.group(1).strip()
      text = f"{function}: {hint}" if function and hint else (hint or "not implemented yet")
      out.append(f"{indent}raise NotImplementedError({json.dumps(text)})")
    elif END_SOLUTION in line:
      if not skipping:
        raise ValueError(f"{END_SOLUTION} without {BEGIN_SOLUTION} in:\n{src}")
      skipping = False
    elif not skipping:
      out.append(line)
  if skipping:
    raise ValueError(f"{BEGIN_SOLUTION} without {END_SOLUTION} in:\n{src}")
  return "\n".join(out)


def solution_source(src: str) -> str:
  """The reference solution: ``src`` without the BEGIN/END SOLUTION marker lines (their contents kept)."""
  return "\n".join(line for line in src.split("\n") if BEGIN_SOLUTION not in line and END_SOLUTION not in line)


def strip_hidden(src: str) -> str:
  """``src`` without the lines between BEGIN HIDDEN and END HIDDEN (markers too): what students never see."""
  out, skipping = [], False
  for line in src.split("\n"):
    if BEGIN_HIDDEN in line:
      skipping = True
    elif END_HIDDEN in line:
      skipping = False
    elif not skipping:
      out.append(line)
  return "\n".join(out)


def _is_test_cell(cell) -> bool:
  nbg = cell.metadata.get("nbgrader", {})
  return bool(nbg.get("grade")) and not nbg.get("solution")


def _function_of(cell) -> str | None:
  return cell.metadata.get("nbgrader", {}).get("grade_id")


def student_notebook(source: pathlib.Path):
  """The released notebook: stubs instead of solutions, no hidden tests, nbgrader metadata kept."""
  nb = instructor_notebook(source)
  for cell in nb.cells:
    if cell.cell_type != "code":
      continue
    if cell.metadata.get("nbgrader", {}).get("solution"):
      cell.source = stub_source(cell.source, _function_of(cell))
    if _is_test_cell(cell):
      cell.source = strip_hidden(cell.source)
  return nb


def module_source(source: pathlib.Path, solved: bool, assignment_id: str = "") -> str:
  """A .py module with the code cells students write in: the solution, or the stub."""
  nb = instructor_notebook(source)
  title = next((c.source.splitlines()[0].lstrip("# ").strip() for c in nb.cells if c.cell_type == "markdown"), "")
  # The notebook's markdown cells tagged "rules" go into the docstring: a student given only the .py sees them too.
  rules = "".join(
    "\n" + c.source.replace("\\", "\\\\").replace('"""', "'''") + "\n"
    for c in nb.cells
    if c.cell_type == "markdown" and "rules" in c.metadata.get("tags", [])
  )
  intro = "Reference solution" if solved else "Fill in every function that raises NotImplementedError"
  parts = [f'"""{title}\n\n{intro}; check your work with `autograder check {assignment_id} <this file>`.\n{rules}"""']
  for cell in nb.cells:
    if cell.cell_type != "code" or _is_test_cell(cell) or "skip-grading" in cell.metadata.get("tags", []):
      continue
    src = cell.source
    if cell.metadata.get("nbgrader", {}).get("solution"):
      src = solution_source(src) if solved else stub_source(src, _function_of(cell))
    parts.append(src.strip("\n"))
  return "\n\n\n".join(parts) + "\n"


def write_notebook(nb, path: pathlib.Path):
  """Write notebook ``nb`` to ``path`` with nbformat, making the parent folders."""
  import nbformat

  path.parent.mkdir(parents=True, exist_ok=True)
  nbformat.write(nb, str(path))


def lint(assignment) -> list[str]:
  """Consistency problems between assignment.py and tests.py (empty list = fine)."""
  problems = []
  nb = instructor_notebook(assignment.source)
  solutions = {_function_of(c) for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")}
  cells = {_function_of(c): c for c in nb.cells if _is_test_cell(c)}
  for f in assignment.functions:
    if f not in solutions:
      problems.append(f"{f}: no solution cell with grade_id '{f}' in assignment.py.")
    cell = cells.get(f"test_{f}")
    want = assignment.points_for(f)
    if cell is None:
      problems.append(f"{f}: no test cell with grade_id 'test_{f}' in assignment.py.")
      continue
    got = cell.metadata["nbgrader"].get("points")
    if got is None or abs(float(got) - want) > 1e-9:
      problems.append(f"{f}: test cell 'test_{f}' has points {got}, tests.py gives {want:g}.")
    if f'grade("{assignment.id}", "{f}", globals())' not in cell.source:
      problems.append(f'{f}: test cell must call grade("{assignment.id}", "{f}", globals()).')
    if assignment.tests_for(f, hidden=True) and BEGIN_HIDDEN not in cell.source:
      problems.append(f"{f}: has hidden tests but its test cell has no hidden-test region.")
  for c in nb.cells:
    if c.metadata.get("nbgrader", {}).get("solution"):
      try:
        stub_source(c.source)
      except ValueError as e:
        problems.append(str(e).splitlines()[0])
  return problems


_KEEP = {"FUNCTIONS", "FORBIDDEN", "TIMEOUT", "TOTAL_TIMEOUT", "MEMORY_MB"}


def _decorator_names(node) -> set[str]:
  import ast

  out = set()
  for d in getattr(node, "decorator_list", []):
    d = d.func if isinstance(d, ast.Call) else d
    out.add(d.attr if isinstance(d, ast.Attribute) else getattr(d, "id", ""))
  return out


def _defined(node) -> set[str]:
  import ast

  if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
    return {node.name}
  if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
  return set()


def public_tests_source(text: str, assignment_id: str) -> str:
  """``tests.py`` without its hidden tests, and without every definition only they used.

  ``@hidden`` test functions are dropped; then, repeatedly, any top-level
  function, class or assignment that nothing left refers to (constants,
  reference helpers of the hidden tests) is dropped too. Comments go (the
  code is re-printed from its syntax tree) and the module docstring is
  replaced, so no hidden test's name, code or expected value remains.
  """
  import ast

  tree = ast.parse(text)
  body = [n for n in tree.body if "hidden" not in _decorator_names(n)]
  first = body[0] if body else None
  if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
    body = body[1:]
  while True:
    used: dict[int, set[str]] = {}
    for i, n in enumerate(body):
      used[i] = {x.id for x in ast.walk(n) if isinstance(x, ast.Name)} | {
        x.attr for x in ast.walk(n) if isinstance(x, ast.Attribute)
      }
    drop = []
    for i, n in enumerate(body):
      names = _defined(n)
      if not names or names & _KEEP or "points" in _decorator_names(n):
        continue
      if not any(names & used[j] for j in used if j != i):
        drop.append(i)
    for i, n in enumerate(body):  # imports: drop the names nothing left uses (a hidden test's hypothesis)
      if isinstance(n, (ast.Import, ast.ImportFrom)) and not (
        isinstance(n, ast.ImportFrom) and n.module == "__future__"
      ):
        rest = set().union(*(used[j] for j in used if j != i))
        keep = [al for al in n.names if (al.asname or al.name.split(".")[0]) in rest or al.name == "*"]
        if not keep:
          drop.append(i)
        elif len(keep) < len(n.names):
          n.names = keep
    if not drop:
      break
    body = [n for i, n in enumerate(body) if i not in drop]
  doc = (
    f'"""Public tests of assignment {assignment_id}, released by '
    f"`autograder release {assignment_id} --out DIR`.\n\n"
    f"Run them with `autograder check {assignment_id}` in this release folder (or the notebook's test cells).\n"
    'The hidden tests are not here; they also count towards your grade.\n"""\n'
  )
  tree.body = body
  return doc + ast.unparse(tree) + "\n"


def data_files(assignment) -> dict[str, list[pathlib.Path]]:
  """Files of ``assignments/ID/`` a student release needs: ``{"text": [...], "tests": [...]}``.

  "text": those whose name the assignment's text mentions (copied next to the
  notebook); "tests": those the public tests read (copied beside them).
  Python helper scripts the text mentions (``record_fixtures.py``) count as text files.
  """
  folder = assignment.path
  text = pathlib.Path(assignment.source).read_text(encoding="utf-8")
  public = public_tests_source((folder / "tests.py").read_text(encoding="utf-8"), assignment.id)
  out = {"text": [], "tests": []}
  for p in sorted(folder.iterdir()):
    if not p.is_file() or p.name in ("assignment.py", "tests.py") or p.name.startswith((".", "_")):
      continue
    if re.search(r"(?<![\w.])" + re.escape(p.name) + r"(?![\w])", text):
      out["text"].append(p)
    if p.suffix != ".py" and re.search(r"[\"']" + re.escape(p.name) + r"[\"']", public):
      out["tests"].append(p)
  return out
