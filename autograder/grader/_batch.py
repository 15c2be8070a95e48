"""Grading a folder of submissions: ``grade_all`` (optionally one shard of it) and ``collect``.

Bookkeeping rules (what an instructor can rely on):

- **Every entry of the folder is accounted for.** A ``.py``, an ``.ipynb`` or a folder is graded; anything else
  (a ``.txt``, a symbolic link, a hidden file) gets a *skipped* record that says why, so it has a row in
  ``grades.csv`` and a line in the run's summary. Only the output folder itself (when it sits inside the
  submissions folder) is left out, and the summary says so.
- **Name collisions are graded, not resolved silently.** ``zed.py`` beside ``zed.ipynb`` (or a folder ``zed/``):
  each is graded under its full name (``zed.py``, ``zed.ipynb``) and both rows are flagged as a collision.
- **A result is reused only for the same content.** Each record holds the SHA-256 of the submission (a folder:
  its relative paths and bytes) and what it was graded for (assignment, ``--only``); a record whose hash differs
  is regraded. ``force=True`` regrades everything.
- **Refused operations are flagged.** A submission that tried something the sandbox refuses (a shell, the
  network, writing outside its folder, reading the hidden tests, monkeypatching numpy, a forbidden function)
  gets ``refused: [{"function", "what"}]`` in its record and a ``refused`` column in ``grades.csv``.
- **Names are escaped.** A file name that is not UTF-8 (or holds control characters) is reported with
  backslash escapes; one odd name never stops the batch.
- **Shards.** ``shard=(i, n)`` grades only the entries whose name hashes to ``i`` modulo ``n``: every entry lands
  in exactly one shard, whatever the others do. Shards write into one shared output folder (each record is
  written to a temporary name and renamed), each leaves ``_shards/i-of-n.json``, and :func:`collect` turns the
  records into ``grades.csv``. ``n`` shards plus ``collect`` give the same ``grades.csv`` as one run.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import os
import pathlib
import re
import sys
import threading
import time
import uuid
from typing import Any

GRADABLE = (".py", ".ipynb")
SHARDS_DIR = "_shards"
_RECORD_KEYS = {"assignment", "submission", "score", "max_score", "tests"}


# ---------------------------------------------------------------- names, hashes, writes


def escape_name(name: str | bytes) -> str:
  """A file name as text anyone can read: undecodable bytes as ``\\xNN``, control characters escaped."""
  if isinstance(name, bytes):
    raw = name
  else:
    try:
      raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
      raw = name.encode("utf-8", "backslashreplace")
  text = raw.decode("utf-8", "backslashreplace")
  return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii") for c in text)


def clean_text(obj: Any) -> Any:
  """``obj`` (a JSON-able tree) with every string made encodable (lone surrogates escaped)."""
  if isinstance(obj, str):
    try:
      obj.encode("utf-8")
      return obj
    except UnicodeEncodeError:
      return escape_name(obj)
  if isinstance(obj, dict):
    return {clean_text(k): clean_text(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [clean_text(v) for v in obj]
  return obj


def content_hash(path: pathlib.Path) -> str:
  """SHA-256 of a file's bytes, or of a folder's relative paths and file bytes (links hashed as their target)."""
  h = hashlib.sha256()
  path = pathlib.Path(path)
  if path.is_symlink() or not path.is_dir():
    items = [(b"", path)]
  else:
    items = []
    for dirpath, dirnames, filenames in os.walk(path):  # os.walk does not follow links to folders
      dirnames.sort()
      for f in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
        full = pathlib.Path(dirpath, f)
        items.append((os.fsencode(full.relative_to(path)), full))
  for rel, full in items:
    h.update(b"P" + len(rel).to_bytes(4, "little") + rel)
    if full.is_symlink():
      h.update(b"L" + os.fsencode(os.readlink(full)))
      continue
    try:
      with open(full, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
          h.update(chunk)
    except OSError as e:
      h.update(b"E" + str(e.errno).encode())
  return h.hexdigest()


def atomic_write(path: pathlib.Path, text: str):
  """Write ``text`` to a unique temporary name beside ``path``, then rename: readers never see half a file,
  and concurrent writers (threads, shards on other machines sharing the folder) never clobber a temp file."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.{uuid.uuid4().hex[:8]}.tmp")
  try:
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if tmp.exists():
      tmp.unlink()


def shard_of(key: str, n: int) -> int:
  """The shard (0..n-1) that grades the entry named ``key``: a hash, so it depends on nothing else."""
  return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % n


