"""Hostile and broken submissions: the grader survives each, and each costs only its victim's points.

One case per item of issue 5's isolation list (tests/autograder/hostile/cases.py). Each
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

from autograder import list_assignments, load_assignment
from autograder.authoring import _authoring
from autograder.grader._runner import grade_submission
from hostile.cases import CASES, build

pytestmark = pytest.mark.slow
REPO = pathlib.Path(__file__).resolve().parents[2]
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


# ---------------------------------------------------------------- issue 18: walls the kernel enforces

SECRET = "autograder-secret-" + hashlib.sha256(str(os.getpid()).encode()).hexdigest()[:16]
_KERNEL_FUNCTIONS = ("relu", "sigmoid", "softmax")
_GRADER_PEAK_MB = 1500     # the grader's own peak RSS over the whole batch (a forged frame once made it 2.1 GB)


def _kernel_batch(tmp_path, no_bwrap: bool):
  """Grade every KERNEL_CASES submission plus a correct one in ONE `grade-all --jobs 2` run; return what the
  assertions need (the run, the reports, the grader's peak memory, the state before)."""
  from hostile.cases import KERNEL_CASES, build_kernel
  import sysconfig
  a = load_assignment("01")
  ref = _authoring.module_source(a.source, solved=True, assignment_id="01")
  subs = tmp_path / "subs"
  subs.mkdir()
  good = subs / "good.py"
  good.write_text(ref)
  site = sysconfig.get_paths()["purelib"]
  ctx = dict(tests_path=str(a.path / "tests.py"), site_packages=site, secret=SECRET, checkout=str(REPO),
             assignment_py=str(a.source), good_path=str(good))
  paths = {c.name: build_kernel(c, ref, subs, **ctx) for c in KERNEL_CASES}
  env = dict(os.environ, AUTOGRADER_TEST_SECRET=SECRET)
  if no_bwrap:
    env["AUTOGRADER_NO_BWRAP"] = "1"
  else:
    env.pop("AUTOGRADER_NO_BWRAP", None)
  before = {"files": _hashes(subs) | _hashes(a.path), "site": sorted(os.listdir(site))}
  out = tmp_path / "out"
  script = ("import sys\nfrom autograder import cli\nrc = 0\ntry:\n  rc = cli.main(sys.argv[1:])\n"
            "except SystemExit as e:\n  rc = e.code\nhwm = [l for l in open('/proc/self/status') if "
            "l.startswith('VmHWM')][0].split()[1]\nprint('GRADER_PEAK_KB', hwm)\nsys.exit(rc or 0)\n")
  r = subprocess.run([sys.executable, "-c", script, "grade-all", "01", str(subs), "--out", str(out), "--jobs", "2",
                      "--timeout", str(TIMEOUT), "--only", ",".join(_KERNEL_FUNCTIONS)],
                     capture_output=True, text=True, timeout=1200, cwd=REPO, env=env)
  peak = [int(l.split()[1]) for l in r.stdout.splitlines() if l.startswith("GRADER_PEAK_KB")]
  # keyed by the submission's stem: a skipped entry (a symbolic link) is reported under its full name
  reports = {pathlib.Path(rec["submission"]).stem: rec
             for rec in (json.loads(p.read_text()) for p in out.glob("*.json")) if "submission" in rec}
  return dict(a=a, run=r, reports=reports, peak_kb=peak[0] if peak else None, before=before, subs=subs, site=site,
              paths=paths, cases=KERNEL_CASES)


@pytest.fixture(scope="module", params=["bwrap", "fallback"])
def kernel_batch(request, tmp_path_factory):
  if request.param == "bwrap" and not _bwrap_here():
    pytest.skip("bubblewrap is not installed or cannot create namespaces here")
  root = tmp_path_factory.mktemp(f"kernel-{request.param}")
  scratch = root / "scratch"
  scratch.mkdir()
  old = os.environ.get("AUTOGRADER_SCRATCH")
  os.environ["AUTOGRADER_SCRATCH"] = str(scratch)
  try:
    d = _kernel_batch(root, no_bwrap=request.param == "fallback")
  finally:
    if old is None:
      os.environ.pop("AUTOGRADER_SCRATCH", None)
    else:
      os.environ["AUTOGRADER_SCRATCH"] = old
  d.update(mode=request.param, scratch=scratch)
  return d


def _bwrap_here() -> bool:
  from autograder.worker import _sandbox
  saved = os.environ.pop("AUTOGRADER_NO_BWRAP", None)
  try:
    return _sandbox.bwrap_usable()
  finally:
    if saved is not None:
      os.environ["AUTOGRADER_NO_BWRAP"] = saved


def _kernel_expected(case, a):
  total = sum(a.points_for(f) for f in _KERNEL_FUNCTIONS)
  return {"victim": total - a.points_for(case.fn), "full": total, "zero": 0.0}[case.expect]


def test_kernel_walls_scores_and_messages(kernel_batch):
  """Each attack scores what an honest grade gives (a hole would show up as points), with its message."""
  b = kernel_batch
  assert b["run"].returncode == 0, b["run"].stderr[-3000:]
  a, reports = b["a"], b["reports"]
  assert reports["good"]["score"] == pytest.approx(sum(a.points_for(f) for f in _KERNEL_FUNCTIONS)), \
      reports["good"]["tests"]
  wrong = []
  for case in b["cases"]:
    rep = reports[case.name]
    if rep["score"] != pytest.approx(_kernel_expected(case, a)):
      wrong.append((case.name, rep["score"], [(t["name"], t["score"], t["output"][:160]) for t in rep["tests"]
                                              if t["function"] == case.fn or case.expect != "victim"][:3]))
    if case.message and case.message not in json.dumps(rep):
      wrong.append((case.name, "message", rep["notes"], [t["output"][:200] for t in rep["tests"]][:3]))
    if case.expect == "victim":
      others = [t for t in rep["tests"] if t["function"] != case.fn and t["score"] != t["max_score"]]
      if others:
        wrong.append((case.name, "bystanders", [t["output"][:200] for t in others][:3]))
  assert not wrong, wrong
  assert reports["blank_lines_folder"]["seconds"] < 120     # the entry search was quadratic: 200 s


def test_kernel_walls_leave_nothing(kernel_batch):
  """Nothing written outside scratch, no process left, no secret or hidden-test text in any result, and the
  grader's own memory stays bounded."""
  b = kernel_batch
  a = b["a"]
  assert b["run"].returncode == 0, b["run"].stderr[-3000:]
  assert _hashes(b["subs"]) | _hashes(a.path) == b["before"]["files"]
  assert sorted(os.listdir(b["site"])) == b["before"]["site"], "a file appeared in site-packages"
  assert not _worker_processes(b["scratch"]), _worker_processes(b["scratch"])
  assert not _scratch_dirs(b["scratch"])
  hidden_src = (a.path / "tests.py").read_text()
  probes = [SECRET] + [ln.strip() for ln in hidden_src.splitlines() if ln.startswith("def test_")][:5]
  for name, rep in b["reports"].items():
    text = json.dumps(rep)
    for probe in probes:
      assert probe not in text, (name, probe)
  assert b["peak_kb"] is not None and b["peak_kb"] < _GRADER_PEAK_MB * 1024, b["peak_kb"]


def test_kernel_walls_isolation_summary(kernel_batch):
  """The report says which walls were up; as root without bubblewrap, each worker had a uid of its own."""
  b = kernel_batch
  iso = b["reports"]["good"]["isolation"]
  if b["mode"] == "bwrap":
    assert iso.startswith("bubblewrap"), iso
  else:
    assert "no bubblewrap" in iso, iso
    if os.getuid() == 0:
      assert "own unprivileged uid" in iso and "uid 64" in iso, iso
    else:
      assert "not root" in iso, iso


_RULES_SCRIPT = r'''
import importlib, json, sys, types
from autograder.grader import _registry
from autograder.worker import _rules, _ops
checked, skipped, bad = 0, [], []
for aid in _registry.list_assignments():
  a = _registry.load_assignment(aid)
  rules = _rules.Rules(a.forbidden)
  for fn, names in a.forbidden.items():
    other = next((f for f in a.functions if not set(a.forbidden.get(f, ())) & set(names)), None)
    for name in names:
      if name.split(".")[0] == "dlfunc":
        continue
      obj = _rules.resolve(name)
      target = obj
      if isinstance(obj, types.ModuleType):    # a module rule: some public function of it must be refused
        import jax.numpy as jnp
        found = False
        import pkgutil
        candidates = list(vars(obj).items())[:200]
        for sub in pkgutil.iter_modules(getattr(obj, "__path__", [])):   # a package: its modules' functions too
          try:
            m = importlib.import_module(obj.__name__ + "." + sub.name)
          except Exception:
            continue
          candidates += list(vars(m).items())[:100]
        for k, v in candidates:
          if k.startswith("_") or isinstance(v, (type, types.ModuleType)) or not callable(v):
            continue
          for args in [(jnp.ones(3),) * n for n in range(5)]:
            rules.enter(fn)
            try:
              v(*args)
            except Exception:
              pass
            finally:
              hit = rules.exit()
            if hit:
              found = True
              break
          if found:
            break
        checked += found
        if not found:
          bad.append((aid, fn, name, "no public function of it refused"))
        continue
      if target is None:
        if name.split(".")[0] not in sys.modules:      # not installed or not loaded: importing it is the use
          rules.enter(fn)
          try:
            importlib.import_module(name)
            bad.append((aid, fn, name, "import allowed"))
          except _ops.RefusedError:
            checked += 1
          except ImportError:
            skipped.append(name)
          finally:
            rules.exit()
        else:
          skipped.append(name)
        continue
      rules.enter(fn)
      try:
        target()
        bad.append((aid, fn, name, "no refusal"))
      except _ops.RefusedError:
        checked += 1
      except Exception as e:
        hit = rules.hit
        if hit is None:
          bad.append((aid, fn, name, type(e).__name__))
        else:
          checked += 1
      finally:
        rules.exit()
      if other is not None:       # the same name stays callable while a function that allows it is graded
        rules.enter(other)
        try:
          target()
        except _ops.RefusedError:
          bad.append((aid, other, name, "refused for a function that allows it"))
        except Exception:
          pass
        finally:
          rules.exit()
print(json.dumps({"checked": checked, "skipped": skipped, "bad": bad}))
'''


def test_forbidden_rules_refused_at_run_time_for_every_assignment():
  """Every assignment's FORBIDDEN names are refused where the code runs (in a fresh process: the stand-ins
  replace library functions process-wide), and stay usable for the functions that allow them."""
  r = subprocess.run([sys.executable, "-c", _RULES_SCRIPT], capture_output=True, text=True, timeout=600, cwd=REPO,
                     env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert r.returncode == 0, r.stderr[-3000:]
  res = json.loads(r.stdout.strip().splitlines()[-1])
  assert not res["bad"], res
  assert res["checked"] >= 15, res


def test_wire_decoding_is_bounded():
  """A forged frame cannot make the grader allocate beyond a small multiple of its size."""
  import io
  import struct
  import numpy as np
  from autograder.worker import _wire

  def frame(tree, blobs):
    head = json.dumps({"tree": tree, "blobs": [len(b) for b in blobs]}).encode()
    return struct.pack("<I", len(head)) + head + b"".join(blobs)

  def npy(a):
    b = io.BytesIO()
    np.lib.format.write_array(b, a)
    return b.getvalue()
  ok = _wire.decode_body(_wire.encode({"x": np.arange(6.0).reshape(2, 3)})[8:])
  assert ok["x"].shape == (2, 3)
  one = npy(np.zeros(1, np.float32))
  with pytest.raises(_wire.WireError, match="referenced twice"):
    _wire.decode_body(frame({"$l": [{"$a": 0}] * 1000}, [one]))
  with pytest.raises(_wire.WireError, match="cast"):
    _wire.decode_body(frame({"$a": 0, "dtype": "(100000,)f8"}, [one]))
  big_header = one[:10] + one[10:].replace(b"(1,)", b"(9,)")   # claims 9 elements, holds 1
  with pytest.raises(_wire.WireError):
    _wire.decode_body(frame({"$a": 0}, [big_header]))
  with pytest.raises(_wire.WireError, match="dtype"):
    _wire.decode_body(frame({"$a": 0}, [npy(np.array(["s"]))]))
  deep = b'{"tree": ' + b"[" * 100_000 + b"]" * 100_000 + b', "blobs": []}'
  with pytest.raises(_wire.WireError):
    _wire.decode_body(struct.pack("<I", len(deep)) + deep)


def test_parsing_is_bounded_and_links_are_not_followed(tmp_path):
  """The grader's own parsing of hostile files ends as the submission's message, in bounded time."""
  import time
  from autograder.worker import _submission
  folder = tmp_path / "blank"
  folder.mkdir()
  (folder / "a.py").write_text("def relu(x):\n  return x\n")
  (folder / "b.py").write_text("\n" * 150_000)
  t = time.monotonic()
  assert _submission.find_entry(folder, ("relu", "sigmoid")).name == "a.py"
  assert time.monotonic() - t < 5
  nb = tmp_path / "ints.ipynb"
  nb.write_text(json.dumps({"cells": [{"cell_type": "code", "source": [1, 2], "metadata": {}}]}))
  with pytest.raises(_submission.SubmissionUnreadable, match="cell 1's source is not text"):
    _submission.read_submission(nb)
  deep = tmp_path / "deep.ipynb"
  deep.write_text("[" * 100_000 + "]" * 100_000)
  with pytest.raises(_submission.SubmissionUnreadable, match="nested too deeply"):
    _submission.read_submission(deep)
  huge = tmp_path / "huge.py"
  huge.write_text("x = " + "+".join(["1"] * 200_000) + "\n")
  assert _submission.forbidden_uses(_submission.read_submission(huge).cells, ["relu"], {}) == {}
  links = tmp_path / "links"
  links.mkdir()
  (links / "sol.py").symlink_to(folder / "a.py")
  with pytest.raises(_submission.SubmissionUnreadable, match="symbolic link"):
    _submission.find_entry(links, ("relu",))
  with pytest.raises(_submission.SubmissionUnreadable, match="symbolic link"):
    _submission.find_entry(links / "sol.py")
  assert _submission.display(os.fsdecode(b"\xff\x1b=1.py")) == "\\xff\\x1b=1.py"


@pytest.mark.parametrize("mode", ["bwrap", "fallback"])
def test_odd_file_names_are_graded(mode, tmp_path, scratch_root, monkeypatch):
  """A name a spreadsheet would evaluate and a name that is not UTF-8 are graded like any other."""
  from autograder.worker import _sandbox
  if mode == "fallback":
    monkeypatch.setenv("AUTOGRADER_NO_BWRAP", "1")
  else:
    monkeypatch.delenv("AUTOGRADER_NO_BWRAP", raising=False)
    if not _sandbox.bwrap_usable():
      pytest.skip("bubblewrap is not installed or cannot create namespaces here")
  a = load_assignment("01")
  ref = _authoring.module_source(a.source, solved=True, assignment_id="01")
  for raw in (b"=1+1.py", b"caf\xe9 \xff.py"):
    p = pathlib.Path(os.fsdecode(bytes(tmp_path) + b"/" + raw))
    p.write_text(ref)
    report = grade_submission("01", p, functions=["relu"], timeout=TIMEOUT)
    assert report.score == report.max_score, [(t.name, t.output[:300]) for t in report.tests]
    json.dumps(report.as_dict())
  assert not _worker_processes(scratch_root)
