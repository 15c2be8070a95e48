"""Starting, talking to and killing the untrusted worker process.

The design, layer by layer and per mode, is in ``autograder/ISOLATION.md``. In
short: bubblewrap when it works here (only the interpreter, its libraries and
the autograder package — at the neutral path ``/opt/autograder`` — are bound
in, read-only; the scratch folder is the only writable place; own PID,
network, IPC and UTS namespaces; no capabilities); without it, when the grader
is root, each worker runs as an unprivileged uid of its own from the pool
``AUTOGRADER_UIDS``; in every mode Landlock and a seccomp filter where the
kernel offers them (``_confine``), rlimits, a new session, a scratch working
directory, the worker's audit hook, per-call time limits charged by the
worker's own CPU and idle time (``_meter``), bounded output, and a sweep that
kills every process the submission left (its uid; its session, working
directory or environment tag).
"""

from __future__ import annotations

import ctypes
import json
import os
import pathlib
import resource
import secrets
import select
import shutil
import signal
import stat
import struct
import subprocess
import sys
import threading
import time

from autograder.worker import _meter, _wire
from autograder._errors import SubmissionError

DRAIN_CAP = 64 * 1024
READY = b"\n[autograder worker ready]\n"  # the worker's stderr, once set up (see Worker.started)
_SLICE = 0.2  # seconds between looks at a running call's charged time
_PKG_DIR = str(pathlib.Path(__file__).resolve().parents[1])  # the autograder package (this is worker/_sandbox.py)
_PKG_PARENT = str(pathlib.Path(_PKG_DIR).parent)
NEUTRAL = "/opt/autograder"  # where bubblewrap shows the autograder package (never the checkout)
DEFAULT_UIDS = "64000-64031"
# XLA flags of the worker: grading runs many small programs once each, so compiling them quickly matters more
# than optimising them (measured: about a third less compile time on the assignments' checks). Values are the
# same up to rounding, which the checks' tolerances cover. ``AUTOGRADER_XLA_FLAGS`` replaces them ("" for
# none); a flag the installed jaxlib rejects makes the worker start again without them (``_remote``).
FAST_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def xla_flags() -> str:
  """The XLA flags workers start with (``AUTOGRADER_XLA_FLAGS`` when set, else :data:`FAST_XLA_FLAGS`)."""
  return os.environ.get("AUTOGRADER_XLA_FLAGS", FAST_XLA_FLAGS).strip()


# ---------------------------------------------------------------- the uid pool (root without bubblewrap)

_UID_LOCK = threading.Lock()
_UIDS_IN_USE: set[int] = set()


def uid_pool() -> list[int]:
  """The uids workers may run as (``AUTOGRADER_UIDS``: "64000-64031" or "64000,64001"; "off": none)."""
  spec = os.environ.get("AUTOGRADER_UIDS", DEFAULT_UIDS).strip()
  if spec.lower() in ("off", "none", ""):
    return []
  out = []
  for part in spec.split(","):
    lo, _, hi = part.strip().partition("-")
    try:
      lo_i = int(lo)
      hi_i = int(hi) if hi else lo_i
    except ValueError:
      raise ValueError(f"AUTOGRADER_UIDS={spec!r}: give uids like 64000-64031 or 64000,64001.") from None
    out.extend(u for u in range(lo_i, hi_i + 1) if u > 0)
  return out


def drops_privileges() -> bool:
  """Whether workers started without bubblewrap run as a uid of their own (the grader is root, a pool exists)."""
  return os.getuid() == 0 and bool(uid_pool())


def acquire_uid(wait: float = 600.0) -> int:
  """A uid no other live worker of this grader uses (waits while all are taken)."""
  pool, deadline = uid_pool(), time.monotonic() + wait
  while True:
    with _UID_LOCK:
      for u in pool:
        if u not in _UIDS_IN_USE and not _uid_has_processes(u):
          _UIDS_IN_USE.add(u)
          return u
    if time.monotonic() > deadline:
      raise RuntimeError(f"all {len(pool)} worker uids (AUTOGRADER_UIDS) are in use; give a larger range.")
    time.sleep(0.1)