def parse_shard(text: str | None, shards: int | None = None) -> tuple[int, int] | None:
  """``"I/N"`` -> (I, N); with no text, ``shards=N`` and the environment's ``JOB_COMPLETION_INDEX`` (Kubernetes
  Indexed Jobs) give I. None when not sharded."""
  if text:
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m:
      raise ValueError(f"--shard takes I/N (e.g. 0/4), got {text!r}.")
    i, n = int(m.group(1)), int(m.group(2))
  elif shards:
    idx = os.environ.get("JOB_COMPLETION_INDEX")
    if idx is None or not idx.strip().isdigit():
      raise ValueError(
        "--shards N needs --shard I/N or the environment variable JOB_COMPLETION_INDEX "
        "(set by a Kubernetes Indexed Job)."
      )
    i, n = int(idx), int(shards)
  else:
    return None
  if n < 1 or not 0 <= i < n:
    raise ValueError(f"shard {i}/{n}: need 0 <= I < N.")
  if shards and n != shards:
    raise ValueError(f"--shard {i}/{n} disagrees with --shards {shards}.")
  return i, n


# ---------------------------------------------------------------- the folder's entries


class Entry:
  """One item of the submissions folder: its report name (``key``), path, and why it is skipped (if it is)."""

  def __init__(self, key: str, path: pathlib.Path, skip: str | None = None, collision: list[str] | None = None):
    self.key, self.path, self.skip, self.collision = key, path, skip, collision or []

  def __repr__(self):
    return f"Entry({self.key!r}, skip={self.skip!r}, collision={self.collision})"


def scan(folder: pathlib.Path, out: pathlib.Path | None = None) -> tuple[list[Entry], list[str]]:
  """Every entry of ``folder`` as an :class:`Entry` (sorted by key), and what was left out (only ``out``)."""
  folder = pathlib.Path(folder)
  left_out = []
  raw = []
  for p in sorted(folder.iterdir(), key=lambda p: os.fsencode(p.name)):
    if out is not None and not p.is_symlink() and p.is_dir() and p.resolve() == pathlib.Path(out).resolve():
      left_out.append(f"{escape_name(p.name)}/ (this run's output folder)")
      continue
    raw.append(p)
  stems: dict[str, list[pathlib.Path]] = {}
  entries = []
  for p in raw:
    name = escape_name(p.name)
    if p.is_symlink():
      entries.append(Entry(name, p, "a symbolic link: not followed (submit the file itself)"))
    elif p.name.startswith("."):
      entries.append(Entry(name, p, "a hidden file or folder (its name starts with '.')"))
    elif p.name == "__pycache__":
      entries.append(Entry(name, p, "Python's bytecode cache"))
    elif p.is_dir():
      stems.setdefault(name, []).append(p)
    elif p.is_file() and p.suffix in GRADABLE:
      stems.setdefault(escape_name(p.stem), []).append(p)
    elif p.is_file():
      what = f"a {p.suffix} file" if p.suffix else "a file without an extension"
      entries.append(Entry(name, p, f"{escape_name(what)}: submissions are .py, .ipynb or a folder"))
    else:
      entries.append(Entry(name, p, "not a regular file or folder"))
  for stem, ps in stems.items():
    if len(ps) == 1:
      entries.append(Entry(stem, ps[0]))
      continue
    names = [escape_name(p.name) + ("/" if p.is_dir() else "") for p in ps]
    for p, n in zip(ps, names):
      entries.append(Entry(n.rstrip("/"), p, collision=[x for x in names if x != n]))
  keys = [e.key for e in entries]
  seen = set()
  for e in entries:  # two raw names escaping to the same text (very unlikely): make the keys distinct
    if keys.count(e.key) > 1 and e.key in seen:
      e.key = f"{e.key}#{content_hash(e.path)[:8]}"
    seen.add(e.key)
  entries.sort(key=lambda e: e.key)
  return entries, left_out


def record_path(out: pathlib.Path, key: str) -> pathlib.Path:
  """``out/<key>.json``; a key too long for a file name is cut and given a hash of the whole."""
  name = key
  if len(name.encode("utf-8")) > 200:
    name = name.encode("utf-8")[:150].decode("utf-8", "ignore") + "#" + hashlib.sha256(key.encode()).hexdigest()[:12]
  return pathlib.Path(out) / f"{name}.json"


# ---------------------------------------------------------------- refused operations

