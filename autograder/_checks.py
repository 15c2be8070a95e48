"""Checks with feedback a student can act on.

Every check runs in the trusted grader process on NumPy values (the student's
outputs come back from the worker as arrays) and raises :class:`CheckFailed`
with a message that names the call, the input, what was expected and what came
back. The ``sub`` object (see AUTHORING.md) runs the student's code.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import threading
from typing import Any, Callable, Sequence

import numpy as np

from autograder._errors import CheckFailed, SubmissionError

# (rtol, atol) per dtype: tight enough to catch a wrong formula, loose enough
# for a different but correct order of floating-point operations.
TOLERANCES = {
    "float16": (1e-2, 1e-3),
    "bfloat16": (2e-2, 1e-2),
    "float32": (1e-5, 1e-6),
    "float64": (1e-10, 1e-12),
}


# ---------------------------------------------------------------- inputs


def normal(seed: int, shape: Sequence[int], dtype=np.float32, scale: float = 1.0) -> np.ndarray:
  """Standard-normal test input from NumPy's PCG64: identical on every machine."""
  return (np.random.default_rng(seed).standard_normal(tuple(shape)) * scale).astype(dtype)


def key(seed: int):
  """A typed ``jax.random.key(seed)`` (travels to the worker as key data)."""
  import jax
  return jax.random.key(seed)


# ---------------------------------------------------------------- basic verdicts


def fail(message: str):
  """Fails the check with ``message`` (what the student sees): raises :class:`CheckFailed`."""
  raise CheckFailed(message)


def check(condition, message: str):
  """Fails the check with ``message`` unless ``condition`` is true."""
  if not bool(condition):
    raise CheckFailed(message)


def describe(x, limit: int = 6) -> str:
  """A short description of a value for messages: ``float32[3] [1.0, -2.0, 0.5]``."""
  if isinstance(x, dict):
    return "{" + ", ".join(f"{k!r}: {describe(v, limit)}" for k, v in x.items()) + "}"
  if isinstance(x, (list, tuple)) and not _is_array(x):
    inner = ", ".join(describe(v, limit) for v in x)
    return f"[{inner}]" if isinstance(x, list) else f"({inner})"
  if _is_key(x):
    return "a PRNG key"
  if not _is_array(x):
    return repr(x)[:80]
  a = np.asarray(x)
  head = f"{a.dtype}[{', '.join(map(str, a.shape))}]"
  if a.size == 0:
    return head + " (empty)"
  if a.size <= limit:
    return head + " " + np.array2string(a.ravel(), precision=4, separator=", ")
  if a.dtype.kind in "fiu":
    fin = a[np.isfinite(a)] if a.dtype.kind == "f" else a
    bad = a.size - fin.size
    extra = f" ({bad} NaN/Inf)" if bad else ""
    if fin.size == 0:
      return head + " all NaN/Inf"
    return head + f" in [{fin.min():.4g}, {fin.max():.4g}]" + extra
  return head


def _is_key(x) -> bool:
  try:
    import jax
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
  except Exception:  # noqa: BLE001
    return False


def _is_array(x) -> bool:
  return isinstance(x, (np.ndarray, np.generic)) or type(x).__module__.startswith(("jax", "jaxlib"))


def _dtype_name(a) -> str:
  return str(getattr(a, "dtype", type(a).__name__))


def _fmt(v) -> str:
  v = np.asarray(v)
  if v.dtype.kind == "f":
    return f"{float(v):.8g}"
  if v.dtype.kind == "c":
    return f"{complex(v):.6g}"
  return str(v.item()) if v.ndim == 0 else str(v)


def shape_dtype(got, shape, dtype, what: str):
  """``got`` is an array of exactly ``shape`` and ``dtype``."""
  if not _is_array(got):
    fail(f"{what}: expected an array of shape {tuple(shape)} and dtype {np.dtype(dtype)}, "
         f"got {type(got).__name__} {describe(got)}.")
  a = np.asarray(got)
  if a.shape != tuple(shape):
    fail(f"{what}: expected shape {tuple(shape)}, got shape {a.shape}.")
  if a.dtype != np.dtype(dtype):
    fail(f"{what}: expected dtype {np.dtype(dtype)}, got {a.dtype} (mind float64 from NumPy or Python floats).")


