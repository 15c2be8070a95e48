"""Feedback across tests: "fix `gru_step` first" when a function fails because a graded function it calls fails.

A test judges one function, but that function may call others the student wrote (``classifier_apply`` calls
``gru_step`` and ``unroll``). When a callee fails its own tests, the caller's wrong values say nothing about
the caller: the useful message is to fix the callee first. The call graph is read from the submission's
source (parsed, never run); the verdicts come from the tests just run.
"""

from __future__ import annotations

import ast
import re
import threading

_AST_LOCK = threading.Lock()  # CPython 3.11's ast.parse is not thread-safe (grade-all grades in threads)


def graded_callees(cells: list[dict], functions) -> dict[str, list[str]]:
  """{graded function: the graded functions it calls, directly or through helpers}, in teaching order."""
  functions = list(functions)
  bodies: dict[str, list[ast.AST]] = {}
  for cell in cells:
    try:
      with _AST_LOCK:
        tree = ast.parse(cell.get("source", ""))
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # the worker reports why it cannot compile
      continue
    for node in tree.body:
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        bodies.setdefault(node.name, []).append(node)
      elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        bodies.setdefault(node.targets[0].id, []).append(node.value)
  direct = {
    name: {
      n.id for node in nodes for n in ast.walk(node) if isinstance(n, ast.Name) and n.id in bodies and n.id != name
    }
    for name, nodes in bodies.items()
  }
  out = {}
  for fn in functions:
    seen, stack = set(), list(direct.get(fn, ()))
    while stack:
      cur = stack.pop()
      if cur in seen or cur == fn:
        continue
      seen.add(cur)
      stack.extend(direct.get(cur, ()))
    out[fn] = [f for f in functions if f in seen]
  return out


def fix_callees_first(results: list, callees: dict[str, list[str]]) -> list:
  """Prefix each failed test of a function whose graded callee fails its own tests with "fix `callee` first".

  ``results`` are the runner's TestResult records (``function``, ``score``, ``max_score``, ``output``); they are
  updated in place and returned. Scores do not change: only the message says where to start.
  """
  failing = {r.function for r in results if r.score < r.max_score}
  for r in results:
    if r.score >= r.max_score:
      continue
    broken = [g for g in callees.get(r.function, ()) if g in failing]
    if not broken:
      continue
    names = ", ".join(f"`{g}`" for g in broken)
    first = (
      f"fix {names} first: `{r.function}` calls {names}, which "
      f"{'fails its' if len(broken) == 1 else 'fail their'} own tests, so this verdict says nothing about "
      f"`{r.function}` itself yet."
    )
    r.output = first + ("\nwhat this test saw: " + r.output if r.output else "")
  return results


_DEF = re.compile(r"^(?:async\s+)?def\s+([A-Za-z_]\w*)|^class\s+([A-Za-z_]\w*)|^([A-Za-z_]\w*)\s*=", re.M)


def syntax_errors(cells: list[dict], functions) -> list[tuple[str, list[str]]]:
  """[(message, graded functions lost)] for each cell (or the .py file) that does not parse.

  The message gives the line, the code on it and a caret, and for a notebook the cell's position as Jupyter
  shows it and the functions it defines: ``syntax error in cell 12 (defines `dense_backward`), line 3: ...``.
  """
  out = []
  for cell in cells:
    src = cell.get("source", "")
    try:
      with _AST_LOCK:
        ast.parse(src)
      continue
    except SyntaxError as e:
      err = e
    except ValueError:  # null bytes
      out.append(("the submission contains null bytes: save it again as plain text.", list(functions)))
      continue
    except (RecursionError, MemoryError):  # too deeply nested to parse: the worker says "cannot be compiled"
      continue
    defined = [next(g for g in m.groups() if g) for m in _DEF.finditer(src)]
    lost = [f for f in functions if f in defined] if cell.get("index") is not None else list(functions)
    line = (err.text or "").rstrip("\n")
    code = ""
    if line.strip():
      shown = line.lstrip()
      caret = max((err.offset or 1) - 1 - (len(line) - len(shown)), 0)
      code = f"\n    {err.lineno} | {shown}\n    {' ' * len(str(err.lineno))} | {' ' * min(caret, len(shown))}^"
    if cell.get("index") is None:
      where, then = f"at line {err.lineno}", "Nothing in the file ran, so every test fails until it is fixed."
    else:
      names = ", ".join(f"`{f}`" for f in defined[:4]) or "no function"
      where = f"in cell {cell['index']} (defines {names}), line {err.lineno}"
      then = (
        "That cell did not run, so " + ", ".join(f"`{f}`" for f in lost) + " is not defined."
        if lost
        else "That cell did not run."
      )
    out.append((f"syntax error {where}: {err.msg}.{code}\n{then}", lost))
  return out


def load_failure_first(results: list, notes: list[str], cells: list[dict], functions) -> tuple[list, list[str]]:
  """A syntax error comes first and alone: its note leads, the tests it broke keep no other message.

  Drops the worker's shorter "syntax error at ..." note and the "not defined" note for the functions lost.
  """
  errors = syntax_errors(cells, functions)
  if not errors:
    return results, notes
  lost = {f for _, fs in errors for f in fs}
  for r in results:
    if r.function in lost and r.score < r.max_score:
      r.output = ""
  kept = [n for n in notes if not n.startswith("syntax error at ")]
  fixed = []
  for n in kept:
    if n.startswith("not defined in the submission: "):
      rest = [f.strip() for f in n[len("not defined in the submission: ") :].rstrip(".").split(",")]
      rest = [f for f in rest if f and f not in lost]
      if not rest:
        continue
      n = "not defined in the submission: " + ", ".join(rest) + "."
    fixed.append(n)
  return results, [m for m, _ in errors] + fixed
