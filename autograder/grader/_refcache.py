"""A disk cache of the reference's outputs, so a check or a grade does not compute (and compile) them again.

The trusted grader computes the reference solution on each test's inputs; the
result depends only on the assignment's tests and reference code, the inputs and
the library versions. It is kept in ``$AUTOGRADER_CACHE`` (default
``~/.cache/autograder``), a folder of mode 0700 that the sandbox denies to every
worker (submissions must never read reference outputs; see ISOLATION.md).

Keys hash: every file of the assignment's folder (tests, data), the source of the installed
``dlfunc`` package (the references live there), the JAX, jaxlib and NumPy
versions, the reference's name, how it is run (plain, x64, vmap, vjp) and the
inputs' bytes. Entries are written atomically (a temporary file, then
``os.replace``) in the grader's frame format (``_wire``: JSON and raw arrays, no
pickle, so reading an entry runs nothing); an entry that cannot be read or
decoded, or whose stored key differs, is ignored and recomputed.
``AUTOGRADER_CACHE=off`` turns the cache off.

Compiled programs (JAX's persistent compilation cache) are kept too, apart by who
wrote them. The grader's own (its input keys, comparisons and references) live in
``xla/`` inside this folder, denied to workers like the rest of it
(:func:`keep_grader_programs`). A student's check keeps the submission's programs
in a folder of that submission path's own, beside this one
(:func:`submission_programs`): the worker writes it, so it is only ever given to
later checks of the same path (public tests only), never to a grade or to another
submission.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import os
import pathlib
import threading
from typing import Any, Callable

ENV = "AUTOGRADER_CACHE"
MAX_ENTRY = 64 * 2**20  # bytes: larger outputs are not worth a file
_MISS = object()
_DIGESTS: dict[str, str] = {}
_LOCK = threading.Lock()
stats = {"hits": 0, "misses": 0, "bad": 0}  # this process's counts (tests and the benchmark read them)


class _Block:
  """The assignment folder of a :func:`for_assignment` block and its source digest, worked out once per block."""

  def __init__(self, folder: pathlib.Path):
    self.folder, self.digest = folder, ""


_CURRENT: contextvars.ContextVar[_Block | None] = contextvars.ContextVar("autograder_refcache", default=None)


@contextlib.contextmanager
def for_assignment(folder):
  """While in this block (in this thread), the checks cache reference outputs for the assignment in ``folder``
  (``None``: nothing is cached). The sources are hashed once per block: keep one block to one grade.

  Outside it (nbgrader's kernel, the pytest plugin, a test calling a check directly) nothing is cached.
  """
  token = _CURRENT.set(None if folder is None else _Block(pathlib.Path(folder)))
  try:
    yield
  finally:
    _CURRENT.reset(token)


def current() -> pathlib.Path | None:
  """The assignment folder set by :func:`for_assignment`, or None."""
  block = _CURRENT.get()
  return None if block is None else block.folder


def cache_dir() -> pathlib.Path:
  """The cache folder (it may not exist yet): ``$AUTOGRADER_CACHE`` or ``~/.cache/autograder``."""
  env = os.environ.get(ENV, "").strip()
  if env and env.lower() not in ("off", "0", "none"):
    return pathlib.Path(env).expanduser().resolve()
  return (pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "autograder").resolve()


def enabled() -> bool:
  """False when ``AUTOGRADER_CACHE`` is ``off``."""
  return os.environ.get(ENV, "").strip().lower() not in ("off", "0", "none")


def _ensure_dir() -> pathlib.Path | None:
  """The cache folder, created with mode 0700 (and brought back to 0700); None when it cannot be used."""
  d = cache_dir()
  try:
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = d.stat()
    if st.st_uid != os.getuid():  # someone else's folder: never read what another user could have written
      return None
    if st.st_mode & 0o777 != 0o700:
      os.chmod(d, 0o700)
  except OSError:
    return None
  return d


PROGRAMS_KEPT = 16  # submission paths whose compiled programs are kept (the most recently checked)
PROGRAMS_MB = 128  # a submission's compiled programs beyond this are trimmed, oldest first
_GRADER_PROGRAMS: list[str] = []


def keep_grader_programs() -> bool:
  """Keep the programs this (trusted) process compiles in ``xla/`` of the cache folder, and reuse them.

  Call it once JAX is imported and before grading; only where the cache folder is denied to workers (the
  runner checks). Returns whether it is on.
  """
  d = _ensure_dir() if enabled() else None
  if d is None:
    return False
  folder = str(d / "xla")
  if _GRADER_PROGRAMS != [folder]:
    import warnings

    import jax

    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    warnings.filterwarnings("ignore", message=r"Error (reading|writing) persistent compilation cache")
    _GRADER_PROGRAMS[:] = [folder]
  return True


def programs_root() -> pathlib.Path:
  """Where checks keep each submission's compiled programs: beside the cache folder, never inside it."""
  d = cache_dir()
  return d.with_name(d.name + "-programs") if d.name else d / "autograder-programs"


def submission_programs(submission) -> pathlib.Path | None:
  """The folder (0700, created) of the programs compiled for checks of ``submission`` (by its real path), or
  None when there is none to use. Keeps the :data:`PROGRAMS_KEPT` most recently used folders and trims this
  one to :data:`PROGRAMS_MB`."""
  if not enabled():
    return None
  root = programs_root()
  digest = hashlib.sha256(f"{os.getuid()}\0{os.path.realpath(submission)}".encode()).hexdigest()[:32]
  folder = root / digest
  try:
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    if root.stat().st_uid != os.getuid():
      return None
    os.chmod(root, 0o700)
    folder.mkdir(exist_ok=True, mode=0o700)
    os.utime(folder)
    _trim(root, folder)
  except OSError:
    return None
  return folder


def _trim(root: pathlib.Path, current: pathlib.Path):
  import shutil

  folders = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
  for old in folders[PROGRAMS_KEPT:]:
    if old != current:
      shutil.rmtree(old, ignore_errors=True)
  files = [(p.stat().st_mtime, p.stat().st_size, p) for p in current.iterdir() if p.is_file()]
  total = sum(n for _, n, _ in files)
  if total > PROGRAMS_MB * 2**20:  # trimmed to half, oldest first
    for _, n, p in sorted(files, key=lambda f: f[0]):
      if total <= PROGRAMS_MB * 2**20 // 2:
        break
      p.unlink(missing_ok=True)
      total -= n


def _files(root: pathlib.Path, pattern: str) -> list[tuple[pathlib.Path, int, int]]:
  out = []
  for p in sorted(root.rglob(pattern)):
    try:
      st = p.stat()
    except OSError:
      continue
    if "__pycache__" not in p.parts and p.is_file():
      out.append((p, st.st_mtime_ns, st.st_size))
  return out


def _trees(assignment_dir) -> list[tuple[pathlib.Path, str]]:
  import importlib.util

  trees = [(pathlib.Path(assignment_dir), "*")]  # tests, references and data files
  spec = importlib.util.find_spec("dlfunc")  # the library the references call
  trees += [(pathlib.Path(loc), "*.py") for loc in ((spec.submodule_search_locations or []) if spec else [])]
  return trees


@functools.lru_cache(maxsize=1)
def _versions() -> str:
  import importlib.metadata

  out = []
  for dist in ("jax", "jaxlib", "numpy", "ml_dtypes"):
    try:
      out.append(f"{dist} {importlib.metadata.version(dist)}")
    except importlib.metadata.PackageNotFoundError:
      out.append(f"{dist} absent")
  return ", ".join(out) + "\0"


def source_digest(assignment_dir) -> str:
  """Hash of everything a reference output can depend on apart from its inputs: the files of the assignment's
  folder, dlfunc's source, the JAX, jaxlib and NumPy versions. Rehashed only when a file's size or mtime
  changed."""
  listing = [(root, pattern, _files(root, pattern)) for root, pattern in _trees(assignment_dir)]
  stamp = repr([(str(r), [(str(p), m, n) for p, m, n in fs]) for r, _, fs in listing])
  with _LOCK:
    if stamp in _DIGESTS:
      return _DIGESTS[stamp]
  h = hashlib.sha256()
  h.update(_versions().encode())
  for root, _, fs in listing:
    for p, _, _ in fs:
      try:
        h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
      except OSError:
        h.update(str(p).encode() + b"\0unreadable\0")
  digest = h.hexdigest()
  with _LOCK:
    if len(_DIGESTS) > 64:
      _DIGESTS.clear()
    _DIGESTS[stamp] = digest
  return digest


def entry_key(assignment_dir, reference: Callable, kind: str, arg_key) -> str:
  """The file name of one entry: the source digest, the reference's name, ``kind`` and the inputs' key."""
  name = f"{getattr(reference, '__module__', '?')}.{getattr(reference, '__qualname__', '?')}"
  block = _CURRENT.get()
  if block is not None and block.folder == pathlib.Path(assignment_dir):
    block.digest = block.digest or source_digest(assignment_dir)
    digest = block.digest
  else:
    digest = source_digest(assignment_dir)
  text = repr((digest, name, kind, arg_key))
  return hashlib.sha256(text.encode()).hexdigest()


def get(key: str) -> Any:
  """The cached value of ``key``, or ``_MISS`` (absent, unreadable, corrupt, or written for another key)."""
  from autograder.worker import _wire

  d = _ensure_dir()
  if d is None:
    return _MISS
  path = d / key[:2] / key
  try:
    data = path.read_bytes()
  except OSError:
    stats["misses"] += 1
    return _MISS
  try:
    body = data[8:]
    if len(data) > MAX_ENTRY + 8 or int.from_bytes(data[:8], "little") != len(body):
      raise ValueError("length")
    stored = _wire.decode_body(body)
    if not (isinstance(stored, dict) and stored.get("key") == key and "value" in stored):
      raise ValueError("key")
  except Exception:  # noqa: BLE001  (a corrupt entry is recomputed, never trusted)
    stats["bad"] += 1
    return _MISS
  stats["hits"] += 1
  return stored["value"]


def _same(a, b) -> bool:
  """Whether ``b`` (read back) is exactly ``a`` (types, structure, dtypes, bytes)."""
  import numpy as np

  if isinstance(a, np.generic):
    a = np.asarray(a)
  if isinstance(a, np.ndarray):
    return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
  if type(a) is not type(b):
    return False
  if isinstance(a, dict):
    return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
  if isinstance(a, (list, tuple)):
    return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
  if isinstance(a, float) and a != a:
    return b != b
  return a == b


def put(key: str, value) -> bool:
  """Store ``value`` under ``key`` atomically; False (nothing stored) when it would not read back exactly."""
  from autograder.worker import _wire

  d = _ensure_dir()
  if d is None:
    return False
  try:
    data = _wire.encode({"key": key, "value": value})
    if len(data) > MAX_ENTRY or not _same(value, _wire.decode_body(data[8:])["value"]):
      return False
    sub = d / key[:2]
    sub.mkdir(mode=0o700, exist_ok=True)
    tmp = sub / f".{key}.{os.getpid()}.{threading.get_ident()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    os.replace(tmp, sub / key)
  except Exception:  # noqa: BLE001  (a full disk or an odd value: grading goes on uncached)
    return False
  return True


def _key_now(reference, kind, arg_key) -> str | None:
  if not enabled() or current() is None:
    return None
  try:
    return entry_key(current(), reference, kind, arg_key)
  except Exception:  # noqa: BLE001  (an input the key cannot describe: not cached)
    return None


def lookup(reference: Callable, kind: str, arg_key) -> Any:
  """The stored value for this reference, ``kind`` and inputs, or None (only inside :func:`for_assignment`)."""
  key = _key_now(reference, kind, arg_key)
  if key is None:
    return None
  value = get(key)
  return None if value is _MISS else value


def store(reference: Callable, kind: str, arg_key, value) -> bool:
  """Keep ``value`` for a later :func:`lookup` with the same arguments (only inside :func:`for_assignment`)."""
  key = _key_now(reference, kind, arg_key)
  return key is not None and put(key, value)


def cached(reference: Callable, kind: str, arg_key, compute: Callable[[], Any]):
  """``compute()``, or its stored result for the same sources, reference, ``kind`` and inputs (only inside
  :func:`for_assignment`)."""
  assignment_dir = current()
  if not enabled() or assignment_dir is None:
    return compute()
  try:
    key = entry_key(assignment_dir, reference, kind, arg_key)
  except Exception:  # noqa: BLE001  (an input the key cannot describe: compute it)
    return compute()
  value = get(key)
  if value is not _MISS:
    return value
  value = compute()
  put(key, value)
  return value
