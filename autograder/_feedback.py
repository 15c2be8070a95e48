"""Feedback across tests: "fix `gru_step` first" when a function fails because a graded function it calls fails.

A test judges one function, but that function may call others the student wrote (``classifier_apply`` calls
``gru_step`` and ``unroll``). When a callee fails its own tests, the caller's wrong values say nothing about
the caller: the useful message is to fix the callee first. The call graph is read from the submission's
source (parsed, never run); the verdicts come from the tests just run.
"""
from __future__ import annotations

import ast
import threading

_AST_LOCK = threading.Lock()   # CPython 3.11's ast.parse is not thread-safe (grade-all grades in threads)


def graded_callees(cells: list[dict], functions) -> dict[str, list[str]]:
  """{graded function: the graded functions it calls, directly or through helpers}, in teaching order."""
  functions = list(functions)
  bodies: dict[str, list[ast.AST]] = {}
  for cell in cells:
    try:
      with _AST_LOCK:
        tree = ast.parse(cell.get("source", ""))
    except (SyntaxError, ValueError):
      continue
    for node in tree.body:
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        bodies.setdefault(node.name, []).append(node)
      elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        bodies.setdefault(node.targets[0].id, []).append(node.value)
  direct = {name: {n.id for node in nodes for n in ast.walk(node) if isinstance(n, ast.Name) and n.id in bodies
                   and n.id != name} for name, nodes in bodies.items()}
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
    first = (f"fix {names} first: `{r.function}` calls {names}, which "
             f"{'fails its' if len(broken) == 1 else 'fail their'} own tests, so this verdict says nothing about "
             f"`{r.function}` itself yet.")
    r.output = first + ("\nwhat this test saw: " + r.output if r.output else "")
  return results
