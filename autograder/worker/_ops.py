"""Operations on a student's function, run where the student's code lives.

Shared by the isolated worker and the in-kernel (nbgrader) path so that both
grade the same way. Each op returns a pytree of NumPy arrays or raises
:class:`SubmissionError` with a message written for the student.
"""

from __future__ import annotations

import linecache
import traceback

import jax
import jax.numpy as jnp
import numpy as np

from autograder._errors import GradingTimeout, SubmissionError

# Captured before any submission code runs, so monkeypatching jax/numpy in a
# submission cannot change what the grader's operations do.
_jit, _vmap, _vjp, _x64 = jax.jit, jax.vmap, jax.vjp, jax.enable_x64
_eval_shape = jax.eval_shape
_tree_map, _tree_leaves = jax.tree_util.tree_map, jax.tree_util.tree_leaves
_tree_structure = jax.tree_util.tree_structure
_asarray = np.asarray
_key_data = jax.random.key_data

_TRACE_ERRORS = {
  "TracerBoolConversionError": "Python `if`/`while`/`bool()` on a traced value",
  "ConcretizationTypeError": "a traced value used where a concrete Python value is needed",
  "TracerIntegerConversionError": "`int()` or indexing with a traced value",
  "TracerArrayConversionError": "NumPy (`np.*` or `np.asarray`) called on a traced value — use jax.numpy",
  "UnexpectedTracerError": "a traced value leaked out of the function (saved in a global?)",
}


class RefusedError(Exception):
  """Raised when a submission calls an implementation it may not use (dlfunc)."""


def student_frame(tb, is_student):
  """(line number, source line, file label) of the innermost frame in student code."""
  found = None
  for frame, lineno in traceback.walk_tb(tb):
    fname = frame.f_code.co_filename
    if is_student(fname):
      found = (lineno, linecache.getline(fname, lineno).strip(), fname)
  return found


def _where(tb, is_student, label):
  """`` at line 39 in `gru_step` (called as classifier_apply -> gru_step): `code` ``: the place and the chain."""
  loc = student_frame(tb, is_student)
  if not loc:
    return ""
  lineno, line, fname = loc
  chain = [
    f.f_code.co_name
    for f, _ in traceback.walk_tb(tb)
    if is_student(f.f_code.co_filename) and not f.f_code.co_name.startswith("<")
  ]
  inner = f" in `{chain[-1]}`" if chain else ""
  called = f" (called as {' -> '.join(chain)})" if len(chain) > 1 else ""
  return f" at {label(fname, lineno)}{inner}{called}" + (f": `{line[:120]}`" if line else "")


def classify(e: BaseException, fn_name: str, is_student, label, under: str | None = None) -> SubmissionError:
  """Turn an exception from student code into a SubmissionError a student can act on."""
  where = _where(e.__traceback__, is_student, label)
  tname = type(e).__name__
  msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
  if isinstance(e, RefusedError):
    return SubmissionError("refused", f"{fn_name}: {msg}")
  if isinstance(e, NotImplementedError):
    loc = student_frame(e.__traceback__, is_student)
    at = f" at {label(loc[2], loc[0])}" if loc else ""
    return SubmissionError("not_implemented", f"{fn_name}: not implemented yet (it raises NotImplementedError{at}).")
  if under == "jit" and tname in _TRACE_ERRORS:
    return SubmissionError("jit", f"{fn_name} works eagerly but not under jax.jit: {_TRACE_ERRORS[tname]}{where}.")
  if tname in _TRACE_ERRORS:
    return SubmissionError(
      "jit", f"{fn_name} fails under jax.{under or 'transformations'}: {_TRACE_ERRORS[tname]}{where}."
    )
  if isinstance(e, MemoryError):
    return SubmissionError("exception", f"{fn_name} ran out of memory{where}.")
  if isinstance(e, SystemExit):
    return SubmissionError("exception", f"{fn_name} called sys.exit({e.code!r}){where}; functions must return.")
  if isinstance(e, KeyboardInterrupt):
    return SubmissionError("exception", f"{fn_name} raised KeyboardInterrupt{where}.")
  if isinstance(e, RecursionError):
    return SubmissionError("exception", f"{fn_name} recursed too deeply{where}.")
  ctx = f" under jax.{under}" if under else ""
  return SubmissionError(
    "exception", f"{fn_name} raised {tname}{ctx}{where}: {msg}" if msg else f"{fn_name} raised {tname}{ctx}{where}."
  )