def finite(got, what: str):
  """Fails, naming the first bad index, if the array ``got`` (called ``what``) holds a NaN or an infinity."""
  a = np.asarray(got)
  if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
    idx = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
    fail(f"{what}: value at index {idx} is {a[idx]} (NaN/Inf never pass). Look for exp overflow or 0/0.")


def keys_are(tree, expected: set, what: str):
  """Fails unless ``tree`` (called ``what``) is a dict with exactly the keys ``expected``."""
  if not isinstance(tree, dict):
    fail(f"{what}: expected a dict with keys {sorted(expected)}, got {type(tree).__name__} {describe(tree)}.")
  if set(tree) != set(expected):
    fail(f"{what}: expected keys {sorted(expected)}, got {sorted(map(str, tree))}.")


def allclose(got, expected, what: str, rtol: float | None = None, atol: float | None = None,
             check_dtype: bool = True, equal_nan: bool = False):
  """``got`` equals ``expected`` (arrays or pytrees) within per-dtype tolerances.

  A NaN in ``got`` never passes: not where ``expected`` is finite, and not where ``expected`` is NaN
  either, because ``expected`` is often the student's own output (jit vs eager, same key twice) and two
  NaNs then prove nothing. Pass ``equal_nan=True`` only when ``expected`` comes from the reference and a
  NaN there is the intended answer (e.g. NaN inputs must propagate). An Inf in ``got`` passes only where
  ``expected`` has the same Inf.
  """
  _tree_allclose(got, expected, what, rtol, atol, check_dtype, equal_nan)


def _tree_allclose(got, expected, what, rtol, atol, check_dtype, equal_nan=False):
  if isinstance(expected, dict):
    keys_are(got, set(expected), what)
    for k in expected:
      _tree_allclose(got[k], expected[k], f"{what}[{k!r}]", rtol, atol, check_dtype, equal_nan)
    return
  if isinstance(expected, (list, tuple)) and not _is_array(expected):
    if not isinstance(got, (list, tuple)) or len(got) != len(expected):
      fail(f"{what}: expected a {type(expected).__name__} of {len(expected)} items, got {describe(got)}.")
    for i, (g, e) in enumerate(zip(got, expected)):
      _tree_allclose(g, e, f"{what}[{i}]", rtol, atol, check_dtype, equal_nan)
    return
  if _is_key(expected):
    import jax
    expected = np.asarray(jax.random.key_data(expected))
  e = np.asarray(expected)
  if got is None or isinstance(got, (str, bytes, dict, list, tuple)) or not (_is_array(got) or np.isscalar(got)):
    fail(f"{what}: expected an array {describe(e)}, got {type(got).__name__} {describe(got)[:60]}.")
  g = np.asarray(got)
  if g.shape != e.shape:
    fail(f"{what}: expected shape {e.shape}, got shape {g.shape} ({e.dtype} vs {g.dtype}). "
         "Check which axis you reduce over and keepdims.")
  if check_dtype and g.dtype != e.dtype:
    fail(f"{what}: expected dtype {e.dtype}, got {g.dtype} (shape {g.shape}). "
         "Keep the input's dtype: jax.numpy functions do; NumPy and Python floats often give float64.")
  if g.dtype.kind not in "biufc":
    fail(f"{what}: expected numbers ({e.dtype}), got dtype {g.dtype}.")
  name = e.dtype.name if e.dtype.name in TOLERANCES else "float32"
  r0, a0 = TOLERANCES.get(name, (0.0, 0.0)) if e.dtype.kind in "fc" else (0.0, 0.0)
  rtol = r0 if rtol is None else rtol
  atol = a0 if atol is None else atol
  gf, ef = g.astype(np.float64) if g.dtype.kind != "c" else g, e.astype(np.float64) if e.dtype.kind != "c" else e
  with np.errstate(all="ignore"):
    bad_finite = np.isfinite(ef) & ~np.isfinite(gf)
    close = np.isclose(gf, ef, rtol=rtol, atol=atol, equal_nan=equal_nan) & ~bad_finite
  if not np.all(close):
    idx = tuple(int(i) for i in np.argwhere(~close)[0])
    n_bad = int((~close).sum())
    gv, ev = g[idx] if g.ndim else g, e[idx] if e.ndim else e
    extra = (" (NaN/Inf never pass: look for exp overflow or 0/0)" if not np.isfinite(gv) and np.isfinite(ev) else
             " (NaN never passes, even where the expected value is NaN too: look for exp overflow or 0/0)"
             if np.isnan(gv) else "")
    where = f"at index {idx}" if idx else "for the scalar result"
    fail(f"{what}: {n_bad} of {e.size} values differ; first {where}: expected {_fmt(ev)}, got {_fmt(gv)}{extra} "
         f"(shape {e.shape}, dtype {e.dtype}, rtol {rtol:g}, atol {atol:g}).")


