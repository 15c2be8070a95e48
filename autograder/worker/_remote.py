"""``sub`` objects: the student's functions, as the tests see them.

:class:`RemoteSubmission` calls them in an isolated worker (standalone
grading); :class:`LocalSubmission` calls them in this process (nbgrader kernel,
pytest plugin on trusted code). Both return NumPy values and raise
:class:`SubmissionError`, so a test cannot tell them apart.
"""

from __future__ import annotations

import pathlib
import shutil
import sys
import tempfile

from autograder.worker import _sandbox
from autograder._errors import GraderBroken, SubmissionError

_KINDS = {"exception", "not_implemented", "missing", "timeout", "crash", "refused", "jit", "bad_output", "tampered"}
MSG_CAP = 600


class _Ops:
  """The operations every ``sub`` offers; subclasses implement ``_op``."""

  def _op(self, op, name, args, kwargs, opts):
    raise NotImplementedError

  def start(self, op, name, *args, **kwargs):
    """Begin ``op`` on the student's ``name``; return a function that waits for its result.

    The checks compute the reference between the two, so on a multi-core machine the grader and
    the worker run at the same time. Here (in-process) the op simply runs now.
    """
    opts = kwargs.pop("_opts", {})
    try:
      value = self._op(op, name, args, kwargs, opts)
    except SubmissionError as e:
      err = e

      def fail():
        raise err

      return fail
    return lambda: value

  def call(self, name, *args, **kwargs):
    return self._op("call", name, args, kwargs, {})

  def call64(self, name, *args, **kwargs):
    """``f(*args, **kwargs)`` with float64 enabled (``jax.enable_x64``) where the student's code runs."""
    return self._op("call", name, args, kwargs, {"x64": True})

  def jit(self, name, *args, static_argnums=(), **kwargs):
    return self._op("jit", name, args, kwargs, {"static_argnums": list(_tup(static_argnums))})

  def vmap(self, name, *args, in_axes=0, **kwargs):
    return self._op("vmap", name, args, kwargs, {"in_axes": in_axes})

  def vjp(self, name, args, cotangent, argnums=0, **kwargs):
    return self._op("vjp", name, tuple(args), kwargs, {"argnums": argnums, "cotangent": cotangent})

  def check_grads(self, name, args, argnums=0, **kwargs):
    return self._op("check_grads", name, tuple(args), kwargs, {"argnums": argnums})

  def trace_count(self, name, arg_lists, static_argnums=()):
    return self._op(
      "trace_count",
      name,
      (),
      {},
      {"arg_lists": [tuple(a) for a in arg_lists], "static_argnums": list(_tup(static_argnums))},
    )

  def iterate(self, name, state, batches, *args, jit=True, **kwargs):
    return self._op("iterate", name, (state, list(batches)) + tuple(args), kwargs, {"jit": bool(jit)})

  def __getattr__(self, name):
    if name.startswith("_"):
      raise AttributeError(name)
    return lambda *args, **kwargs: self.call(name, *args, **kwargs)


def _tup(x):
  return tuple(x) if isinstance(x, (list, tuple)) else (x,)


class LocalSubmission(_Ops):
  """The student's functions living in ``namespace`` (a notebook's ``globals()``)."""

  def __init__(self, namespace: dict, refused: dict[str, str] | None = None):
    self._ns = namespace
    self._refused = refused or {}
    self.output = []

  def _op(self, op, name, args, kwargs, opts):
    if name in self._refused:
      raise SubmissionError("refused", f"{name}: uses {self._refused[name]}, which submissions may not use.")
    fn = self._ns.get(name)
    if not callable(fn):
      raise SubmissionError("missing", f"{name} is not defined (or not a function) in the notebook.")
    from autograder.worker import _ops  # JAX: imported when first needed (the standalone grader never needs it)

    return _ops.run(op, fn, name, args, kwargs, opts, _is_notebook_code, _label)

  def take_output(self) -> str:
    """Always empty: an in-process submission's prints go to the notebook itself."""
    return ""


def _is_notebook_code(fname: str) -> bool:
  return fname.startswith("<ipython-input") or "/ipykernel_" in fname or fname.startswith("<cell")


def _label(_fname, lineno):
  return f"line {lineno} of its cell"


