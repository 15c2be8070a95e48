"""The reference-output cache (autograder/grader/_refcache.py): hits and misses, keys that follow the sources,
corrupt entries recomputed, a private folder, and a folder no worker can read."""
import os
import pathlib
import stat

import numpy as np
import pytest

from autograder import load_assignment
from autograder.authoring import _authoring
from autograder.grader import _checks, _refcache
from autograder.grader._runner import grade_submission

TRACES = []


def scaled_tanh(x):
  """A module-level reference (cacheable) that records each time it is traced, i.e. computed."""
  import jax.numpy as jnp

  TRACES.append(1)
  return 2.0 * jnp.tanh(x)


@pytest.fixture
def cache(tmp_path, monkeypatch):
  """An empty cache folder, a fake assignment folder to key it by, and no in-memory memo."""
  root = tmp_path / "cache"
  monkeypatch.setenv("AUTOGRADER_CACHE", str(root))
  folder = tmp_path / "assignment"
  folder.mkdir()
  (folder / "tests.py").write_text("FUNCTIONS = ('f',)\n")
  _checks._MEMO.clear()
  TRACES.clear()
  yield root, folder
  _checks._MEMO.clear()


def _ref(folder, x):
  _checks._MEMO.clear()  # each call as in a new grading process: only the disk can answer
  with _refcache.for_assignment(folder):
    return _checks._ref(scaled_tanh, (x,), {})


def test_miss_then_hit_gives_the_same_values(cache):
  root, folder = cache
  x = np.linspace(-2, 2, 7, dtype=np.float32)
  first = _ref(folder, x)
  assert len(TRACES) == 1
  second = _ref(folder, x)
  assert len(TRACES) == 1, "the second call was computed again instead of read from the cache"
  assert second.dtype == first.dtype == np.float32
  np.testing.assert_array_equal(first, second)
  np.testing.assert_allclose(second, 2 * np.tanh(x), rtol=1e-6)
  other = _ref(folder, x + 1)  # other inputs: another entry
  assert len(TRACES) == 2
  np.testing.assert_allclose(other, 2 * np.tanh(x + 1), rtol=1e-6)
  assert len([p for p in root.rglob("*") if p.is_file()]) == 2


def test_outside_grading_nothing_is_cached(cache):
  root, _ = cache
  _checks._ref(scaled_tanh, (np.ones(3, np.float32),), {})
  assert not root.exists() or not any(p.is_file() for p in root.rglob("*"))


def test_key_changes_when_the_assignment_or_reference_source_changes(cache):
  _, folder = cache
  x = np.ones(4, np.float32)

  def key():
    return _refcache.entry_key(folder, scaled_tanh, "call x64=False", _checks._arg_key(((x,), {})))

  k1 = key()
  _ref(folder, x)
  (folder / "tests.py").write_text("FUNCTIONS = ('f',)\n# the reference changed\n")
  k2 = key()
  assert k2 != k1
  _ref(folder, x)
  assert len(TRACES) == 2, "a changed tests.py must not reuse the old outputs"
  (folder / "data.npz").write_bytes(b"new data file")  # data files count too
  assert key() != k2
  assert _refcache.entry_key(folder, _checks._to_numpy, "call x64=False", "same") != _refcache.entry_key(
    folder, scaled_tanh, "call x64=False", "same"
  )


def test_corrupt_or_foreign_entries_are_recomputed(cache):
  root, folder = cache
  x = np.arange(5, dtype=np.float32)
  good = _ref(folder, x)
  (entry,) = [p for p in root.rglob("*") if p.is_file()]
  for garbage in (b"", b"\x00" * 3, entry.read_bytes()[:-3], b"x" * 64):
    entry.write_bytes(garbage)
    before = len(TRACES)
    np.testing.assert_array_equal(_ref(folder, x), good)
    assert len(TRACES) == before + 1, f"a corrupt entry ({garbage[:8]!r}...) was trusted"
  # a well-formed entry written for another key (copied over) is not trusted either
  from autograder.worker import _wire

  entry.write_bytes(_wire.encode({"key": "0" * 64, "value": np.zeros(5, np.float32)}))
  before = len(TRACES)
  np.testing.assert_array_equal(_ref(folder, x), good)
  assert len(TRACES) == before + 1
  # after recomputing, the entry is good again
  _ref(folder, x)
  assert len(TRACES) == before + 1


def test_cache_folder_is_private(cache):
  root, folder = cache
  _ref(folder, np.ones(2, np.float32))
  assert stat.S_IMODE(root.stat().st_mode) == 0o700
  for p in root.rglob("*"):
    assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, p
  os.chmod(root, 0o755)  # noqa: S103  (loosened by hand: put back to 0700 on next use)
  _ref(folder, np.ones(3, np.float32))
  assert stat.S_IMODE(root.stat().st_mode) == 0o700