# ---------------------------------------------------------------- calling the student


def _call_text(name, args, kwargs) -> str:
  parts = [describe(a) for a in args] + [f"{k}={describe(v)}" for k, v in kwargs.items()]
  text = f"{name}({', '.join(parts)})"
  return text if len(text) < 300 else text[:297] + "..."


def _tup(x):
  return tuple(x) if isinstance(x, (list, tuple)) else (x,)


def _drain(wait):
  """Collect a pending answer (so the next request does not read it), ignoring its outcome."""
  try:
    wait()
  except SubmissionError:
    pass


def _ref_or_wait(wait, reference, args, kwargs):
  try:
    return _ref(reference, args, kwargs, _any_float64(args, kwargs))
  except BaseException:
    _drain(wait)
    raise


_MEMO: dict = {}
_MEMO_LOCK = threading.Lock()


def _stable(reference) -> bool:
  """A module-level function (not a lambda or closure): its results can be reused across submissions."""
  q = getattr(reference, "__qualname__", "")
  return (callable(reference) and getattr(reference, "__closure__", None) is None and "<" not in q and
          hasattr(reference, "__module__"))


def _arg_key(tree):
  import jax
  leaves, treedef = jax.tree_util.tree_flatten(tree)
  parts = [str(treedef)]
  for x in leaves:
    if _is_key(x):
      x = np.asarray(jax.random.key_data(x))
    if isinstance(x, (np.ndarray, np.generic)) or _is_array(x):
      a = np.asarray(x)
      parts.append((a.dtype.str, a.shape, hashlib.sha1(a.tobytes()).hexdigest()))
    else:
      parts.append(repr(x))
  return tuple(parts)


def _ref(reference, args, kwargs, x64=False):
  """The reference's output as NumPy: jit-compiled (one compile instead of one per primitive), and
  memoised across submissions for module-level references (grade-all computes each once)."""
  import jax
  key = None
  if _stable(reference):
    key = (reference.__module__, reference.__qualname__, id(reference), x64, _arg_key((args, kwargs)))
    with _MEMO_LOCK:
      if key in _MEMO:
        return _MEMO[key]
  static = tuple(i for i, a in enumerate(args) if not (_is_array(a) or _is_key(a) or isinstance(a, (dict, list,
                                                                                                      tuple))))
  with jax.enable_x64(x64):
    try:
      fn = jax.jit(functools.partial(reference, **kwargs), static_argnums=static)
      out = _to_numpy(fn(*args))
    except Exception:  # noqa: BLE001  (a reference that does not trace: run it eagerly)
      out = _to_numpy(reference(*args, **kwargs))
  if key is not None:
    with _MEMO_LOCK:
      if len(_MEMO) > 4096:
        _MEMO.clear()
      _MEMO[key] = out
  return out


def _to_numpy(tree):
  import jax
  def leaf(x):
    if _is_key(x):
      return np.asarray(jax.random.key_data(x))
    return np.asarray(x)
  return jax.tree_util.tree_map(leaf, tree)


def matches(sub, name: str, reference: Callable, *args, rtol=None, atol=None, check_dtype=True, equal_nan=False,
            **kwargs):
  """Call the student's ``name(*args, **kwargs)``, compare with ``reference``; return the student's output.

  With float64 inputs, the student's function runs with float64 enabled, as the reference does.
  """
  # compile: one XLA program instead of one per primitive (eagerly if it does not trace; see _ops._call)
  opts = {"x64": True, "compile": True} if _any_float64(args, kwargs) else {"compile": True}
  wait = sub.start("call", name, *args, _opts=opts, **kwargs)   # the worker runs while the reference is computed here
  expected = _ref_or_wait(wait, reference, args, kwargs)
  got = wait()
  allclose(got, expected, _call_text(name, args, kwargs), rtol, atol, check_dtype, equal_nan)
  return got


