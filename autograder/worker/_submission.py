"""Reading a submission (.py, .ipynb or a folder) and inspecting it statically.

Everything here treats the submission as data: it is parsed, never run.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import pathlib
import re
import shutil
import threading

MAX_BYTES = 20 * 2**20  # a submission folder larger than this is refused
_MAGIC = re.compile(r"^\s*(%|!)")
_SKIP_TAG = re.compile(r"""\btags\s*=\s*\[[^\]]*["']skip-grading["']""")  # in a jupytext "# %%" cell header
_NBGRADER_META = re.compile(r"\bnbgrader\s*=\s*(\{[^}]*\})")
_AST_LOCK = threading.Lock()


@dataclasses.dataclass
class Submission:
  """A submission read as data (never run here): where it is, what to grade, its code cells, notes."""

  name: str  # file name without extension (used for report names)
  path: pathlib.Path  # the original file or folder (never written)
  entry: pathlib.Path  # the .py or .ipynb to grade
  kind: str  # "py" or "ipynb"
  cells: list[dict]  # [{"index": int|None, "source": str}]
  notes: list[str]  # things skipped (magics, shell escapes, test cells)


class SubmissionUnreadable(ValueError):
  """The submission cannot be graded at all (no gradable file, too large, a link...); the message says why."""

  pass


def display(name) -> str:
  """``name`` (a str, possibly holding undecodable bytes as surrogates) as printable text for messages:
  undecodable bytes as ``\\xff``, control characters escaped."""
  name = os.fspath(name)
  if isinstance(name, bytes):
    name = os.fsdecode(name)
  text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
  return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


def _candidates(root: pathlib.Path) -> tuple[list[pathlib.Path], list[pathlib.Path]]:
  """(.py/.ipynb files under ``root``, those of them that are symbolic links); links are never followed."""
  found, links = [], []
  for d, dirs, files in os.walk(root, followlinks=False):
    dirs[:] = sorted(x for x in dirs if x != ".ipynb_checkpoints" and not x.startswith("."))
    for n in sorted(files):
      p = pathlib.Path(d, n)
      if p.suffix not in (".ipynb", ".py") or n.startswith("."):
        continue
      if p.is_symlink():
        links.append(p)
      elif p.is_file():
        found.append(p)
  return found, links


def find_entry(path: pathlib.Path, functions=()) -> pathlib.Path:
  """The file to grade: ``path`` itself, or in a folder the .ipynb/.py defining most graded functions.

  Symbolic links are neither followed nor copied: a link could show the grader any file it can read (the
  assignment's own solution, another student's file).
  """
  if path.is_symlink():
    raise SubmissionUnreadable(
      f"{display(path.name)} is a symbolic link; submit the file itself (links are not followed)."
    )
  if path.is_file():
    if path.suffix not in (".py", ".ipynb"):
      raise SubmissionUnreadable(
        f"{display(path.name)}: submissions are .py or .ipynb files (or a folder holding one)."
      )
    return path
  if path.is_dir():
    found, links = _candidates(path)
    if not found:
      if links:
        raise SubmissionUnreadable(
          f"{display(path.name)}/: its only .py/.ipynb files are symbolic links "
          f"({display(links[0].relative_to(path))}...), which are not followed; "
          "submit the files themselves."
        )
      raise SubmissionUnreadable(f"{display(path.name)}/: no .py or .ipynb file inside.")
    # [ \t]* (not \s*): \s also matches newlines, and on a file of blank lines the search was quadratic.
    pattern = (
      re.compile(r"(?:def[ \t]+|^[ \t]*)(" + "|".join(map(re.escape, functions)) + r")\b[ \t]*[(=]", re.M)
      if functions
      else None
    )

    def score(p):
      defined = 0
      if pattern is not None and p.stat().st_size <= MAX_BYTES:
        defined = len(set(pattern.findall(p.read_text(encoding="utf-8", errors="replace"))))
      return (-defined, p.suffix != ".ipynb", len(p.parts), p.name)

    return min(found, key=score)
  raise SubmissionUnreadable(f"{display(path)}: no such file or folder.")


def read_submission(path, functions=()) -> Submission:
  """Read the ``.py``, ``.ipynb`` or folder at ``path`` into a :class:`Submission` without running it.

  Notebook magics, shell escapes and test cells are left out (each with a note); ``functions`` picks a folder's
  entry file. Raises :class:`SubmissionUnreadable` with a message for the student.
  """
  path = pathlib.Path(path)
  entry = find_entry(path, functions)
  if entry.stat().st_size > MAX_BYTES:
    raise SubmissionUnreadable(f"{display(entry.name)} is larger than {MAX_BYTES // 2**20} MB.")
  notes: list[str] = []
  if entry.suffix == ".py":
    cells = [{"index": None, "source": _py_source(entry.read_text(encoding="utf-8", errors="replace"), notes)}]
    kind = "py"
  else:
    cells, kind = _notebook_cells(entry, notes), "ipynb"
  name = path.stem if path.is_file() else path.name
  return Submission(name=name, path=path, entry=entry, kind=kind, cells=cells, notes=notes)


def _py_source(text: str, notes: list[str]) -> str:
  """``text`` with the cells a notebook submission would leave out blanked (line numbers kept).

  A ``.py`` submission runs as one module, but a percent-format file (what
  jupytext writes for a notebook) marks its cells with ``# %%`` lines; cells
  tagged ``skip-grading`` (figures, demos) and nbgrader test cells (the
  grader runs the tests itself) are left out, as they are in a notebook.
  """
  lines, skipping = text.splitlines(), False
  for i, line in enumerate(lines):
    if line.startswith("# %%"):
      skipping = _py_cell_skipped(line)
      if skipping:
        notes.append(f"line {i + 1}: {skipping} cell left out")
    if skipping:
      lines[i] = ""
  return "\n".join(lines) + ("\n" if text.endswith("\n") else "")


def _py_cell_skipped(header: str) -> str:
  """Why the cell under a ``# %%`` header is left out ("skip-grading", "test"), or ""."""
  if _SKIP_TAG.search(header):
    return "skip-grading"
  m = _NBGRADER_META.search(header)
  if m:
    try:
      meta = json.loads(m.group(1))
    except ValueError:
      return ""
    if isinstance(meta, dict) and meta.get("grade") and not meta.get("solution"):
      return "test"
  return ""


def _notebook_cells(entry: pathlib.Path, notes: list[str]) -> list[dict]:
  try:
    nb = json.loads(entry.read_text(encoding="utf-8", errors="replace"))
  except RecursionError:
    raise SubmissionUnreadable(
      f"{display(entry.name)} is not a readable notebook (its JSON is nested too deeply)."
    ) from None
  except (ValueError, MemoryError) as e:
    raise SubmissionUnreadable(f"{display(entry.name)} is not a readable notebook ({type(e).__name__}).") from None
  raw = nb.get("cells") if isinstance(nb, dict) else None
  if not isinstance(raw, list):
    raise SubmissionUnreadable(f"{display(entry.name)} is not a readable notebook (no list of cells).")
  cells, code_i = [], 0
  for cell in raw:
    code_i += 1  # the cell's position as Jupyter shows it (markdown cells count too)
    if not isinstance(cell, dict) or cell.get("cell_type") != "code":
      continue
    src = cell.get("source", "")
    if isinstance(src, list) and all(isinstance(x, str) for x in src):
      src = "".join(src)
    elif not isinstance(src, str):
      raise SubmissionUnreadable(
        f"{display(entry.name)}: code cell {code_i}'s source is not text (a notebook "
        "cell's source is a string or a list of strings)."
      )
    meta = v if isinstance(v := cell.get("metadata"), dict) else {}
    nbg = v if isinstance(v := meta.get("nbgrader"), dict) else {}
    tags = v if isinstance(v := meta.get("tags"), list) else []
    if nbg.get("grade") and not nbg.get("solution"):
      continue  # an autograder test cell: the grader runs the tests itself
    if "skip-grading" in tags:
      continue
    if src.lstrip().startswith("%%"):
      notes.append(f"cell {code_i}: cell magic skipped ({src.strip().splitlines()[0][:40]})")
      continue
    lines = []
    for ln, line in enumerate(src.splitlines(), 1):
      if _MAGIC.match(line):
        notes.append(f"cell {code_i} line {ln}: IPython magic/shell escape skipped ({line.strip()[:40]})")
        lines.append("")  # keep line numbers
      else:
        lines.append(line)
    cells.append({"index": code_i, "source": "\n".join(lines) + "\n"})
  return cells


def copy_into(sub: Submission, scratch: pathlib.Path) -> pathlib.Path:
  """Copy the submission into ``scratch``; return the copy's entry path.

  The copy of the graded file gets a plain name (``submission.py``) when its own is not one (non-UTF-8
  bytes, spaces, ``=``...), so Python and XLA see a path they can handle. Symbolic links are not copied.
  """
  if sub.path.is_file():
    dest = scratch / ("submission" + sub.entry.suffix)
    shutil.copyfile(sub.entry, dest, follow_symlinks=False)
    return dest
  total = 0
  for d, dirs, files in os.walk(sub.path, followlinks=False):
    for n in files:
      p = os.path.join(d, n)
      if not os.path.islink(p) and os.path.isfile(p):
        total += os.path.getsize(p)
  if total > MAX_BYTES:
    raise SubmissionUnreadable(f"{display(sub.path.name)}/ holds more than {MAX_BYTES // 2**20} MB.")
  dest_root = scratch / "submission"
  shutil.copytree(
    sub.path,
    dest_root,
    symlinks=False,
    ignore_dangling_symlinks=True,
    ignore=lambda d, names: [
      n
      for n in names
      if os.path.islink(os.path.join(d, n))
      or not (os.path.isfile(os.path.join(d, n)) or os.path.isdir(os.path.join(d, n)))
    ],
  )
  rel = sub.entry.relative_to(sub.path)
  entry = dest_root / rel
  if not all(_SAFE_NAME.fullmatch(part) for part in rel.parts):
    safe = dest_root / ("_graded_submission" + sub.entry.suffix)
    os.replace(entry, safe)
    entry = safe
  return entry


# ---------------------------------------------------------------- static inspection


def forbidden_uses(cells: list[dict], functions, forbidden: dict[str, tuple]) -> dict[str, str]:
  r"""Which graded functions use dlfunc (always refused) or a name in ``forbidden[function]``.

  Resolves import aliases (``from dlfunc.nn import relu as r``), follows calls
  between top-level functions, and catches ``relu = dlfunc.nn.relu``.
  Returns {function: "dlfunc.nn.relu"}. Three steps: read the cells' top level
  (imports and definitions), list what each definition uses and calls, then
  walk each graded function's calls to the first refused name.

  >>> src = "from dlfunc.nn import relu as r\ndef act(x):\n  return r(x)\ndef f(x):\n  return act(x)\n"
  >>> cells = [{"source": src}]
  >>> forbidden_uses(cells, ["f"], {})
  {'f': 'dlfunc.nn.relu'}
  """
  aliases, bodies = _top_level(cells)
  uses, calls = {}, {}
  for name, nodes in bodies.items():
    uses[name], calls[name] = _body_uses(name, nodes, aliases, bodies)
  out: dict[str, str] = {}
  for fn in functions:
    hit = _first_refused(fn, uses, calls, forbidden.get(fn, ()))
    if hit:
      out[fn] = hit
  return out


def _top_level(cells: list[dict]) -> tuple[dict[str, str], dict[str, list[ast.AST]]]:
  """Step 1: the import aliases at the top level of all cells, and each top-level name's definitions.

  A definition is a ``def``/``class`` node or the value assigned to the name (``relu = dlfunc.nn.relu``); a name
  defined twice keeps both. A cell Python cannot parse is skipped: the worker reports it.
  """
  aliases: dict[str, str] = {}
  bodies: dict[str, list[ast.AST]] = {}
  for cell in cells:
    try:
      with _AST_LOCK:  # CPython 3.11's ast.parse is not thread-safe (grade-all grades in threads): "SystemError:
        tree = ast.parse(cell["source"])  # AST constructor recursion depth mismatch" scored whole submissions 0
    except (SyntaxError, ValueError, RecursionError, MemoryError, SystemError):
      continue  # the worker reports it ("cannot be compiled by Python: ..."); nothing to inspect here
    for node in tree.body:
      if isinstance(node, (ast.Import, ast.ImportFrom)):
        _record_imports(node, aliases)
      elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        bodies.setdefault(node.name, []).append(node)
      elif isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for t in targets:
          if isinstance(t, ast.Name) and node.value is not None:
            bodies.setdefault(t.id, []).append(node.value)
  return aliases, bodies


def _body_uses(name: str, nodes: list[ast.AST], aliases: dict[str, str], defined) -> tuple[set[str], set[str]]:
  """Step 2: the dotted names one top-level name's definitions use, and the other top-level names they mention.

  Modules imported inside a definition count as used, and its imports add aliases. With several definitions, each
  name is read under the aliases known after each definition's imports (every reading counts: stricter, never
  looser). Two walks over the definitions: one for imports, one for names.
  """
  used: set[str] = set()
  local = dict(aliases)
  versions: list[dict[str, str]] = []
  for n in nodes:
    for sub in ast.walk(n):
      if isinstance(sub, (ast.Import, ast.ImportFrom)):
        _record_imports(sub, local)
        if isinstance(sub, ast.ImportFrom) and sub.module:
          used.add(sub.module)
        elif isinstance(sub, ast.Import):
          used.update(a.name for a in sub.names)
    if not versions or versions[-1] != local:
      versions.append(dict(local))
  called: set[str] = set()
  for n in nodes:
    for sub in ast.walk(n):
      dotted = _dotted(sub)
      if not dotted:
        continue
      head, _, rest = dotted.partition(".")
      for v in versions:
        used.add(v[head] + ("." + rest if rest else "") if head in v else dotted)
      if head in defined and head != name:
        called.add(head)
  return used, called


def _first_refused(fn: str, uses: dict[str, set[str]], calls: dict[str, set[str]], refused) -> str | None:
  """Step 3: the first refused name that graded function ``fn`` reaches through calls between top-level names.

  dlfunc (any ``dlfunc.*``) is always refused, ``refused`` names (and their attributes) too. Within one
  definition the most specific name is reported first.
  """
  seen, stack = set(), [fn]
  while stack:
    cur = stack.pop()
    if cur in seen or cur not in uses:
      continue
    seen.add(cur)
    for u in sorted(uses[cur], key=lambda s: (-len(s), s)):  # most specific name first
      if u == "dlfunc" or u.startswith("dlfunc.") or any(u == f or u.startswith(f + ".") for f in refused):
        return u
    stack.extend(sorted(calls[cur]))
  return None


def _record_imports(node, aliases):
  if isinstance(node, ast.Import):
    for a in node.names:
      if a.asname:
        aliases[a.asname] = a.name
      else:
        aliases.setdefault(a.name.split(".")[0], a.name.split(".")[0])
  elif node.module and not node.level:
    for a in node.names:
      aliases[a.asname or a.name] = f"{node.module}.{a.name}" if a.name != "*" else node.module


def _dotted(node) -> str | None:
  parts = []
  while isinstance(node, ast.Attribute):
    parts.append(node.attr)
    node = node.value
  if isinstance(node, ast.Name):
    parts.append(node.id)
    return ".".join(reversed(parts))
  return None