class RemoteSubmission(_Ops):
  """The student's functions in an isolated worker; restarted after a crash or timeout.

  After a function times out or kills its worker, its remaining tests fail at
  once with the same message (so a hang costs seconds, not minutes); so do the
  tests of the graded functions that call it (``callees``: {graded function:
  the graded functions it calls}), since they would hang in it too: an endless
  loop costs its time limit once.
  """

  def __init__(
    self,
    cells,
    entry_copy: pathlib.Path,
    functions,
    *,
    scratch: pathlib.Path,
    denied: list[str],
    timeout: float,
    memory_mb: int,
    cpu_s: int,
    refused: dict[str, str] | None = None,
    use_bwrap: bool | None = None,
    forbidden: dict | None = None,
    callees: dict[str, list[str]] | None = None,
    xla_flags: str | None = None,
    compiled: str = "",
  ):
    self._cells = cells
    self._compiled = compiled  # a folder of the submission's own compiled programs, kept across its checks
    self._entry = str(entry_copy)
    self._functions = list(functions)
    self._scratch = str(scratch)
    self._denied = denied
    self.timeout = timeout
    self._memory_mb, self._cpu_s = memory_mb, cpu_s
    self._refused = refused or {}
    self._forbidden = {f: list(v) for f, v in (forbidden or {}).items()}
    self._callees = {f: list(v) for f, v in (callees or {}).items()}
    self._xla_flags = _sandbox.xla_flags() if xla_flags is None else xla_flags
    self.xla_note = ""  # set when the worker had to start without its XLA flags
    self._load_sent = self._loaded = False
    self.layers: list[str] = []  # the kernel layers the worker reported in force
    self._use_bwrap = _sandbox.bwrap_usable() if use_bwrap is None else use_bwrap
    self._worker: _sandbox.Worker | None = None
    self._broken: SubmissionError | None = None
    self._dead: dict[str, SubmissionError] = {}
    self.load_problems: list[str] | None = None
    self.defined: dict[str, bool] = {}
    self.workers_started = 0
    self.charged = 0.0  # seconds charged to the submission so far (see _meter): the total budget's clock
    self._output: list[str] = []

  # -- lifecycle

  def spawn(self):
    """Start the worker now and send it the submission to load: it imports JAX and loads the submission while
    the grader imports the tests (the answer is read at the first operation)."""
    if self._worker is None and self._broken is None:
      self._worker = _sandbox.Worker(
        self._scratch,
        self._denied,
        self._memory_mb,
        self._cpu_s,
        self._use_bwrap,
        forbidden=self._forbidden,
        xla_flags=self._xla_flags,
        compiled=self._compiled,
      )
      self.workers_started += 1
      self._loaded, self._load_sent = False, False
      try:
        self._worker.send(self._load_request(), "loading the submission")
        self._load_sent = True
      except SubmissionError:
        pass  # it died at once: _ensure sees it and says why

  def _load_request(self):
    return {"op": "load", "cells": self._cells, "path": self._entry, "functions": self._functions}

  def _ensure(self):
    if self._broken:
      raise self._broken
    if self._worker is not None and self._worker.alive() and self._loaded:
      return self._worker
    if self._worker is not None and not self._worker.alive() and not self._load_sent:
      self._worker.kill()
      self._worker = None
    self.spawn()
    worker = self._worker
    if worker is None:  # spawn() starts one: _broken was checked above
      raise RuntimeError("the grader could not start a worker; grade again.")
    try:
      if not self._load_sent:
        worker.send(self._load_request(), "loading the submission")
      self._load_sent = False
      resp = worker.receive(max(self.timeout, 30.0), "loading the submission")
    except SubmissionError as e:
      self._worker, self._load_sent = None, False
      if e.kind == "crash" and not worker.started() and self._xla_flags:
        # Before any submission code ran: most likely this jaxlib rejects one of the XLA flags. Start again
        # without them (the grade does not depend on them).
        self.xla_note = (
          f"the grading worker did not start with XLA_FLAGS={self._xla_flags!r} ({worker.startup_error()}); "
          "it was started again without them."
        )
        self._xla_flags = ""
        return self._ensure()
      if e.kind == "crash" and not worker.started():
        raise GraderBroken(
          f"the grading worker could not start ({worker.startup_error()}) before any submission "
          f"code ran, so nothing was graded: check that {sys.executable} imports jax and numpy "
          f"and that the memory limit ({self._memory_mb} MB) is enough for them, then grade "
          "again."
        ) from None
      self._broken = SubmissionError(
        e.kind,
        e.message + " Top-level code runs when the submission is loaded: "
        "keep experiments out of it (or under `if __name__ == '__main__':`).",
      )
      raise self._broken from None
    finally:
      self.charged += worker.meter.charged
    if self.load_problems is None:
      probs = v if isinstance(v := resp.get("problems"), list) else []
      self.load_problems = [str(p)[:MSG_CAP] for p in probs[:20]]
      defined = v if isinstance(v := resp.get("defined"), dict) else {}
      self.defined = {f: bool(defined.get(f)) for f in self._functions}
      layers = resp.get("layers")
      if isinstance(layers, list):
        self.layers = [str(x)[:200] for x in layers[:8]]
      out = resp.get("output")
      if isinstance(out, str) and out.strip():
        self.load_problems.append("output while loading: " + out.strip()[:300] + (" ..." if len(out) > 300 else ""))
    self._loaded = True
    return worker

  def close(self):
    """Stop the worker and anything it left running; the next call starts a fresh one."""
    if self._worker is not None:
      self._worker.kill()
      self._worker = None
    _sandbox.kill_leftovers(self._scratch, -1)

  # -- operations

  def _op(self, op, name, args, kwargs, opts):
    return self._begin(op, name, args, kwargs, opts)()

  def start(self, op, name, *args, **kwargs):
    """Send one operation to the worker now; return a function that waits for its answer (and raises its error).

    An operation refused before it was sent (a forbidden use, a function that died earlier) comes back as a
    function that raises, so callers handle every failure where they wait.
    """
    opts = kwargs.pop("_opts", {})
    try:
      return self._begin(op, name, args, kwargs, opts)
    except SubmissionError as e:
      err = e

      def fail():
        raise err

      return fail

  def _begin(self, op, name, args, kwargs, opts):
    if name in self._refused:
      raise SubmissionError(
        "refused",
        f"{name}: uses {self._refused[name]}, which submissions may not use "
        "(dlfunc's implementation of a graded function, or a library function named in "
        "the assignment). Write it yourself with jax.numpy.",
      )
    if name in self._dead:
      e = self._dead[name]
      raise SubmissionError(e.kind, e.message + " (from an earlier test; not run again)")
    hung = [c for c in self._callees.get(name, ()) if c in self._dead and self._dead[c].kind == "timeout"]
    if hung:
      raise SubmissionError(
        "timeout",
        f"{name} was not run: it calls {hung[0]}, which did not finish within its time limit in an earlier "
        f"test (see {hung[0]}'s tests); fix {hung[0]} first.",
      )
    worker = self._ensure()
    what = f"{name}" if op == "call" else f"{name} (under {op})"
    timeout = self.timeout
    try:
      worker.send({"op": op, "fn": name, "args": list(args), "kwargs": dict(kwargs), "opts": opts}, what)
    except SubmissionError as e:
      self._dead[name] = e
      self._worker = None
      raise
    return lambda: self._finish(worker, name, what, timeout)

  def _finish(self, worker, name, what, timeout):
    try:
      resp = worker.receive(timeout, what)
    except SubmissionError as e:
      if e.kind in ("timeout", "crash", "bad_output"):
        self._dead[name] = e
        self._worker = None
      raise
    finally:
      self.charged += worker.meter.charged
    out = resp.get("output")
    if isinstance(out, str) and out:
      self._output.append(out[:4000])
    if not resp["ok"]:
      kind = resp.get("kind") if resp.get("kind") in _KINDS else "exception"
      msg = resp.get("message") if isinstance(resp.get("message"), str) else "failed"
      raise SubmissionError(kind, msg[:MSG_CAP])
    return resp.get("result")

  def take_output(self) -> str:
    """What the submission printed since the last call (then forgotten)."""
    text = "".join(self._output)
    self._output = []
    return text


def make_scratch() -> pathlib.Path:
  """A fresh private folder (under $AUTOGRADER_SCRATCH if set, else the temp dir), mode 0700."""
  import os

  root = os.environ.get("AUTOGRADER_SCRATCH") or None
  if root:
    os.makedirs(root, exist_ok=True)
  return pathlib.Path(tempfile.mkdtemp(prefix="autograder-", dir=root)).resolve()


def remove_scratch(path: pathlib.Path):
  """Delete a scratch folder, ignoring what is already gone."""
  shutil.rmtree(path, ignore_errors=True)