def test_cache_off(cache, monkeypatch):
  _, folder = cache
  monkeypatch.setenv("AUTOGRADER_CACHE", "off")
  x = np.ones(2, np.float32)
  _ref(folder, x)
  _ref(folder, x)
  assert len(TRACES) == 2


# ---------------------------------------------------------------- the worker cannot read the cache

_STEAL = '''

def relu(x):
  import os
  root = {root!r}
  names = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
  assert names, "the cache folder is not visible"
  data = open(names[0], "rb").read()
  assert data
  import jax.numpy as jnp
  return jnp.maximum(x, 0)
'''


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["bwrap", "no_bwrap", "no_bwrap_no_landlock_no_uid"])
def test_worker_cannot_read_the_cache(mode, tmp_path, monkeypatch):
  """A submission that reads the cache (the reference's outputs) would pass relu; it must score 0 there."""
  from autograder.worker import _sandbox

  root = tmp_path / "cache"
  monkeypatch.setenv("AUTOGRADER_CACHE", str(root))
  monkeypatch.setenv("AUTOGRADER_SCRATCH", str(tmp_path / "scratch"))
  if mode == "bwrap":
    monkeypatch.delenv("AUTOGRADER_NO_BWRAP", raising=False)
    if not _sandbox.bwrap_usable():
      pytest.skip("bubblewrap is not installed or cannot create namespaces here")
  else:
    monkeypatch.setenv("AUTOGRADER_NO_BWRAP", "1")
  if mode == "no_bwrap_no_landlock_no_uid":  # only the deny list (audit hook) stands between them
    monkeypatch.setenv("AUTOGRADER_NO_LANDLOCK", "1")
    monkeypatch.setenv("AUTOGRADER_UIDS", "off")
  a = load_assignment("01")
  ref = _authoring.module_source(a.source, solved=True, assignment_id="01")
  subs = tmp_path / "subs"
  subs.mkdir()
  good = subs / "good.py"
  good.write_text(ref)
  _checks._MEMO.clear()
  r = grade_submission("01", good, functions=["relu", "sigmoid"], hidden=False)
  assert r.score == r.max_score, [(t.name, t.output[:200]) for t in r.tests]
  entries = [p for p in root.rglob("*") if p.is_file()]
  assert entries, "grading wrote nothing to the cache"
  thief = subs / "thief.py"
  thief.write_text(ref + _STEAL.format(root=str(root)))
  r = grade_submission("01", thief, functions=["relu", "sigmoid"], hidden=False, timeout=10.0)
  relu = [t for t in r.tests if t.function == "relu"]
  sigmoid = [t for t in r.tests if t.function == "sigmoid"]
  assert relu and all(t.score == 0 for t in relu), [(t.name, t.output[:300]) for t in relu]
  assert all(t.score == t.max_score for t in sigmoid), [(t.name, t.output[:300]) for t in sigmoid]
  if mode == "no_bwrap_no_landlock_no_uid":
    assert "may not read" in relu[0].output or "not visible" in relu[0].output, relu[0].output
  # the cache survived the attempt, and is still used
  assert all(p.is_file() for p in entries)
  assert pathlib.Path(root).stat().st_mode & 0o077 == 0


def test_a_cache_folder_the_deny_list_cannot_cover_is_not_used(tmp_path, monkeypatch):
  """When the worker could see the cache folder (it holds something the worker needs, so the deny list drops it),
  grading computes every reference afresh and writes nothing there."""
  import sys

  from autograder.grader import _runner

  assert os.path.realpath(os.path.dirname(sys.prefix)) not in _runner._safe_denied([os.path.dirname(sys.prefix)])
  root = tmp_path / "cache"
  monkeypatch.setenv("AUTOGRADER_CACHE", str(root))
  monkeypatch.setenv("AUTOGRADER_SCRATCH", str(tmp_path / "scratch"))
  real = _runner._safe_denied
  monkeypatch.setattr(_runner, "_safe_denied", lambda dirs: [d for d in real(dirs) if d != str(root.resolve())])
  a = load_assignment("01")
  sub = tmp_path / "subs" / "good.py"
  sub.parent.mkdir()
  sub.write_text(_authoring.module_source(a.source, solved=True, assignment_id="01"))
  _checks._MEMO.clear()
  before = dict(_refcache.stats)
  r = grade_submission("01", sub, functions=["relu"], hidden=False)
  assert r.score == r.max_score, [(t.name, t.output[:200]) for t in r.tests]
  assert not root.exists() or not [p for p in root.rglob("*") if p.is_file()], "the uncovered cache was written"
  assert _refcache.stats["hits"] == before["hits"] and _refcache.stats["misses"] == before["misses"]
  # and with the deny list intact, the same grading does use it (so the check above can fail)
  monkeypatch.setattr(_runner, "_safe_denied", real)
  _checks._MEMO.clear()
  r = grade_submission("01", sub, functions=["relu"], hidden=False)
  assert r.score == r.max_score
  assert [p for p in root.rglob("*") if p.is_file()], "grading with a covered cache wrote nothing"