def release_uid(uid: int):
  """Give back a uid taken by :func:`acquire_uid` once its worker is gone."""
  with _UID_LOCK:
    _UIDS_IN_USE.discard(uid)


def _uid_has_processes(uid: int) -> bool:
  for p in os.listdir("/proc"):
    if p.isdigit():
      try:
        if os.stat(f"/proc/{p}").st_uid == uid:
          return True
      except OSError:
        pass
  return False


def _chown_tree(root: str, uid: int, gid: int):
  """Give ``root`` and everything in it to ``uid``; links are not followed and a file with a second hard link is
  left alone (a worker could have linked a file from outside its folder in, to have it handed to a uid)."""
  os.chown(root, uid, gid, follow_symlinks=False)
  for d, dirs, files in os.walk(root):
    for n in dirs + files:
      path = os.path.join(d, n)
      try:
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
          continue
        os.chown(path, uid, gid, follow_symlinks=False)
      except OSError:
        pass


def _hand_over(folder: str, uid: int):
  """A check's programs ``folder`` belongs to the uid its worker runs as (its own, or root's under bubblewrap).

  Root with its capabilities dropped cannot open a 0700 folder that the last check, run under a uid of its own,
  left behind: every program would be compiled again at each check. The tree is chowned only when its owner is
  another uid (everything in it was written by the owner). Only root can chown; others own what they write.
  """
  if os.geteuid() == 0 and os.path.isdir(folder) and os.stat(folder).st_uid != uid:
    _chown_tree(folder, uid, uid)


def bwrap_path() -> str | None:
  """The bubblewrap binary, or None when it is missing or ``AUTOGRADER_NO_BWRAP`` is set."""
  if os.environ.get("AUTOGRADER_NO_BWRAP"):
    return None
  return shutil.which("bwrap")


_BWRAP_OK: dict[str, bool] = {}


def bwrap_usable() -> bool:
  """bwrap exists and can create namespaces here (some containers forbid it)."""
  path = bwrap_path()
  if not path:
    return False
  if path not in _BWRAP_OK:
    try:
      probe = [
        path,
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--unshare-net",
        "--unshare-pid",
        "--die-with-parent",
        "--cap-drop",
        "ALL",
        "true",
      ]
      r = subprocess.run(probe, capture_output=True, timeout=10)  # noqa: S603  (a fixed command line)
      _BWRAP_OK[path] = r.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
      _BWRAP_OK[path] = False
  return _BWRAP_OK[path]


def isolation_summary(layers: list[str] | None = None) -> str:
  """One line for the report: the mode, and the kernel layers the worker reported in force (``layers``)."""
  extra = (" + " + " + ".join(layers)) if layers else ""
  if bwrap_usable():
    who = "" if os.getuid() == 0 else " (grader not root)"
    return (
      f"bubblewrap sandbox{who} (only the interpreter and libraries visible, read-only; no network; own PID "
      f"namespace){extra} + rlimits + audit hook"
    )
  if drops_privileges():
    return f"no bubblewrap: own unprivileged uid per worker{extra} + rlimits + new session + audit hook"
  return (
    f"no bubblewrap, grader not root: worker runs as the grader's own user{extra} + rlimits + new session + "
    "audit hook (install 'bubblewrap', or grade as root so each worker gets a uid of its own)"
  )


def _count_my_tasks() -> int:
  uid, n = os.getuid(), 0
  for p in os.listdir("/proc"):
    if p.isdigit():
      try:
        if os.stat(f"/proc/{p}").st_uid == uid:
          n += len(os.listdir(f"/proc/{p}/task"))
      except OSError:
        pass
  return n


def apply_limits(memory_mb: int, cpu_s: int, nproc: int):
  """Set hard = soft rlimits on this process (the worker calls it before any submission code).

  Without CAP_SYS_RESOURCE (bwrap drops it; ordinary users lack it) they cannot be raised again;
  the worker's audit hook refuses ``resource.setrlimit`` as well.
  """

  def lim(what, value):
    try:
      resource.setrlimit(what, (value, value))
    except (ValueError, OSError):
      pass

  lim(resource.RLIMIT_AS, memory_mb * 2**20)
  lim(resource.RLIMIT_CPU, cpu_s)
  lim(resource.RLIMIT_NPROC, nproc)
  lim(resource.RLIMIT_FSIZE, 64 * 2**20)
  lim(resource.RLIMIT_NOFILE, 512)
  lim(resource.RLIMIT_CORE, 0)
  if sys.platform.startswith("linux"):
    try:
      ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the grader
    except (OSError, AttributeError):
      pass