def to_numpy(tree, fn_name: str):
  """Student output -> pytree of NumPy arrays (typed keys -> key data); refuse anything else."""

  def leaf(x):
    if isinstance(x, (bool, int, float, complex, np.ndarray, np.generic)):
      return _asarray(x) if not isinstance(x, np.ndarray) else x
    if isinstance(x, jax.Array):
      if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        return _asarray(_key_data(x))
      return _asarray(x)
    if isinstance(x, (str, bytes)):
      return x
    raise SubmissionError(
      "bad_output",
      f"{fn_name} returned a {type(x).__name__} inside its result; expected arrays (or dicts/lists/tuples of arrays).",
    )

  try:
    return _tree_map(leaf, tree)
  except SubmissionError:
    raise
  except Exception as e:  # noqa: BLE001
    raise SubmissionError(
      "bad_output", f"{fn_name} returned something that is not arrays ({type(e).__name__})."
    ) from None


def run(op: str, fn, fn_name: str, args: tuple, kwargs: dict, opts: dict, is_student, label):
  """Run one operation. ``opts`` are op-specific (static_argnums, in_axes, argnums, cotangent...)."""
  under = {
    "jit": "jit",
    "vmap": "vmap",
    "vjp": "vjp",
    "check_grads": "grad",
    "trace_count": "jit",
    "iterate": "jit" if opts.get("jit", True) else None,
  }.get(op)
  try:
    return _run(op, fn, fn_name, args, kwargs, opts)
  except (SubmissionError, GradingTimeout):
    raise
  except BaseException as e:  # noqa: BLE001  (KeyboardInterrupt and SystemExit from student code too)
    raise classify(e, fn_name, is_student, label, under) from None


def _static(opts):
  s = opts.get("static_argnums", ())
  return tuple(s) if isinstance(s, (list, tuple)) else (int(s),)


def _run(op, fn, fn_name, args, kwargs, opts):
  if op == "call":
    with _x64(bool(opts.get("x64"))):
      return to_numpy(_call(fn, args, kwargs) if opts.get("compile") else fn(*args, **kwargs), fn_name)
  if op == "jit":
    return to_numpy(_jit(fn, static_argnums=_static(opts))(*args, **kwargs), fn_name)
  if op == "vmap":
    in_axes = opts.get("in_axes", 0)
    in_axes = tuple(in_axes) if isinstance(in_axes, list) else in_axes
    return to_numpy(_vmap(lambda *a: fn(*a, **kwargs), in_axes=in_axes)(*args), fn_name)
  if op == "vjp":
    return _vjp_op(fn, fn_name, args, kwargs, opts)
  if op == "check_grads":
    return _check_grads_op(fn, args, kwargs, opts)
  if op == "trace_count":
    count = [0]

    def counted(*a, **k):
      count[0] += 1
      return fn(*a, **k)

    jf = _jit(counted, static_argnums=_static(opts))
    outs = [to_numpy(jf(*a), fn_name) for a in opts["arg_lists"]]
    return (outs, count[0])
  if op == "iterate":
    step = _jit(fn) if opts.get("jit", True) else fn
    state = args[0]
    batches, extra = args[1], args[2:]
    for b in batches:
      state = step(state, b, *extra, **kwargs)
    return to_numpy(state, fn_name)
  raise SubmissionError("exception", f"unknown operation {op!r}")


