"""Hostile and broken submissions: the grader survives each, and each costs only its victim's points.

One case per item of issue 5's isolation list (tests/hostile/cases.py). Each
hostile submission is the assignment's reference solution with one graded
function (the victim) replaced; grading is restricted to the victim and one
bystander function to keep the suite fast. Checked for every case: the score
(victim 0, bystander full), no submission file changed, nothing connected to a
listener we run, no worker/child process or scratch folder left behind, the
report stays small. One by one for assignment 01; all together with
``grade-all --jobs 2`` for every assignment.
"""
import glob
import hashlib
import json
import os
import pathlib
import socket
import subprocess
import sys
import threading

import pytest

from autograder import _authoring, list_assignments, load_assignment
from autograder._runner import grade_submission
from hostile.cases import CASES, build

pytestmark = pytest.mark.slow
REPO = pathlib.Path(__file__).resolve().parent.parent
TIMEOUT = 6.0


class Listener:
  """A TCP server on localhost that records any connection a submission manages to make."""

  def __init__(self):
    self.sock = socket.socket()
    self.sock.bind(("127.0.0.1", 0))
    self.sock.listen()
    self.sock.settimeout(0.2)
    self.port = self.sock.getsockname()[1]
    self.connections = 0
    self._stop = False
    self.thread = threading.Thread(target=self._run, daemon=True)
    self.thread.start()

  def _run(self):
    while not self._stop:
      try:
        conn, _ = self.sock.accept()
        self.connections += 1
        conn.close()
      except OSError:
        pass

  def close(self):
    self._stop = True
    self.thread.join(2)
    self.sock.close()


@pytest.fixture(scope="module")
def listener():
  lst = Listener()
  yield lst
  lst.close()


def _roles(a):
  victim = a.functions[0]
  bystander = a.functions[1] if len(a.functions) > 1 else a.functions[0]
  return victim, bystander


def _expected(case, a):
  victim, bystander = _roles(a)
  pv, pb = a.points_for(victim), a.points_for(bystander)
  return {"victim": pb, "full": pv + pb, "zero": 0.0}[case.expect]


def _hashes(folder):
  return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(pathlib.Path(folder).rglob("*"))
          if p.is_file()}


def _worker_processes(scratch_root):
  """Processes left from OUR gradings: their working directory is under our private scratch root."""
  found = []
  scratch_root = str(scratch_root)
  for p in os.listdir("/proc"):
    if not p.isdigit():
      continue
    try:
      cmd = pathlib.Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
      cwd = os.readlink(f"/proc/{p}/cwd")
    except OSError:
      continue
    if cwd.startswith(scratch_root) or scratch_root in cmd:
      found.append(f"{p}: {cmd[:80]} (cwd {cwd})")
  return found


def _scratch_dirs(scratch_root):
  return set(glob.glob(os.path.join(str(scratch_root), "autograder-*")))


@pytest.fixture
def scratch_root(tmp_path, monkeypatch):
  root = tmp_path / "scratch"
  root.mkdir()
  monkeypatch.setenv("AUTOGRADER_SCRATCH", str(root))
  return root


def _make_batch(aid, folder, port):
  a = load_assignment(aid)
  victim, _ = _roles(a)
  ref = _authoring.module_source(a.source, solved=True, assignment_id=aid)
  folder.mkdir(parents=True, exist_ok=True)
  other = folder / "good.py"
  other.write_text(ref)
  paths = {}
  for case in CASES:
    dest = folder / case.name
    paths[case.name] = build(case, ref, victim, dest, tests_path=str(a.path / "tests.py"), other_path=str(other),
                             self_path=str(dest.with_suffix(".py")), port=port)
  return a, other, paths


