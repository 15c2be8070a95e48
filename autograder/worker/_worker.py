"""The untrusted worker: imports one submission and runs operations on it.

Started by the grader (``python -P -E -s -c <boot> REQ_FD RESP_FD SCRATCH``, see
``_sandbox.Worker``) inside bubblewrap when available, always under rlimits, in
a new session, with a scratch directory (holding a copy of the submission) as
its working directory. Design: ``autograder/ISOLATION.md``.
It answers one request at a time over two pipes in the format of ``_wire``.

Layers set up here, before any submission code runs:
- an import hook that hands out stand-ins for ``dlfunc`` whose functions raise
  "uses dlfunc's implementation" when called (so only that function scores 0);
- a snapshot of numpy/jax/builtins/autograder module dicts, checked and restored
  after every request (monkeypatching is reported as such);
- the assignment's rules (``FORBIDDEN``) as stand-ins: every reference to a
  forbidden function in every loaded module is replaced by a stand-in that
  refuses the call while a function that forbids it is being graded; calls
  into a forbidden package (``optax``, ``jax.nn.initializers``) during that
  function's grading are caught by a call tracer (see :class:`_rules.Rules`);
- a Python audit hook (cannot be removed) refusing sockets, new processes,
  signals, writes outside the scratch directory and reads of denied folders
  (a tripwire that makes messages readable);
- the kernel's walls (``_confine``): Landlock, a seccomp filter and, when
  started as root without bubblewrap, an unprivileged uid of its own.
"""

from __future__ import annotations

import ast
import io
import json
import linecache
import os
import sys
import threading
import types
from typing import Any

import jax  # noqa: F401  (imported before the submission: the ops capture its functions)
import jax.lax  # noqa: F401
import jax.nn  # noqa: F401
import jax.numpy  # noqa: F401
import jax.random  # noqa: F401
import jax.test_util  # noqa: F401
import numpy  # noqa: F401  (imported before the submission, so its snapshot is the original)

from autograder.worker import _confine, _ops, _rules, _sandbox, _wire
from autograder._errors import SubmissionError

OUTPUT_CAP = 4000


def _pkg_dir() -> str:
  """The ``autograder`` package folder (this file is ``autograder/worker/_worker.py``)."""
  return os.path.dirname(os.path.dirname(os.path.abspath(_ops.__file__)))


# ---------------------------------------------------------------- tamper detection

_WATCHED = [
  "numpy",
  "jax",
  "jax.numpy",
  "jax.random",
  "jax.lax",
  "jax.nn",
  "jax.tree_util",
  "builtins",
  "autograder.worker._ops",
  "autograder.worker._wire",
  "autograder._errors",
  "autograder.worker._worker",
  "autograder.worker._rules",
  "json",
  "os",
  "io",
]
_SKIP = {"_", "__builtins__", "__warningregistry__"}


def _snapshot():
  snap = {}
  for name in _WATCHED:
    m = sys.modules.get(name)
    if m is not None:
      snap[name] = (m, {k: v for k, v in vars(m).items() if k not in _SKIP})
  return snap


def _restore(snap) -> list[str]:
  """Undo changes to watched modules; return what had been changed."""
  changed = []
  for name, (m, saved) in snap.items():
    current = vars(m)
    for k, v in saved.items():
      if current.get(k, _MISSING) is not v:
        changed.append(f"{name}.{k}")
        try:
          setattr(m, k, v)
        except Exception:  # noqa: BLE001, S110  (a read-only attribute: reported as changed anyway)
          pass
    for k in [k for k in current if k not in saved and k not in _SKIP and not k.startswith("__")]:
      if isinstance(current[k], types.ModuleType):  # a submodule imported lazily: legitimate
        saved[k] = current[k]
      elif name in ("builtins", "numpy", "jax", "jax.numpy"):
        changed.append(f"{name}.{k}")
        try:
          delattr(m, k)
        except Exception:  # noqa: BLE001, S110  (a read-only attribute: reported as changed anyway)
          pass
  return changed


_MISSING = object()

