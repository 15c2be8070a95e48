"""Compiled programs kept across a student's checks (``keep_compiled``): reused, per submission path, private to
that path's checks, never given to a grade, trimmed, and a corrupt entry is compiled again."""

import os
import pathlib
import subprocess
import sys

import pytest

from autograder import load_assignment
from autograder.authoring import _authoring
from autograder.grader import _checks, _refcache
from autograder.grader._runner import grade_submission

FUNCS = ["relu", "softmax"]


@pytest.fixture
def solved(tmp_path, monkeypatch):
  """A private cache, private scratch, and the solved module of 01 in a folder of its own."""
  monkeypatch.setenv("AUTOGRADER_CACHE", str(tmp_path / "cache"))
  monkeypatch.setenv("AUTOGRADER_SCRATCH", str(tmp_path / "scratch"))
  a = load_assignment("01")
  sub = tmp_path / "alice" / "01.py"
  sub.parent.mkdir()
  sub.write_text(_authoring.module_source(a.source, solved=True, assignment_id="01"))
  _checks._MEMO.clear()
  return sub


def _files(folder: pathlib.Path) -> dict[str, int]:
  return {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file()} if folder.is_dir() else {}


def _check(sub, **kw):
  _checks._MEMO.clear()  # as in a new process: only the disk remembers
  r = grade_submission("01", sub, hidden=False, functions=FUNCS, keep_compiled=True, **kw)
  assert r.score == r.max_score, [(t.name, t.output[:300]) for t in r.tests]
  return r


@pytest.mark.slow
def test_a_second_check_reuses_every_program(solved):
  """The first check compiles and keeps its programs; the second compiles nothing new (a key that changed from
  run to run, such as one holding the scratch path, would add a second set of entries)."""
  r = _check(solved)
  folder = _refcache.submission_programs(solved)
  assert folder is not None
  first = _files(folder)
  assert len(first) >= 3, first
  assert "own compiled programs" in r.isolation or "Landlock" not in r.isolation, r.isolation
  grader_side = _files(_refcache.cache_dir() / "xla")
  _check(solved)
  assert _files(folder) == first, "the second check compiled programs again instead of reusing them"
  assert set(_files(_refcache.cache_dir() / "xla")) == set(grader_side)


@pytest.mark.slow
def test_programs_kept_under_a_worker_uid_are_reused_under_bubblewrap(solved, monkeypatch):
  """A check without bubblewrap hands the folder to the worker's own uid; the next check under bubblewrap (root
  with its capabilities dropped) must still read and write it, not compile everything again each time."""
  from autograder.worker import _sandbox

  monkeypatch.setenv("AUTOGRADER_NO_BWRAP", "1")
  if not _sandbox.drops_privileges():
    pytest.skip("workers run under a uid of their own only when the grader is root with a uid pool")
  _check(solved)
  folder = _refcache.submission_programs(solved)
  assert folder is not None and folder.stat().st_uid != 0  # the worker's uid took it over
  monkeypatch.delenv("AUTOGRADER_NO_BWRAP")
  if not _sandbox.bwrap_usable():
    pytest.skip("bubblewrap is not installed or cannot create namespaces here")
  kept = _files(folder)
  gone = sorted(kept)[0]
  (folder / gone).unlink()
  _check(solved)
  assert folder.stat().st_uid == 0
  assert set(_files(folder)) == set(kept), "the check under bubblewrap could not write its programs folder"


@pytest.mark.slow
def test_a_grade_keeps_no_programs_of_the_submission(solved):
  """With hidden tests (a grade), the worker gets no folder to keep programs in; the grader keeps its own."""
  _checks._MEMO.clear()
  r = grade_submission("01", solved, hidden=True, functions=["relu"], keep_compiled=True)
  assert r.score == r.max_score, [(t.name, t.output[:300]) for t in r.tests]
  root = _refcache.programs_root()
  assert not root.exists() or not any(root.iterdir()), "a grade gave the submission a programs folder"
  assert "own compiled programs" not in r.isolation