_REFUSAL_PATTERNS = [
  re.compile(r"uses ([^\n]*?), which submissions may not use"),
  re.compile(r"submissions may (?:not|only) [^\n]*?(?=(?:\.|;)?(?:\s*$|\n| \(from an earlier))", re.M),
  re.compile(r"replaced [^\n]*? while running; monkeypatching"),
  re.compile(r"raised PermissionError[^\n]*"),
  re.compile(r"Read-only file system[^\n]*"),
]
_NOTE_PATTERNS = [
  (re.compile(r"^(\w+) uses (.+?): refused"), lambda m: (m.group(1), f"uses {m.group(2)} (forbidden)")),
  (re.compile(r"^top-level code replaced ([^;]+);"), lambda m: ("(top level)", f"replaced {m.group(1)}")),
  (
    re.compile(r"^top-level code raised .*?((?:submissions may|PermissionError|Read-only file system)[^\n]*)"),
    lambda m: ("(top level)", m.group(1)),
  ),
]


def refused_operations(report: dict) -> list[dict]:
  """What the submission tried that the sandbox refused, and in which function, read from its report.

  Each refusal is a message in the report (a test's feedback, or a note about loading); a refusal the student's
  own code caught and hid leaves no message and so is not listed here.
  """
  found: dict[tuple[str, str], None] = {}
  for note in report.get("notes", []):
    for pat, what in _NOTE_PATTERNS:
      m = pat.search(note)
      if m:
        found[tuple(s[:200] for s in what(m))] = None
        break
  for t in report.get("tests", []):
    text = t.get("output") or ""
    for pat in _REFUSAL_PATTERNS:  # most specific first: one message gives one entry
      hits = [
        (f"uses {m.group(1)} (forbidden)" if pat.groups else m.group(0).strip())[:200] for m in pat.finditer(text)
      ]
      for what in hits:
        found[(t.get("function", "?"), what)] = None
      if hits:
        break
  return [{"function": fn, "what": what} for fn, what in found]


# ---------------------------------------------------------------- grading


def _skipped_record(assignment, e: Entry, max_score: float) -> dict:
  return {
    "assignment": assignment.id,
    "submission": e.key,
    "status": "skipped",
    "score": 0.0,
    "max_score": max_score,
    "tests": [],
    "notes": [f"not graded: {e.skip}."],
    "isolation": "",
    "seconds": 0.0,
    "sha256": None,
    "graded_for": None,
    "refused": [],
    "collision": [],
  }


def _graded_for(assignment_id: str, functions) -> dict:
  return {"assignment": assignment_id, "functions": sorted(functions) if functions else None}


def _reusable(rec_path: pathlib.Path, digest: str, graded_for: dict) -> dict | None:
  try:
    old = json.loads(rec_path.read_text(encoding="utf-8"))
  except (OSError, ValueError):
    return None
  if (
    not isinstance(old, dict)
    or old.get("sha256") != digest
    or old.get("graded_for") != graded_for
    or old.get("status") == "grader failed"
  ):  # the grader's own failure is retried, never kept
    return None
  return old


def _reuse_or_plan(
  a, mine: list[Entry], out: pathlib.Path, max_score: float, graded_for: dict, force: bool
) -> tuple[dict[str, dict], list[tuple[Entry, str]]]:
  """The records that need no grading (skipped entries, unchanged submissions already graded) and the rest to grade.

  A skipped entry's record is (re)written only when it changed; ``force`` regrades everything.
  Returns ({key: record}, [(entry, sha256)] to grade).
  """
  records: dict[str, dict] = {}
  todo = []
  for e in mine:
    if e.skip:
      rec = _skipped_record(a, e, max_score)
      text, dest = json.dumps(rec, indent=1) + "\n", record_path(out, e.key)
      try:
        same = dest.read_text(encoding="utf-8") == text
      except (OSError, ValueError):
        same = False
      if not same:  # left alone when unchanged, like a reused grade
        atomic_write(dest, text)
      records[e.key] = rec
      continue
    digest = content_hash(e.path)
    old = None if force else _reusable(record_path(out, e.key), digest, graded_for)
    if old is not None:
      old["reused"] = True
      records[e.key] = old
    else:
      todo.append((e, digest))
  return records, todo