# ---------------------------------------------------------------- audit hook

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_REFUSED_EVENTS = {
  "socket.__new__": "open a network socket",
  "socket.connect": "open a network connection",
  "socket.bind": "listen on the network",
  "subprocess.Popen": "start a process",
  "os.system": "run a shell",
  "os.fork": "fork",
  "os.forkpty": "fork",
  "os.posix_spawn": "start a process",
  "os.spawn": "start a process",
  "os.exec": "replace the process",
  "os.kill": "send signals",
  "os.killpg": "send signals",
  "signal.pthread_kill": "send signals",
  "pty.spawn": "start a process",
  "webbrowser.open": "open a browser",
  "resource.setrlimit": "change resource limits",
  "resource.prlimit": "change resource limits",
  "os.setsid": "leave its session",
  "os.setpgid": "leave its process group",
}
_PATH_EVENTS = {
  "os.remove",
  "os.rename",
  "os.rmdir",
  "os.mkdir",
  "os.chmod",
  "os.chown",
  "os.truncate",
  "os.link",
  "os.symlink",
  "os.utime",
  "shutil.rmtree",
  "shutil.move",
  "os.chdir",
}


def _keep_compiled(folder: str):
  """Keep every program XLA compiles in ``folder`` and reuse what is there (JAX's persistent cache).

  Only for a student's check: ``folder`` belongs to this one submission path, so what a submission leaves
  there reaches only its own later checks, never another submission or a grade.
  """
  import warnings

  for name, value in (
    ("jax_compilation_cache_dir", folder),
    ("jax_persistent_cache_min_compile_time_secs", 0.0),
    ("jax_persistent_cache_min_entry_size_bytes", 0),
  ):
    jax.config.update(name, value)
  # an entry that cannot be read or written is compiled again: not the student's output
  warnings.filterwarnings("ignore", message=r"Error (reading|writing) persistent compilation cache")


def _share_ir_contexts(uses: int = 32) -> bool:
  """Lower up to ``uses`` programs in one MLIR context instead of building a new context for each.

  JAX makes a fresh MLIR context (loading its dialects: 2-3 ms) for every program it lowers, and a program
  comes from the persistent cache only after it is lowered: in a repeated check that is a quarter of the
  worker's time. A context serves one thread and is replaced after ``uses`` programs, so what it keeps (uniqued
  types, attributes and constants) stays bounded. False, and nothing changed, where this JAX has no
  ``make_ir_context`` to wrap.
  """
  try:
    from jax._src.interpreters import mlir
  except ImportError:
    return False
  make = getattr(mlir, "make_ir_context", None)
  if not callable(make):
    return False
  local = threading.local()

  def shared():
    ctx, used = getattr(local, "ctx", None), getattr(local, "used", 0)
    if ctx is None or used >= uses:
      ctx, used = make(), 0
      local.ctx = ctx
    local.used = used + 1
    return ctx

  mlir.make_ir_context = shared
  return True


def _install_audit_hook(scratch: str, denied: list[str], compiled: str = ""):
  scratch = os.path.realpath(scratch)
  own = os.path.realpath(compiled) if compiled else ""
  writable = [scratch] + ([own] if own else [])
  denied = [os.path.realpath(d) for d in denied if d]
  realpath, fspath, isinstance_ = os.path.realpath, os.fspath, isinstance

  def inside(p, root):
    return p == root or p.startswith(root + os.sep)

  def resolve(p):
    if isinstance_(p, int):
      return None
    try:
      p = fspath(p)
      if isinstance_(p, bytes):
        p = p.decode("utf-8", "replace")
      return realpath(os.path.join(scratch, p))
    except Exception:  # noqa: BLE001
      return None

  def hook(event, args):
    if event in _REFUSED_EVENTS:
      raise PermissionError(f"submissions may not {_REFUSED_EVENTS[event]} ({event})")
    if event == "open":
      path = resolve(args[0])
      if path is None or (own and inside(path, own)):  # its own compiled programs (inside a denied folder)
        return
      mode, flags = args[1], args[2]
      writing = (isinstance_(mode, str) and any(c in mode for c in "wax+")) or (
        isinstance_(flags, int) and flags & _WRITE_FLAGS
      )
      if writing and not any(inside(path, w) for w in writable) and path not in ("/dev/null",):
        raise PermissionError(f"submissions may only write inside their scratch directory, not {path}")
      if any(inside(path, d) for d in denied):
        raise PermissionError(f"submissions may not read {path}")
    elif event in _PATH_EVENTS:
      for a in args[:2]:
        path = resolve(a) if isinstance_(a, (str, bytes, os.PathLike)) else None
        if path is not None and not any(inside(path, w) for w in writable):
          raise PermissionError(f"submissions may not change files outside their scratch directory ({event})")

  sys.addaudithook(hook)