def link_targets(folders) -> set[str]:
  """What the symbolic links directly inside ``folders`` (the import path's library folders) point to: a
  site-packages that is a farm of links (Nix, some conda layouts) needs its targets bound too. Each target
  alone, never its parent: an editable install's link may point into a checkout that holds hidden tests."""
  targets = set()
  for d in folders:
    try:
      links = [e.path for e in os.scandir(d) if e.is_symlink()]
    except OSError:
      continue
    targets.update(t for t in map(os.path.realpath, links[:4096]) if os.path.exists(t))
  return targets


def _describe_exit(rc: int, via_bwrap: bool) -> str:
  sig = -rc if rc < 0 else (rc - 128 if via_bwrap and rc > 128 else 0)
  if sig:
    names: dict[int, str] = {
      signal.SIGSEGV: "crashed with a segmentation fault (SIGSEGV)",
      signal.SIGKILL: "was killed (SIGKILL — out of memory, or it killed itself)",
      signal.SIGXCPU: "used up its CPU-time limit (SIGXCPU)",
      signal.SIGABRT: "aborted (SIGABRT — often XLA running out of memory)",
      signal.SIGBUS: "crashed (SIGBUS)",
      signal.SIGFPE: "crashed (SIGFPE)",
      signal.SIGXFSZ: "wrote a file larger than the limit (SIGXFSZ)",
    }
    return names.get(sig, f"was killed by signal {sig}")
  return f"exited with status {rc} (os._exit or a crash)"