def _grade_one(
  assignment_id: str,
  a,
  e: Entry,
  digest: str,
  denied: list[str],
  out: pathlib.Path,
  timeout,
  functions,
  graded_for: dict,
) -> dict:
  """Grade one entry (a failure of the grader itself is retried once, then recorded) and write its record."""
  from autograder.grader import _runner

  try:
    try:
      r = _runner.grade_submission(assignment_id, e.path, timeout=timeout, denied_extra=denied, functions=functions)
    except Exception:  # noqa: BLE001  (a failure of the grader itself is not the student's: try once more)
      r = _runner.grade_submission(assignment_id, e.path, timeout=timeout, denied_extra=denied, functions=functions)
    d = r.as_dict()
    d["status"] = "graded"
  except Exception as ex:  # noqa: BLE001  (never let one submission stop the batch)
    tests = [t for t in a.tests if functions is None or t.function in functions]
    msg = f"the grader failed on this submission: {type(ex).__name__}: {ex}"
    d = _runner._all_failed(a, tests, e.key, msg, time.monotonic()).as_dict()  # noqa: SLF001  (same package)
    d["status"] = "grader failed"
  d = clean_text(d)
  d["submission"] = e.key
  d["sha256"] = digest
  d["graded_for"] = graded_for
  d["collision"] = list(e.collision)
  if e.collision:
    d["notes"] = [f"name collision: also submitted as {', '.join(e.collision)}; each was graded, pick one."] + d.get(
      "notes", []
    )
  d["refused"] = refused_operations(d)
  try:
    atomic_write(record_path(out, e.key), json.dumps(d, indent=1) + "\n")
  except (OSError, ValueError) as ex:  # e.g. a full disk: report it, go on with the others
    d["status"] = "grader failed"
    d["notes"] = [f"its record could not be written: {type(ex).__name__}: {ex}"] + d.get("notes", [])
  return d


def grade_all(
  assignment_id: str,
  folder,
  out,
  jobs: int = 2,
  force: bool = False,
  timeout=None,
  progress: bool = True,
  functions: list[str] | None = None,
  shard: tuple[int, int] | None = None,
  summary: list[str] | None = None,
) -> list[dict]:
  """Grade every entry of ``folder`` (or, with ``shard=(i, n)``, the entries of shard ``i``) into ``out``.

  Writes ``out/<name>.json`` per entry, ``out/_shards/i-of-n.json`` when done and, when not sharded,
  ``out/grades.csv`` (through :func:`collect`). Returns this run's records (reused ones included); lines for
  the run's summary are appended to ``summary`` when given.
  """
  from autograder.grader import _registry

  a = _registry.load_assignment(assignment_id)
  unknown = sorted(set(functions or ()) - set(a.functions))
  if unknown:
    raise ValueError(
      f"assignment {assignment_id} has no function(s) {', '.join(unknown)}; its functions are {', '.join(a.functions)}."
    )
  folder, out = pathlib.Path(folder).resolve(), pathlib.Path(out).resolve()
  if not folder.is_dir():
    raise ValueError(f"{folder} is not a folder of submissions.")
  out.mkdir(parents=True, exist_ok=True)
  entries, left_out = scan(folder, out)
  i, n = shard or (0, 1)
  mine = [e for e in entries if shard_of(e.key, n) == i]
  max_score = sum(t.points for t in a.tests if functions is None or t.function in functions)
  graded_for = _graded_for(assignment_id, functions)
  records, todo = _reuse_or_plan(a, mine, out, max_score, graded_for, force)

  bar = None
  if progress:
    from tqdm import tqdm

    bar = tqdm(
      total=len(mine), initial=len(mine) - len(todo), unit="sub", desc=f"grading {assignment_id}", file=sys.stderr
    )

  def one(item):
    e, digest = item
    return _grade_one(assignment_id, a, e, digest, [str(folder), str(out)], out, timeout, functions, graded_for)

  with cf.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
    for d in pool.map(one, todo):
      records[d["submission"]] = d
      if bar:
        bar.update(1)
        bar.set_postfix_str(f"{d['submission']}: {d['score']:g}/{d['max_score']:g}")
  if bar:
    bar.close()
  marker = {
    "assignment": assignment_id,
    "folder": escape_name(str(folder)),
    "shard": i,
    "shards": n,
    "keys": sorted(records),
    "left_out": left_out,
    "finished": time.time(),
  }
  atomic_write(out / SHARDS_DIR / f"{i}-of-{n}.json", json.dumps(marker, indent=1) + "\n")
  reports = [records[k] for k in sorted(records)]
  if summary is not None:
    summary.extend(summarize(reports, left_out, todo_keys={e.key for e, _ in todo}))
  if shard is None:
    collect(out, assignment_id=assignment_id)
  return reports