# ---------------------------------------------------------------- kernel walls


def _git_stores(checkout: str) -> list[str]:
  """The git folders of ``checkout``: ``.git``, or for a worktree the folders its ``.git`` file points to."""
  dot = os.path.join(checkout, ".git")
  out = [dot]
  try:
    if os.path.isfile(dot):
      with open(dot) as f:
        line = f.read(4096).strip()
      if line.startswith("gitdir:"):
        gitdir = os.path.normpath(os.path.join(checkout, line[7:].strip()))
        out.append(gitdir)
        common = os.path.join(gitdir, "commondir")
        if os.path.isfile(common):
          with open(common) as f:
            out.append(os.path.normpath(os.path.join(gitdir, f.read(4096).strip())))
  except OSError:
    pass
  return out


def confine(scratch: str, compiled: str = "") -> list[str]:
  """Put up the kernel's walls (see ``_confine``); return the layers in force, for the report."""
  layers = []
  drop = os.environ.get("AUTOGRADER_DROP")
  if os.environ.get("AUTOGRADER_UNSHARE_NET") and os.getuid() == 0 and _confine.unshare(_confine.CLONE_NEWNET):
    layers.append("own network namespace")
  ro = {
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/bin",
    "/sbin",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/proc",
    "/sys/devices/system/cpu",
    "/dev/urandom",
    "/dev/random",
    "/dev/zero",
    sys.prefix,
    sys.base_prefix,
    os.path.dirname(os.__file__),
    _pkg_dir(),
  }
  pkg_parent = os.path.dirname(_pkg_dir())
  for p in sys.path:  # site-packages and the standard library; not the folder holding the autograder
    if (
      p
      and os.path.isdir(p)
      and os.path.realpath(p) != os.path.realpath(pkg_parent)
      and os.path.realpath(p) != os.path.realpath(scratch)
    ):
      ro.add(p)
  system = ("/usr", "/lib", "/bin", "/sbin", "/proc", "/sys", "/dev")  # readable whole: their links need no scan
  linked = _sandbox.link_targets(  # a farm of links (Nix, some conda layouts)
    {
      rp
      for rp in (os.path.realpath(p) for p in ro if os.path.isdir(p))
      if not any(rp == d or rp.startswith(d + os.sep) for d in system)
    }
  )
  ro |= linked
  ro = sorted({os.path.realpath(p) for p in ro if os.path.exists(p)} | {p for p in ro if os.path.exists(p)})
  if drop:  # root without bubblewrap: hide the checkout (and its git store) and the denied folders too
    pkg_parent = os.path.realpath(os.path.dirname(_pkg_dir()))
    installed = any(
      pkg_parent == q or pkg_parent.startswith(q + os.sep)  # pip-installed: not a checkout
      for q in {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}
    )
    cover = ([] if installed else [pkg_parent] + _git_stores(pkg_parent)) + [
      d for d in os.environ.get("AUTOGRADER_DENIED", "").split(os.pathsep) if d
    ]
    keep = (
      [sys.prefix, sys.base_prefix, scratch, _pkg_dir()]
      + ([compiled] if compiled else [])
      + [p for p in sys.path if p and os.path.isdir(p)]
      + sorted(linked)
    )
    keep = [k for k in keep if not os.path.realpath(k) == os.path.realpath(pkg_parent)]
    if _confine.cover(cover, keep):
      layers.append("own mount namespace hiding the checkout and the denied folders")
  need_cap = (
    bool(drop)
    and not all(_confine.world_readable(p) for p in (sys.prefix, sys.base_prefix, os.path.dirname(os.__file__)))
    or bool(drop)
    and not _confine.world_readable(os.path.dirname(os.path.realpath(scratch)))
  )
  abi = (
    0
    if os.environ.get("AUTOGRADER_NO_LANDLOCK")
    else _confine.landlock(ro, [scratch] + ([compiled] if compiled else []), ["/dev/null"])
  )
  if abi:
    layers.append(
      f"Landlock v{abi} (reads only the interpreter and libraries, writes only scratch"
      + (" and its own compiled programs" if compiled else "")
      + (", no TCP" if abi >= 4 else "")
      + (", no signals out" if abi >= 6 else "")
      + ")"
    )
  sec = _confine.seccomp()
  if sec:
    layers.append("seccomp (no ptrace, process_vm_*, open_by_handle_at, mount, unshare, sockets)")
  if drop:
    uid, gid = (int(v) for v in drop.split(":"))
    keep = need_cap and bool(abi) and sec
    if _confine.drop_to(uid, gid, keep_read_search=keep):
      layers.append(f"uid {uid}")
    else:
      raise SystemExit(f"could not drop to uid {uid}")  # never run student code as root by accident
  return layers