CASE_IDS = [c.name for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_hostile_one_by_one(case, tmp_path, listener, scratch_root):
  aid = "01"
  a, _, paths = _make_batch(aid, tmp_path / "subs", listener.port)
  victim, bystander = _roles(a)
  before_files = _hashes(tmp_path / "subs") | _hashes(a.path)
  before_scratch = _scratch_dirs(scratch_root)
  report = grade_submission(aid, paths[case.name], timeout=TIMEOUT, functions=[victim, bystander], memory_mb=3072)
  d = report.as_dict()
  want = _expected(case, a)
  assert report.score == pytest.approx(want), (case.name, [(t.name, t.score, t.output[:200]) for t in report.tests])
  for t in report.tests:
    if t.function == bystander and case.expect != "zero":
      assert t.score == t.max_score, (case.name, t.name, t.output)
    if t.function == victim and case.expect == "victim":
      assert t.score == 0 and t.output, (case.name, t.name)
  assert len(json.dumps(d)) < 100_000, f"{case.name}: report of {len(json.dumps(d))} bytes"
  assert _hashes(tmp_path / "subs") | _hashes(a.path) == before_files, f"{case.name} changed a file"
  assert listener.connections == 0, f"{case.name} reached the network"
  assert not _worker_processes(scratch_root), f"{case.name} left processes: {_worker_processes(scratch_root)}"
  assert _scratch_dirs(scratch_root) <= before_scratch, f"{case.name} left a scratch folder"


_MESSAGES = {
    "hang": "did not finish within", "segfault": "segmentation fault", "os_exit": "exited with status 7",
    "sys_exit": "sys.exit(3)", "keyboard_interrupt": "KeyboardInterrupt", "oom": "out of memory",
    "fork_bomb": "may not fork", "monkeypatch_numpy": "numpy.allclose", "monkeypatch_jax": "jax.jit",
    "import_dlfunc": "dlfunc", "dlfunc_via_importlib": "dlfunc's implementation", "nan": "NaN",
    "wrong_type": "got str", "wrong_shape": "expected shape", "read_hidden_tests": "may not read",
    "kill_grader": "may not send signals",
}


@pytest.mark.parametrize("name", sorted(_MESSAGES))
def test_hostile_messages_are_plain(name, tmp_path, listener, scratch_root):
  """The first failing test of the victim says in words what happened."""
  a, _, paths = _make_batch("01", tmp_path / "subs", listener.port)
  victim, _ = _roles(a)
  report = grade_submission("01", paths[name], timeout=TIMEOUT, functions=[victim], memory_mb=3072)
  first = report.tests[0].output
  assert _MESSAGES[name] in first, (name, first)
  assert "Traceback" not in first


@pytest.mark.parametrize("aid", list_assignments())
def test_hostile_all_together_grade_all(aid, tmp_path, listener, scratch_root):
  """Every hostile case plus a correct submission in one `grade-all --jobs 2` batch."""
  a, good, paths = _make_batch(aid, tmp_path / "subs", listener.port)
  victim, bystander = _roles(a)
  before_files = _hashes(tmp_path / "subs")
  before_scratch = _scratch_dirs(scratch_root)
  out = tmp_path / "out"
  r = subprocess.run([sys.executable, "-m", "autograder.cli", "grade-all", aid, str(tmp_path / "subs"), "--out",
                      str(out), "--jobs", "2", "--timeout", str(TIMEOUT), "--only", f"{victim},{bystander}"],
                     capture_output=True, text=True, timeout=1800, cwd=REPO, env=os.environ.copy())
  assert r.returncode == 0, r.stderr[-2000:]
  full = a.points_for(victim) + (a.points_for(bystander) if bystander != victim else 0)
  good_report = json.loads((out / "good.json").read_text())
  assert good_report["score"] == pytest.approx(full)
  for case in CASES:
    rep = json.loads((out / f"{case.name}.json").read_text())
    assert rep["score"] == pytest.approx(_expected(case, a)), (case.name, rep["tests"])
  csv_rows = (out / "grades.csv").read_text().strip().splitlines()
  assert len(csv_rows) == len(CASES) + 2     # header + cases + good
  assert _hashes(tmp_path / "subs") == before_files
  assert listener.connections == 0
  assert not _worker_processes(scratch_root)
  assert _scratch_dirs(scratch_root) <= before_scratch
  # Re-running skips what is already graded (resumable), unless --force.
  mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
  r2 = subprocess.run([sys.executable, "-m", "autograder.cli", "grade-all", aid, str(tmp_path / "subs"), "--out",
                       str(out), "--jobs", "2", "--only", f"{victim},{bystander}"],
                      capture_output=True, text=True, timeout=600, cwd=REPO)
  assert r2.returncode == 0 and "submissions" in r2.stdout
  assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")} == mtimes


_FALLBACK_CASES = ["read_hidden_tests", "read_other_submission", "rewrite_files", "network_connect",
                   "network_listen", "kill_grader", "fork_bomb", "ctypes_fork_left_behind", "segfault", "oom"]


@pytest.mark.parametrize("name", _FALLBACK_CASES)
def test_hostile_without_bubblewrap(name, tmp_path, listener, scratch_root, monkeypatch):
  """The fallback layers (rlimits, audit hook, network namespace as root, leftover sweep) hold alone."""
  monkeypatch.setenv("AUTOGRADER_NO_BWRAP", "1")
  a, _, paths = _make_batch("01", tmp_path / "subs", listener.port)
  victim, bystander = _roles(a)
  before = _hashes(tmp_path / "subs") | _hashes(a.path)
  report = grade_submission("01", paths[name], timeout=TIMEOUT, functions=[victim, bystander], memory_mb=3072)
  assert "no bubblewrap" in report.isolation
  assert report.score == pytest.approx(a.points_for(bystander)), [(t.name, t.output[:200]) for t in report.tests]
  assert _hashes(tmp_path / "subs") | _hashes(a.path) == before
  assert listener.connections == 0
  assert not _worker_processes(scratch_root)