def jit_matches(sub, name: str, reference: Callable, *args, static_argnums=(), rtol=None, atol=None,
                equal_nan=False, **kwargs):
  """``jax.jit`` of the student's function traces and gives the reference's values."""
  wait = sub.start("jit", name, *args, _opts={"static_argnums": list(_tup(static_argnums))}, **kwargs)
  expected = _ref_or_wait(wait, reference, args, kwargs)
  got = wait()
  allclose(got, expected, "jax.jit(" + _call_text(name, args, kwargs) + ")", rtol, atol, equal_nan=equal_nan)
  return got


def vmap_matches(sub, name: str, reference: Callable, *args, in_axes=0, rtol=None, atol=None, **kwargs):
  """``jax.vmap(student, in_axes)`` equals the reference applied per example (``jax.vmap`` of it)."""
  import jax
  wait = sub.start("vmap", name, *args, _opts={"in_axes": in_axes}, **kwargs)
  try:
    with jax.enable_x64(_any_float64(args, kwargs)):
      expected = _to_numpy(jax.jit(jax.vmap(lambda *a: reference(*a, **kwargs), in_axes=in_axes))(*args))
  except BaseException:
    _drain(wait)
    raise
  got = wait()
  allclose(got, expected, f"jax.vmap({name}, in_axes={in_axes})" + _call_text("", args, kwargs), rtol, atol)
  return got


def grad_matches(sub, name: str, reference: Callable, *args, argnums=0, seed=0, rtol=None, atol=None, **kwargs):
  """The float64 vector-Jacobian product of the student's function equals the reference's.

  The cotangent is random (seeded), so every output element matters. Positional arguments that are
  Python ``bool``/``int``/``str``/``None`` (``train=True`` given positionally, a number of heads) are static:
  passed as they are, never converted to arrays, traced or differentiated; ``argnums`` may not name them.
  """
  import jax
  nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
  static = {i for i, a in enumerate(args) if _py_static(a)}
  if static & set(nums):
    raise ValueError(f"grad_matches({name!r}): argnums {sorted(static & set(nums))} names a Python "
                     f"{', '.join(type(args[i]).__name__ for i in sorted(static & set(nums)))}, which cannot be "
                     "differentiated; give an array there or change argnums.")
  args = tuple(a if i in static else _to64(a) for i, a in enumerate(args))
  dyn = [i for i in range(len(args)) if i not in static]

  def full_args(values):
    full = list(args)
    for i, v in zip(dyn, values):
      full[i] = v
    return full
  memo = None
  if _stable(reference):   # grade-all: the reference's vjp is computed once per input, not once per submission
    memo = (reference.__module__, reference.__qualname__, id(reference), "vjp", nums, seed, _arg_key((args, kwargs)))
    with _MEMO_LOCK:
      cached = _MEMO.get(memo)
    if cached is not None:
      cot, out, grads = cached
      got_out, got_grads = sub.start("vjp", name, *args, _opts={"argnums": argnums, "cotangent": cot}, **kwargs)()
      return _judge_grads(sub, name, args, kwargs, argnums, out, grads, got_out, got_grads, rtol, atol)
  with jax.enable_x64(True):
    shapes = jax.eval_shape(lambda *d: reference(*full_args(d), **kwargs), *[args[i] for i in dyn])
  rng = np.random.default_rng(seed)
  cot = jax.tree_util.tree_map(lambda o: rng.standard_normal(o.shape).astype(np.float64), shapes)
  wait = sub.start("vjp", name, *args, _opts={"argnums": argnums, "cotangent": cot}, **kwargs)
  try:
    with jax.enable_x64(True):
      def ref_vjp(dyn_values, cot):
        base = full_args(dyn_values)

        def ref_part(*p):
          full = list(base)
          for i, v in zip(nums, p):
            full[i] = v
          return reference(*full, **kwargs)
        out, vjp_fn = jax.vjp(ref_part, *[base[i] for i in nums])
        return out, tuple(vjp_fn(cot))
      out, grads = jax.jit(ref_vjp)([args[i] for i in dyn], cot)
      out, grads = _to_numpy(out), _to_numpy(grads)
  except BaseException:
    _drain(wait)
    raise
  if memo is not None:
    with _MEMO_LOCK:
      if len(_MEMO) > 4096:
        _MEMO.clear()
      _MEMO[memo] = (cot, out, grads)
  got_out, got_grads = wait()
  return _judge_grads(sub, name, args, kwargs, argnums, out, grads, got_out, got_grads, rtol, atol)