# ---------------------------------------------------------------- loading


class Worker:
  """The submission as loaded in the worker: its namespace, its cells' sources, and where it came from."""

  def __init__(self, scratch: str):
    self.scratch = scratch
    self.ns: dict = {}
    self.cells: dict[str, str] = {}
    self.path = ""

  def is_student(self, fname: str) -> bool:
    """Whether code at file name ``fname`` is the student's (the submission file or one of its cells)."""
    return fname == self.path or fname.startswith("<cell ")

  @staticmethod
  def label(fname: str, lineno: int) -> str:
    """Where a line is, in the student's words: ``line N of cell K`` or ``line N``."""
    if fname.startswith("<cell "):
      return f"line {lineno} of cell {fname[6:-1]}"
    return f"line {lineno}"

  def load(self, req):
    """Run the submission's cells in a fresh ``submission`` module (request ``req`` names the file)."""
    module = types.ModuleType("submission")
    module.__file__ = req["path"]
    sys.modules["submission"] = module
    self.ns = module.__dict__
    self.path = req["path"]
    here = os.path.dirname(self.path)  # a folder submission's own helper modules are importable
    if here not in sys.path:
      sys.path.append(here)
    problems = []
    for cell in req["cells"]:
      idx, src = cell["index"], cell["source"]
      fname = self.path if idx is None else f"<cell {idx}>"
      if idx is not None:
        linecache.cache[fname] = (len(src), None, src.splitlines(True), fname)
      try:
        tree = ast.parse(src, fname)
      except SyntaxError as e:
        where = self.label(fname, e.lineno or 0)
        problems.append(f"syntax error at {where}: {e.msg}")
        continue
      except (RecursionError, MemoryError, ValueError, SystemError) as e:
        what = (
          "the code is nested too deeply"
          if isinstance(e, (RecursionError, SystemError))
          else "it needs too much memory"
          if isinstance(e, MemoryError)
          else str(e)[:100]
        )
        where = "this file" if idx is None else f"cell {idx}"
        problems.append(
          f"{where} cannot be compiled by Python: {what} (e.g. an expression of hundreds of "
          "thousands of terms); split it up."
        )
        continue
      for node in tree.body:  # statement by statement: one failure does not stop the rest
        try:
          code = compile(ast.Module([node], []), fname, "exec")
        except (RecursionError, MemoryError, SystemError, ValueError):
          problems.append(
            f"{self.label(fname, getattr(node, 'lineno', 0))} cannot be compiled by Python: an "
            "expression nested too deeply; split it up."
          )
          if idx is not None:
            break
          continue
        try:
          exec(code, self.ns)  # noqa: S102  (running the submission is the worker's job; it is sandboxed)
        except BaseException as e:  # noqa: BLE001  (SystemExit/KeyboardInterrupt at top level too)
          err = _ops.classify(e, "the submission", self.is_student, self.label, None)
          problems.append(err.message.replace("the submission raised", "top-level code raised", 1))
          if idx is not None:  # a notebook cell stops at its first error, as in Jupyter
            break
    return problems


class _Cap(io.TextIOBase):
  def __init__(self):
    self.parts, self.n = [], 0

  def write(self, s):
    s = str(s)
    if self.n < OUTPUT_CAP:
      self.parts.append(s[: OUTPUT_CAP - self.n])
    self.n += len(s)
    return len(s)

  def text(self):
    t = "".join(self.parts)
    return t + (f"\n... ({self.n - OUTPUT_CAP} more characters of output dropped)" if self.n > OUTPUT_CAP else "")