def summarize(reports: list[dict], left_out=(), todo_keys=None) -> list[str]:
  """Readable lines: counts, then every skipped entry, collision, refused operation and grader failure."""
  graded = [r for r in reports if r.get("status") != "skipped"]
  lines = []
  if todo_keys is not None:
    reused = sum(1 for r in graded if r["submission"] not in todo_keys)
    lines.append(
      f"{len(graded)} graded ({len(graded) - reused} now, {reused} unchanged since their last grade), "
      f"{len(reports) - len(graded)} skipped"
    )
  else:
    lines.append(f"{len(graded)} graded, {len(reports) - len(graded)} skipped")
  for r in reports:
    name = r["submission"]
    if r.get("status") == "skipped":
      lines.append(f"  skipped  {name}: {r['notes'][0] if r.get('notes') else ''}")
  for r in reports:
    if r.get("collision"):
      lines.append(f"  collision  {r['submission']} (also {', '.join(r['collision'])}): each graded")
  for r in reports:
    for x in r.get("refused") or []:
      lines.append(f"  refused  {r['submission']}: {x['function']}: {x['what']}")
  for r in reports:
    if r.get("status") == "grader failed":
      lines.append(f"  grader failed  {r['submission']}: {(r.get('notes') or [''])[0][:200]}")
  for x in left_out:
    lines.append(f"  left out  {x}")
  return lines


# ---------------------------------------------------------------- collect


def _is_record(d) -> bool:
  return isinstance(d, dict) and _RECORD_KEYS <= set(d) and isinstance(d.get("tests"), list)


def collect(out, assignment_id: str | None = None, summary: list[str] | None = None) -> list[dict]:
  """Write ``out/grades.csv`` from the records in ``out``; return them.

  With shard markers (``out/_shards/i-of-n.json``), the records are those the latest ``n``'s shards listed, and
  a missing shard is reported (a ``ValueError`` naming it); records of submissions no longer in the folder are
  left out and listed. Without markers (a folder from an older version), every record in ``out`` counts.
  """
  from autograder.grader import _registry, _report

  out = pathlib.Path(out)
  if not out.is_dir():
    raise ValueError(f"{out}: no such folder (give the --out folder of grade-all).")
  markers = []
  for p in sorted((out / SHARDS_DIR).glob("*-of-*.json")):
    try:
      m = json.loads(p.read_text(encoding="utf-8"))
      markers.append(m)
    except (OSError, ValueError):
      continue
  records: dict[str, dict] = {}
  for p in sorted(out.glob("*.json")):
    try:
      d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
      continue
    if _is_record(d):
      records[d["submission"]] = d
  lines = []
  left_out: list[str] = []
  if markers:
    n = max(markers, key=lambda m: m.get("finished", 0))["shards"]
    current = {m["shard"]: m for m in markers if m.get("shards") == n}
    missing = sorted(set(range(n)) - set(current))
    if missing:
      raise ValueError(
        f"{out}: shard(s) {', '.join(f'{i}/{n}' for i in missing)} have not finished (no "
        f"{SHARDS_DIR}/I-of-{n}.json): run them, then collect again."
      )
    keys = set()
    for m in current.values():
      keys.update(m.get("keys", []))
      left_out.extend(x for x in m.get("left_out", []) if x not in left_out)
    absent = sorted(keys - set(records))
    if absent:
      raise ValueError(f"{out}: the record(s) of {', '.join(absent[:5])} are missing: rerun their shard.")
    stale = sorted(set(records) - keys)
    records = {k: records[k] for k in sorted(keys)}
    for k in stale:
      lines.append(f"  not in the last run (left out of grades.csv)  {k}")
  if assignment_id is None:
    ids = {r["assignment"] for r in records.values()}
    if len(ids) > 1:
      raise ValueError(f"{out} holds records of several assignments ({', '.join(sorted(ids))}).")
    assignment_id = ids.pop() if ids else None
  functions: list[str] = []
  for r in records.values():  # the graded functions, in the order the records list them
    for t in r["tests"]:
      if t.get("function") not in functions:
        functions.append(t.get("function"))
  if assignment_id:
    try:
      functions = [f for f in _registry.load_assignment(assignment_id).functions if f in functions] or functions
    except ValueError:  # collecting where the assignment is not installed: the records' order
      pass
  reports = [records[k] for k in sorted(records)]
  atomic_write(out / "grades.csv", _report.csv_text(reports, functions))
  if summary is not None:
    summary.extend(summarize(reports, left_out) + lines)
  return reports