def _judge_grads(sub, name, args, kwargs, argnums, out, grads, got_out, got_grads, rtol, atol):
  expected = grads[0] if isinstance(argnums, int) else grads
  call = _call_text(name, args, kwargs)
  allclose(got_out, out, f"{call} in float64", rtol, atol)
  try:
    allclose(got_grads, expected, f"gradient of {call} (float64, random cotangent)", rtol or 1e-7, atol or 1e-9)
  except CheckFailed as e:
    hint = ""
    try:
      msg = sub.check_grads(name, args, argnums=argnums, **kwargs)
      hint = (" Your gradient is consistent with your function's values (jax.test_util.check_grads), so the "
              "function itself differs somewhere the test input did not show." if msg is None else
              f" Your gradient is also inconsistent with your own function's values: {msg[:200]} — look for "
              "stop_gradient, non-differentiable operations, or custom_vjp mistakes.")
    except SubmissionError:
      pass
    raise CheckFailed(str(e) + hint) from None


def prng_discipline(sub, name: str, *args, key_argnum: int = 0, **kwargs):
  """Same key -> identical output; a different key -> a different output."""
  import jax
  a = sub.call(name, *args, **kwargs)
  call = _call_text(name, args, kwargs)
  leaves_a = jax.tree_util.tree_leaves(a)
  if not leaves_a or not all(_is_array(x) for x in leaves_a):
    fail(f"{call}: expected an array (or a pytree of arrays), got {type(a).__name__} {describe(a)[:60]}; "
         "the same key must give the same array, so return the result.")
  b = sub.call(name, *args, **kwargs)
  leaves_b = jax.tree_util.tree_leaves(b)
  if len(leaves_a) != len(leaves_b) or not all(np.array_equal(x, y) for x, y in zip(leaves_a, leaves_b)):
    fail(f"{call}: two calls with the same key gave different results. Randomness must come only from "
         "the key argument (no np.random, no global state).")
  other = list(args)
  other[key_argnum] = jax.random.fold_in(args[key_argnum], 12345)
  c = sub.call(name, *other, **kwargs)
  leaves_c = jax.tree_util.tree_leaves(c)
  random_leaves = [(x, y) for x, y in zip(leaves_a, leaves_c) if np.asarray(x).size > 1]
  if random_leaves and all(np.array_equal(x, y) for x, y in random_leaves):
    fail(f"{call}: a different key gave exactly the same result. Use the key argument "
         "(jax.random.uniform(key, ...)), not a fixed jax.random.key(0).")


def compiles_once(sub, name: str, arg_lists: Sequence[tuple], static_argnums=()):
  """``jax.jit`` of the student's function traces once for same-shaped inputs."""
  _, n = sub.trace_count(name, arg_lists, static_argnums=static_argnums)
  if n != 1:
    fail(f"jax.jit({name}) was traced {n} times for {len(arg_lists)} calls with the same shapes; "
         "expected 1. Pass changing numbers as arrays, not Python values that become static.")


# ---------------------------------------------------------------- partial credit


@dataclasses.dataclass
class Credit:
  """A fraction of a test's points plus the feedback for the parts that failed."""
  fraction: float
  messages: list[str]


def each(*thunks: Callable[[], Any]) -> Credit:
  """Run each part; the test earns the fraction of parts that pass."""
  passed, messages = 0, []
  for t in thunks:
    try:
      t()
      passed += 1
    except (CheckFailed, SubmissionError) as e:
      messages.append(str(e))
  return Credit(passed / max(len(thunks), 1), messages)


# ---------------------------------------------------------------- helpers


def _any_float64(args, kwargs) -> bool:
  import jax
  leaves = jax.tree_util.tree_leaves((args, kwargs))
  return any(getattr(x, "dtype", None) == np.float64 for x in leaves if not _is_key(x))


def _py_static(x) -> bool:
  """A Python bool/int/str/None: a static argument (a flag, a count, a mode), not an array to differentiate."""
  return x is None or isinstance(x, (bool, int, str))


def _to64(tree):
  import jax
  def leaf(x):
    if _is_key(x):
      return x
    a = np.asarray(x)
    return a.astype(np.float64) if a.dtype.kind == "f" else a
  return jax.tree_util.tree_map(leaf, tree)