def _answer(req: dict, worker: Worker, rules: _rules.Rules, layers: list[str], snap, real) -> dict[str, Any]:
  """One request: load the submission or run one operation on one function, its prints captured, its rules armed,
  and the watched modules restored (a change is reported as tampering); ``real`` is the worker's own
  (stdout, stderr), put back after it."""
  cap = _Cap()
  sys.stdout = sys.stderr = cap
  resp: dict[str, Any] = {"ok": True}
  try:
    if req["op"] == "load":
      resp["problems"] = worker.load(req)
      resp["defined"] = {f: callable(worker.ns.get(f)) for f in req["functions"]}
      resp["layers"] = layers
    else:
      fn_name = req["fn"]
      fn = worker.ns.get(fn_name)
      if not callable(fn):
        raise SubmissionError("missing", f"{fn_name} is not defined (or not a function) in the submission.")
      rules.enter(fn_name)
      try:
        resp["result"] = _ops.run(
          req["op"],
          fn,
          fn_name,
          tuple(req["args"]),
          dict(req["kwargs"]),
          dict(req.get("opts") or {}),
          worker.is_student,
          worker.label,
        )
      finally:
        hit = rules.exit()
      if hit:  # refused, even if the submission caught the refusal and went on
        raise SubmissionError(
          "refused",
          f"{fn_name}: calls {hit}, which this assignment forbids for {fn_name}. Write it yourself with jax.numpy.",
        )
  except SubmissionError as e:
    resp = {"ok": False, "kind": e.kind, "message": e.message}
  except BaseException as e:  # noqa: BLE001
    resp = {"ok": False, "kind": "exception", "message": f"{type(e).__name__}: {e}"[:300]}
  finally:
    sys.stdout, sys.stderr = real
  changed = _restore(snap)
  if changed:
    what = ", ".join(sorted(set(changed))[:5])
    if req["op"] == "load":
      resp.setdefault("problems", []).append(
        f"top-level code replaced {what}; the originals were restored (monkeypatching is not allowed)."
      )
    else:
      resp = {
        "ok": False,
        "kind": "tampered",
        "message": f"{req['fn']} replaced {what} while running; monkeypatching numpy, jax or the "
        "grader is not allowed (the originals were restored).",
      }
  resp["output"] = cap.text()
  return resp


def main(argv):
  """The worker process: ``argv`` is (prog, request fd, response fd, scratch). Confine, then answer until EOF."""
  req_fd, resp_fd, scratch = int(argv[1]), int(argv[2]), argv[3]
  denied = [d for d in os.environ.get("AUTOGRADER_DENIED", "").split(os.pathsep) if d]
  for name in [m for m in sys.modules if m == "dlfunc" or m.startswith("dlfunc.")]:
    del sys.modules[name]
  sys.meta_path.insert(0, _rules.DlfuncFinder())
  sys.path.append(scratch)
  os.chdir(scratch)
  limits = os.environ.get("AUTOGRADER_LIMITS")
  if limits:
    memory_mb, cpu_s, nproc = (int(v) for v in limits.split(","))
    _sandbox.apply_limits(memory_mb, cpu_s, nproc)
  try:
    forbidden = json.loads(os.environ.get("AUTOGRADER_FORBIDDEN") or "{}")
  except ValueError:
    forbidden = {}
  rules = _rules.Rules(forbidden if isinstance(forbidden, dict) else {})
  compiled = os.environ.get("AUTOGRADER_COMPILED", "")
  if compiled:
    _keep_compiled(compiled)
  _share_ir_contexts()
  # Start XLA's CPU client now, before any submission code: it reads XLA_FLAGS (a flag this jaxlib does not
  # know aborts here, before READY, and the grader starts the worker again without its flags).
  jax.devices()
  layers = confine(scratch, compiled)
  pkg_parent = os.path.realpath(os.path.dirname(_pkg_dir()))
  sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != pkg_parent]  # imports are done
  worker = Worker(scratch)
  snap = _snapshot()
  _install_audit_hook(scratch, denied, compiled)
  real = sys.stdout, sys.stderr
  write_frame, read_frame = _wire.write_frame, _wire.read_frame
  os.write(2, _sandbox.READY)  # before any submission code: a crash before it is the grader's, not the student's
  while True:
    try:
      req = read_frame(req_fd)
    except EOFError:
      return 0
    resp = _answer(req, worker, rules, layers, snap, real)
    try:
      write_frame(resp_fd, resp)
    except _wire.WireError:
      write_frame(
        resp_fd, {"ok": False, "kind": "bad_output", "message": "the result could not be sent back.", "output": ""}
      )


if __name__ == "__main__":
  sys.exit(main(sys.argv))