def _call(fn, args, kwargs):
  """``fn(*args, **kwargs)``, compiled as one program when that gives what the eager call would (``C.matches``
  asks for it; a plain ``sub.call`` stays eager, since a Python loop of many steps, e.g. an optimisation
  loop, would be unrolled into one huge program).

  Eager JAX compiles every primitive separately (a cold worker spends most of its time there), so the call
  is traced under a *fresh* ``jax.jit`` (retraced every call: anything the function does in Python, such as
  drawing from ``np.random``, happens on every call as it would eagerly) with Python scalars static. It runs
  eagerly instead when it does not trace (Python control flow on values, non-array results: the student
  gets the eager behaviour and its messages) or when an output is weakly typed (a Python number returned,
  whose dtype would differ from the eager result's).
  """
  pos = [i for i, a in enumerate(args) if not _py_scalar(a)]
  kw_arrays = {k: v for k, v in kwargs.items() if not _py_scalar(v)}
  kw_static = {k: v for k, v in kwargs.items() if _py_scalar(v)}

  def traced(values, kw):
    full = list(args)
    for i, v in zip(pos, values):
      full[i] = v
    return fn(*full, **kw, **kw_static)

  try:
    out = _jit(traced)([args[i] for i in pos], kw_arrays)
    leaves = _tree_leaves(out)
  except Exception:  # noqa: BLE001  (does not trace, or fails: the eager call decides)
    return fn(*args, **kwargs)
  if any(getattr(x, "weak_type", False) or not isinstance(x, jax.Array) for x in leaves):
    return fn(*args, **kwargs)
  return out


def _py_scalar(x) -> bool:
  return x is None or isinstance(x, (bool, int, float, complex, str))


def _py_static(x) -> bool:
  """Python bool/int/str/None positional arguments stay Python values in gradient ops (flags, counts)."""
  return x is None or isinstance(x, (bool, int, str))


def _vjp_op(fn, fn_name, args, kwargs, opts):
  """``(f(*args), vjp(cotangent))`` in float64, compiled as one program under ``jax.jit`` (one compile instead
  of one per primitive: several times faster for a cold worker); a function that does not trace is
  differentiated eagerly instead, so a jit problem never costs gradient points."""
  argnums = opts.get("argnums", 0)
  argnums = tuple(argnums) if isinstance(argnums, list) else argnums
  nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
  with _x64(True):
    args64 = [a if _py_static(a) else _tree_map(jnp.asarray, a) for a in args]
    dyn = [i for i, a in enumerate(args64) if not _py_static(a)]

    def f_of(values):
      def f(*p):
        full = list(args64)
        for i, v in zip(dyn, values):
          full[i] = v
        for i, v in zip(nums, p):
          full[i] = v
        return fn(*full, **kwargs)

      return f

    def cast_cot(out):
      cot = opts["cotangent"]
      try:
        if _tree_structure(cot) != _tree_structure(out):
          raise ValueError
        return _tree_map(lambda c, o: jnp.asarray(c, dtype=jnp.result_type(o)), cot, out)
      except Exception:  # noqa: BLE001
        raise SubmissionError(
          "bad_output",
          f"{fn_name} returned a result whose structure/shape differs from "
          "the expected one, so its gradient cannot be checked.",
        ) from None

    def both(values, cot):
      out, pullback = _vjp(f_of(values), *[values[dyn.index(i)] for i in nums])
      return out, pullback(cot)

    values = [args64[i] for i in dyn]
    try:
      out_shape = _eval_shape(lambda v: f_of(v)(*[v[dyn.index(i)] for i in nums]), values)
    except Exception:  # noqa: BLE001  (does not trace: differentiate eagerly, as before)
      out_shape = None
    if out_shape is not None:
      out, grads = _jit(both)(values, cast_cot(out_shape))
    else:
      out, pullback = _vjp(f_of(values), *[args64[i] for i in nums])
      grads = pullback(cast_cot(out))
    grads = grads[0] if isinstance(argnums, int) else tuple(grads)
    return (to_numpy(out, fn_name), to_numpy(grads, fn_name))


def _check_grads_op(fn, args, kwargs, opts):
  from jax.test_util import check_grads

  argnums = opts.get("argnums", 0)
  nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
  with _x64(True):
    args64 = [a if _py_static(a) else _tree_map(jnp.asarray, a) for a in args]

    def f(*p):
      full = list(args64)
      for i, v in zip(nums, p):
        full[i] = v
      return fn(*full, **kwargs)

    try:
      check_grads(f, tuple(args64[i] for i in nums), order=1, modes=("rev",), eps=1e-6, atol=1e-5, rtol=1e-5)
    except AssertionError as e:
      return str(e).strip().splitlines()[0][:300] if str(e).strip() else "gradient mismatch"
  return None