class Worker:
  """One worker process; ``request`` sends a frame and waits (bounded) for the answer."""

  def __init__(
    self,
    scratch: str,
    denied: list[str],
    memory_mb: int,
    cpu_s: int,
    use_bwrap: bool,
    forbidden: dict | None = None,
    xla_flags: str = "",
    compiled: str = "",
  ):
    self.scratch = scratch
    self.xla_flags = xla_flags
    self.compiled = compiled
    self.via_bwrap = use_bwrap
    self.uid = None
    self.tag = secrets.token_hex(8)  # in the worker's environment: the sweep finds what it started by it
    self._req_w = self._resp_r = -1
    if not use_bwrap and drops_privileges():
      self.uid = acquire_uid()
      _chown_tree(scratch, self.uid, self.uid)
    if compiled:
      _hand_over(compiled, os.geteuid() if self.uid is None else self.uid)
    req_r, self._req_w = os.pipe()
    self._resp_r, resp_w = os.pipe()
    out_r, out_w = os.pipe()
    # -P: no script/cwd dir on sys.path (a student's numpy.py cannot shadow numpy); -E -s: no PYTHON* env, no
    # user site. The autograder package is put on sys.path explicitly: under bubblewrap at a neutral path (the
    # checkout is not there at all); without it from where it lives, removed from sys.path once imported.
    pkg_parent = NEUTRAL if use_bwrap else _PKG_PARENT
    boot = (
      f"import sys; sys.path.insert(0, {pkg_parent!r}); import runpy; "
      "runpy.run_module('autograder.worker._worker', run_name='__main__')"
    )
    py = [sys.executable, "-P", "-E", "-s", "-c", boot, str(req_r), str(resp_w), scratch]
    cmd = self._bwrap(py, scratch, denied, compiled) if use_bwrap else py
    env = {
      "PATH": "/usr/bin:/bin",
      "HOME": scratch,
      "TMPDIR": scratch,
      "JAX_PLATFORMS": "cpu",
      "TF_CPP_MIN_LOG_LEVEL": "3",
      "AUTOGRADER_DENIED": os.pathsep.join(denied),
      "PYTHONDONTWRITEBYTECODE": "1",
      "OMP_NUM_THREADS": "1",
      "LANG": "C.UTF-8",
      "AUTOGRADER_TAG": self.tag,
      "AUTOGRADER_FORBIDDEN": json.dumps(forbidden or {}),
    }
    if os.environ.get("AUTOGRADER_NO_LANDLOCK"):
      env["AUTOGRADER_NO_LANDLOCK"] = "1"
    if xla_flags:
      env["XLA_FLAGS"] = xla_flags
    if compiled:
      env["AUTOGRADER_COMPILED"] = compiled
    if self.uid is not None:
      nproc = 512  # counted for this uid alone (threads included): exact, and no other worker shares it
      env["AUTOGRADER_DROP"] = f"{self.uid}:{self.uid}"
    else:
      nproc = 64 + (_count_my_tasks() if os.getuid() != 0 else 0)  # root is exempt: bwrap's PID namespace and
    env["AUTOGRADER_LIMITS"] = f"{memory_mb},{cpu_s},{nproc}"  # the audit hook hold forks instead
    if not use_bwrap:
      env["AUTOGRADER_UNSHARE_NET"] = "1"
    # S603 waived: the sandboxed worker's command line is ours; the untrusted code runs inside it.
    self.proc = subprocess.Popen(  # noqa: S603
      cmd,
      stdin=subprocess.DEVNULL,
      stdout=out_w,
      stderr=out_w,
      pass_fds=(req_r, resp_w),
      start_new_session=True,
      env=env,
      cwd=scratch,
    )
    for fd in (req_r, resp_w, out_w):
      os.close(fd)
    self.noise = bytearray()
    self.meter = _meter.Meter(self.proc.pid)
    self._out_r = out_r
    self._drainer = threading.Thread(target=self._drain, daemon=True)
    self._drainer.start()

  @staticmethod
  def _bwrap(py, scratch, denied, compiled=""):
    """Bind in only what the worker needs; everything else (the checkout, its .git, assignments/, the out
    folder, other submissions, the grader's /proc, /home, /root, /tmp) does not exist inside."""
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix)}
    needed = set(prefixes)
    for p in sys.path:
      # The standard library and site-packages only: not the grader's working directory or PYTHONPATH
      # folders (a course folder holding hidden tests), not the checkout (a venv inside it is bound alone).
      rp = os.path.realpath(p) if p else ""
      if (
        rp
        and os.path.isdir(rp)
        and (
          any(rp.startswith(q + os.sep) for q in prefixes) or os.path.basename(rp) in ("site-packages", "dist-packages")
        )
      ):
        needed.add(rp)
    needed |= link_targets(needed - prefixes)
    needed = sorted(p for p in needed if not any(p.startswith(q + os.sep) for q in needed if q != p))
    args = [bwrap_path()]
    for system in ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin"):
      if os.path.islink(system):
        args += ["--symlink", os.readlink(system), system]
      elif os.path.isdir(system):
        args += ["--ro-bind", system, system]
    for f in ("/etc/ld.so.cache", "/etc/localtime"):
      if os.path.exists(f):
        args += ["--ro-bind", f, f]
    # A private, empty /tmp first: a bind made before it would vanish under it (a venv in /tmp/checkout/.venv).
    args += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]  # noqa: S108  (a fresh tmpfs inside the sandbox)
    for p in needed:
      if p.startswith(("/usr/", "/lib")) or p in ("/usr",):
        continue
      args += ["--ro-bind", p, p]
    args += ["--ro-bind", _PKG_DIR, NEUTRAL + "/autograder"]
    for d in denied:  # anything denied that lies inside a bound folder is covered
      dp = os.path.realpath(d)
      if os.path.isdir(dp) and any(dp.startswith(n + os.sep) for n in needed):
        args += ["--tmpfs", dp]
    if compiled:  # the submission's own compiled programs (a student's check): at its real path, so keys match
      args += ["--bind", compiled, compiled]
    args += [
      "--bind",
      scratch,
      scratch,
      "--unshare-net",
      "--unshare-pid",
      "--unshare-ipc",
      "--unshare-uts",
      "--die-with-parent",
      "--new-session",
      "--cap-drop",
      "ALL",
      "--chdir",
      scratch,
      "--",
    ]
    return args + py

  def _drain(self):
    while True:
      try:
        chunk = os.read(self._out_r, 65536)
      except OSError:
        break
      if not chunk:
        break
      if len(self.noise) < DRAIN_CAP:
        self.noise += chunk[: DRAIN_CAP - len(self.noise)]
    try:
      os.close(self._out_r)
    except OSError:
      pass

  def started(self) -> bool:
    """Whether the worker got as far as waiting for its first request (call once it has exited)."""
    self._drainer.join(timeout=5)
    return READY in self.noise

  def startup_error(self) -> str:
    """The last line the worker printed before it died (for a worker that never :meth:`started`)."""
    lines = [ln.strip() for ln in bytes(self.noise).decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"

  def alive(self) -> bool:
    """Whether the worker process is still running."""
    return self.proc.poll() is None

  def request(self, obj, timeout: float, what: str):
    """Send ``obj``; return the decoded answer; raise SubmissionError on timeout/crash/garbage."""
    self.send(obj, what)
    return self.receive(timeout, what)

  def _pending(self) -> bool:
    """Whether bytes wait on the answer pipe although no answer is due."""
    try:
      r, _, _ = select.select([self._resp_r], [], [], 0)
    except (OSError, ValueError):
      return False
    return bool(r)

  def send(self, obj, what: str):
    """Send one request frame; refuses (and kills the worker) when it wrote an answer nobody asked for."""
    if self._resp_r >= 0 and self._pending():
      try:  # readable because the worker has ended (end of file), not because it wrote out of turn
        rc = self.proc.wait(timeout=0.5)
      except subprocess.TimeoutExpired:
        rc = None
      if rc is not None:
        raise SubmissionError(
          "crash", f"{what}: the worker process had ended: it {_describe_exit(rc, self.via_bwrap)}."
        )
      self.kill()
      raise SubmissionError(
        "bad_output",
        f"{what}: the worker had written onto the grader's answer pipe out of "
        "turn (a frame nobody asked for: student code writing to the pipe); the worker was "
        "stopped.",
      )
    self.meter.start()
    try:
      _wire.write_frame(self._req_w, obj)
    except (BrokenPipeError, OSError):
      rc = self._wait_exit()
      raise SubmissionError(
        "crash", f"{what}: the worker process had ended: it {_describe_exit(rc, self.via_bwrap)}."
      ) from None

  def receive(self, timeout: float, what: str, wall_limit: float | None = None):
    """Wait for the answer to the last request, charging the worker's time with :class:`_meter.Meter`.

    ``timeout`` is in charged seconds (what the call would take on an idle machine: CPU time, plus time
    spent sleeping or blocked, but not time spent waiting for a core). ``wall_limit`` (default: ten times
    ``timeout`` plus two minutes) is a backstop on the clock for a machine so busy the meter barely moves.
    """
    wall_limit = wall_limit if wall_limit is not None else 10 * timeout + 120
    meter, t0 = self.meter, time.monotonic()
    state = {"first": True}

    def over():
      # Before the grader started waiting it was computing the reference: charge only the worker's CPU.
      charged = meter.update(count_idle=not state.pop("first", False))
      return charged > timeout or time.monotonic() - t0 > wall_limit

    try:
      head = self._read(8, over)
      (n,) = struct.unpack("<Q", head)
      if n > _wire.MAX_FRAME:
        raise _wire.WireError(f"a result of {n / 2**20:.0f} MB, over the {_wire.MAX_FRAME / 2**20:.0f} MB limit")
      resp = _wire.decode_body(self._read(n, over))
    except TimeoutError:
      self.kill()
      wall = time.monotonic() - t0
      if meter.charged <= timeout:
        raise SubmissionError(
          "timeout",
          f"{what} was stopped after {wall:.0f} s on the clock although it was "
          f"charged only {meter.charged:.1f} s (the grading machine was overloaded): ask "
          "for a regrade.",
        ) from None
      raise SubmissionError(
        "timeout",
        f"{what} did not finish within {timeout:g} s (an endless loop, or far "
        f"too slow) and was stopped ({meter.cpu:.1f} s of CPU time, {wall:.1f} s on the "
        "clock).",
      ) from None
    except (EOFError, OSError):
      rc = self._wait_exit()
      raise SubmissionError(
        "crash", f"{what} ended the worker process: it {_describe_exit(rc, self.via_bwrap)}."
      ) from None
    except _wire.WireError as e:
      self.kill()
      raise SubmissionError("bad_output", f"{what} could not be judged: it sent back {e}.") from None
    if not isinstance(resp, dict) or not isinstance(resp.get("ok"), bool):
      self.kill()
      raise SubmissionError("bad_output", f"{what} sent back a malformed answer.")
    if self._pending():  # a second frame right behind the answer: one of them was written out of turn
      self.kill()
      raise SubmissionError(
        "bad_output",
        f"{what} wrote an extra frame onto the grader's answer pipe (student "
        "code writing to the pipe); its answer cannot be trusted and the worker was stopped.",
      )
    return resp

  def _read(self, n: int, over) -> bytes:
    """Read ``n`` bytes; between slices of waiting, ``over()`` says whether the call has used up its time."""
    buf = bytearray()
    while len(buf) < n:
      r, _, _ = select.select([self._resp_r], [], [], 0)
      while not r:
        if over():
          raise TimeoutError
        r, _, _ = select.select([self._resp_r], [], [], _SLICE)
      chunk = os.read(self._resp_r, min(n - len(buf), 1 << 20))
      if not chunk:
        raise EOFError
      buf += chunk
    return bytes(buf)

  def _wait_exit(self) -> int:
    try:
      return self.proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
      self.kill()
      return self.proc.returncode if self.proc.returncode is not None else -9

  def kill(self):
    """Kill the worker, its process group and anything else it left behind (everything its uid owns)."""
    try:
      os.killpg(self.proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
      pass
    try:
      self.proc.kill()
    except ProcessLookupError:
      pass
    try:
      self.proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
      pass
    kill_leftovers(self.scratch, self.proc.pid, uid=self.uid, tag=self.tag)
    if self.uid is not None:
      release_uid(self.uid)
      self.uid = None
    for fd in (self._req_w, self._resp_r):
      try:
        os.close(fd)
      except OSError:
        pass
    self._req_w = self._resp_r = -1

  def close(self):
    """Kill the worker (same as :meth:`kill`)."""
    self.kill()


def kill_leftovers(scratch: str, sid: int, wait: float = 3.0, uid: int | None = None, tag: str | None = None) -> int:
  """Kill processes owned by ``uid``, in session ``sid``, whose working directory is inside ``scratch`` or
  whose environment carries ``tag``; wait till they are gone. With a worker's own uid the sweep is exact
  (a process that left the session and the folder is still that uid's); the other signs are for the modes
  without one."""
  deadline = time.monotonic() + wait
  total = 0
  while True:
    n = _kill_once(scratch, sid, uid, tag)
    total += n
    if n == 0 or time.monotonic() > deadline:
      return total
    time.sleep(0.05)


def _kill_once(scratch: str, sid: int, uid: int | None = None, tag: str | None = None) -> int:
  killed = 0
  scratch = os.path.realpath(scratch)
  me = os.getpid()
  marker = f"AUTOGRADER_TAG={tag}".encode() if tag else None
  for p in os.listdir("/proc"):
    if not p.isdigit() or int(p) == me:
      continue
    pid = int(p)
    hit = False
    if uid is not None:
      try:
        hit = os.stat(f"/proc/{p}").st_uid == uid
      except OSError:
        continue
    if not hit:
      try:
        hit = os.getsid(pid) == sid
      except OSError:
        continue
    if not hit:
      try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
      except OSError:
        cwd = ""
      hit = cwd == scratch or cwd.startswith(scratch + os.sep)
    if not hit and marker:
      try:
        with open(f"/proc/{pid}/environ", "rb") as f:
          hit = marker in f.read(1 << 16)
      except OSError:
        pass
    if hit:
      try:
        os.kill(pid, signal.SIGKILL)
        killed += 1
      except OSError:
        pass
  return killed