@pytest.mark.slow
def test_corrupt_programs_are_compiled_again_quietly(solved):
  """A submission can write its own folder: garbage there costs a compilation, never a wrong grade or noise.
  (JAX does not replace an entry it could not read: that program is compiled at each check.)"""
  _check(solved)
  folder = _refcache.submission_programs(solved)
  assert folder is not None
  names = list(_files(folder))
  for n in names:
    (folder / n).write_bytes(b"\0garbage" * 7)
  r = _check(solved)
  assert all("persistent compilation cache" not in t.output for t in r.tests), [t.output for t in r.tests]
  assert r.score == r.max_score


_PEEK = '''

def relu(x):
  import os
  found = []
  for d, _, fs in os.walk({root!r}):
    for f in fs:
      if {other!r} in d:
        with open(os.path.join(d, f), "rb") as fh:
          found.append(fh.read(16))
  assert found, "no other submission's programs are visible"
  import jax.numpy as jnp
  return jnp.maximum(x, 0)
'''


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["bwrap", "no_bwrap", "no_bwrap_no_landlock_no_uid"])
def test_a_check_cannot_read_another_paths_programs(mode, solved, monkeypatch):
  """Bob's check reads Alice's compiled programs (her functions, compiled): it must not see them."""
  from autograder.worker import _sandbox

  if mode == "bwrap":
    monkeypatch.delenv("AUTOGRADER_NO_BWRAP", raising=False)
    if not _sandbox.bwrap_usable():
      pytest.skip("bubblewrap is not installed or cannot create namespaces here")
  else:
    monkeypatch.setenv("AUTOGRADER_NO_BWRAP", "1")
  if mode == "no_bwrap_no_landlock_no_uid":  # only the deny list (audit hook) stands between them
    monkeypatch.setenv("AUTOGRADER_NO_LANDLOCK", "1")
    monkeypatch.setenv("AUTOGRADER_UIDS", "off")
  _check(solved)
  alice = _refcache.submission_programs(solved)
  assert alice is not None and _files(alice)
  bob = solved.parent.parent / "bob" / "01.py"
  bob.parent.mkdir()
  root = str(_refcache.programs_root())
  bob.write_text(solved.read_text() + _PEEK.format(root=root, other=alice.name))
  _checks._MEMO.clear()
  r = grade_submission("01", bob, hidden=False, functions=FUNCS, keep_compiled=True, timeout=10.0)
  relu = [t for t in r.tests if t.function == "relu"]
  softmax = [t for t in r.tests if t.function == "softmax"]
  assert relu and all(t.score == 0 for t in relu), [(t.name, t.output[:300]) for t in relu]
  assert all(t.score == t.max_score for t in softmax), [(t.name, t.output[:300]) for t in softmax]
  bobs = _refcache.submission_programs(bob)
  assert bobs is not None and bobs != alice and _files(bobs), "bob's own programs were not kept"


def test_programs_are_kept_for_the_most_recent_paths_and_trimmed(tmp_path, monkeypatch):
  monkeypatch.setenv("AUTOGRADER_CACHE", str(tmp_path / "cache"))
  monkeypatch.setattr(_refcache, "PROGRAMS_KEPT", 2)
  monkeypatch.setattr(_refcache, "PROGRAMS_MB", 1)
  a = _refcache.submission_programs(tmp_path / "a.py")
  b = _refcache.submission_programs(tmp_path / "b.py")
  assert a is not None and b is not None and a != b
  assert oct(a.stat().st_mode & 0o777) == "0o700"
  os.utime(a, (900, 900))  # a was checked long ago, b since
  os.utime(b, (1000, 1000))
  c = _refcache.submission_programs(tmp_path / "c.py")
  assert c is not None
  assert not a.exists() and b.exists() and c.exists(), "the least recently checked path was not dropped"
  assert _refcache.submission_programs(tmp_path / "c.py") == c  # the same path, the same folder
  folders = [a, b, c]
  big = folders[2]
  for i in range(6):  # 6 x 0.3 MiB > 1 MiB: trimmed to half, oldest first
    (big / f"entry{i}").write_bytes(b"x" * (3 * 2**20 // 10))
    os.utime(big / f"entry{i}", (2000 + i, 2000 + i))
  _refcache.submission_programs(tmp_path / "c.py")
  left = sorted(p.name for p in big.iterdir())
  assert left == ["entry5"], left
  monkeypatch.setenv("AUTOGRADER_CACHE", "off")
  assert _refcache.submission_programs(tmp_path / "c.py") is None


def test_starting_a_check_does_not_wait_for_numpy_or_jax():
  """The grader starts the worker before it imports NumPy or JAX: the modules it needs up to then import neither."""
  code = (
    "import sys, autograder.cli\n"
    "from autograder.grader import _registry, _report, _runner\n"
    "from autograder.worker import _remote, _sandbox, _submission, _wire\n"
    "bad = sorted(m for m in ('numpy', 'jax') if m in sys.modules)\n"
    "assert not bad, bad\n"
  )
  r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
  assert r.returncode == 0, r.stderr[-2000:]



_LOWER = """
import sys, jax, jax.numpy as jnp
from jax._src.interpreters import mlir
for k, v in (("jax_compilation_cache_dir", sys.argv[1]), ("jax_persistent_cache_min_compile_time_secs", 0.0),
             ("jax_persistent_cache_min_entry_size_bytes", 0)):
  jax.config.update(k, v)
if sys.argv[2] == "shared":
  from autograder.worker import _worker
  assert _worker._share_ir_contexts(uses=2)
made = []
make = mlir.make_ir_context
mlir.make_ir_context = lambda: made.append(make()) or made[-1]
out = [float(jax.jit(lambda x: jnp.tanh(x) @ x.T)(jnp.ones((n, 3))).sum()) for n in (1, 2, 3, 4, 5)]
print(len(made), len({id(c) for c in made}), out)
"""


def test_shared_ir_contexts_lower_the_same_programs(tmp_path):
  """The worker lowers several programs in one MLIR context (bounded): the programs, and so the persistent cache's
  keys, are those of fresh contexts (a shared run after a fresh one adds no entry), and the values are the same."""
  cache, got = tmp_path / "programs", {}
  for mode in ("fresh", "shared"):
    r = subprocess.run([sys.executable, "-c", _LOWER, str(cache), mode], capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert r.returncode == 0, r.stderr[-2000:]
    calls, distinct, values = r.stdout.strip().split(" ", 2)
    got[mode] = (int(calls), int(distinct), values, sorted(p.name for p in cache.iterdir()))
  assert got["fresh"][0] == got["fresh"][1] == got["shared"][0] >= 5      # one context per program, fresh
  assert got["shared"][1] == (got["shared"][0] + 1) // 2                   # two programs per shared context
  assert got["shared"][2] == got["fresh"][2]
  assert got["shared"][3] == got["fresh"][3] and len(got["fresh"][3]) >= 5


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give files to another uid")
def test_handing_a_folder_over_leaves_hard_linked_files_alone(tmp_path):
  """A worker that hard-links a file from outside into its programs folder does not get that file handed to the
  next worker's uid (nor to root) when the folder changes hands."""
  from autograder.worker import _sandbox

  outside = tmp_path / "outside.txt"
  outside.write_text("not the worker's")
  folder = tmp_path / "programs"
  folder.mkdir()
  (folder / "entry-cache").write_bytes(b"program")
  os.link(outside, folder / "linked-cache")
  os.symlink(outside, folder / "symlinked-cache")
  _sandbox._hand_over(str(folder), 64999)
  assert folder.stat().st_uid == 64999 and (folder / "entry-cache").stat().st_uid == 64999
  assert outside.stat().st_uid == 0, "a hard-linked file from outside was handed over"
  assert (folder / "symlinked-cache").lstat().st_uid == 64999 and outside.stat().st_uid == 0
