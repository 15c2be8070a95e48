"""Checks with feedback a student can act on.

Every check runs in the trusted grader process on NumPy values (the student's
outputs come back from the worker as arrays) and raises :class:`CheckFailed`
with a message that names the call, the input, what was expected and what came
back. The ``sub`` object (see AUTHORING.md) runs the student's code.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import re
import sys
import threading
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeGuard

import numpy as np

from autograder._errors import CheckFailed, SubmissionError
from autograder.grader import _refcache

if TYPE_CHECKING:
  import jax

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
  """A typed ``jax.random.key(seed)`` (travels to the worker as key data).

  For the default threefry implementation and a seed in [0, 2**32) the key's data is ``[0, seed]``: it is
  wrapped directly, which spares the grader compiling the seeding program (a quarter second per check).
  """
  import jax

  if (
    isinstance(seed, (int, np.integer))
    and not isinstance(seed, bool)
    and 0 <= int(seed) < 2**32
    and getattr(jax.config, "jax_default_prng_impl", None) == "threefry2x32"
  ):
    data = np.array([0, int(seed)], np.uint32)
    return jax.random.wrap_key_data(data, impl="threefry2x32")  # pyright: ignore[reportArgumentType]
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
  """A short description of a value for messages: ``float32[3] [1.0, -2.0, 0.5]``.

  A nested pytree (a parameter tree) is summarised by path, shape and dtype, at most 8 leaves:
  ``{gru/kernel float32[8, 96], gru/bias float32[96], ... and 3 more leaves}``.
  """
  if isinstance(x, (dict, list, tuple)) and not _is_array(x) and _nested(x):
    return _tree_summary(x)
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


def _nested(x) -> bool:
  """A container holding containers (a parameter tree), not a flat tuple of arrays."""
  items = x.values() if isinstance(x, dict) else x
  return any(isinstance(v, (dict, list, tuple)) and not _is_array(v) for v in items)


def _leaves_with_paths(x, path=""):
  if isinstance(x, dict):
    for k, v in x.items():
      yield from _leaves_with_paths(v, f"{path}/{k}" if path else str(k))
  elif isinstance(x, (list, tuple)) and not _is_array(x):
    for i, v in enumerate(x):
      yield from _leaves_with_paths(v, f"{path}/{i}" if path else str(i))
  else:
    yield path, x


def _tree_summary(x, most: int = 8) -> str:
  parts = []
  for path, leaf in _leaves_with_paths(x):
    if _is_array(leaf):
      a = np.asarray(leaf)
      parts.append(f"{path} {a.dtype}[{', '.join(map(str, a.shape))}]")
    else:
      parts.append(f"{path} {describe(leaf)}")
  more = f", ... and {len(parts) - most} more leaves" if len(parts) > most else ""
  open_, close = ("{", "}") if isinstance(x, dict) else ("[", "]") if isinstance(x, list) else ("(", ")")
  return open_ + ", ".join(parts[:most]) + more + close


def _is_key(x) -> TypeGuard[jax.Array]:
  try:
    import jax
    import jax.numpy as jnp

    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)
  except Exception:  # noqa: BLE001
    return False


def _is_array(x) -> bool:
  return isinstance(x, (np.ndarray, np.generic)) or type(x).__module__.startswith(("jax", "jaxlib"))


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
    fail(
      f"{what}: expected an array of shape {tuple(shape)} and dtype {np.dtype(dtype)}, "
      f"got {type(got).__name__} {describe(got)}."
    )
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


def allclose(
  got,
  expected,
  what: str,
  rtol: float | None = None,
  atol: float | None = None,
  check_dtype: bool = True,
  equal_nan: bool = False,
  *,
  outputs=None,
  inputs=None,
):
  """``got`` equals ``expected`` (arrays or pytrees) within per-dtype tolerances.

  A NaN in ``got`` never passes: not where ``expected`` is finite, and not where ``expected`` is NaN
  either, because ``expected`` is often the student's own output (jit vs eager, same key twice) and two
  NaNs then prove nothing. Pass ``equal_nan=True`` only when ``expected`` comes from the reference and a
  NaN there is the intended answer (e.g. NaN inputs must propagate). An Inf in ``got`` passes only where
  ``expected`` has the same Inf.

  On a mismatch the message names the pattern when it sees one (a constant factor such as the batch size,
  a flipped sign, a transpose, an axis off by one, missing or reduced over the wrong way). ``outputs`` names
  the parts of a multi-output result (``(("h", "c"), "h")``, default: the ``OUTPUTS`` of the calling
  tests.py); ``inputs`` (``(args, kwargs)``) lets it name the input axis a wrong size or factor comes from.
  """
  names = outputs if outputs is not None else _outputs_from_tests(what)
  _tree_allclose(
    got, expected, what, rtol, atol, check_dtype, equal_nan, {"names": names, "inputs": inputs or ((), {})}
  )


def _tree_allclose(got, expected, what, rtol, atol, check_dtype, equal_nan=False, ctx=None):
  """``ctx`` (from the checks that call the student): ``names``, the outputs' names in the structure of the
  result (``(("h", "c"), "h")``), and ``inputs``, the call's arguments, to explain shapes and constant factors."""
  ctx = ctx or {}
  names = ctx.get("names")
  if isinstance(expected, dict):
    keys_are(got, set(expected), what)
    for k in expected:
      sub = dict(ctx, names=names.get(k) if isinstance(names, dict) else None)
      _tree_allclose(got[k], expected[k], f"{what}[{k!r}]", rtol, atol, check_dtype, equal_nan, sub)
    return
  if isinstance(expected, (list, tuple)) and not _is_array(expected):
    if not isinstance(got, (list, tuple)) or len(got) != len(expected):
      shape = f" {_names_text(names)}" if names is not None else ""
      fail(f"{what}: expected a {type(expected).__name__} of {len(expected)} items{shape}, got {describe(got)}.")
    for i, (g, e) in enumerate(zip(got, expected)):
      n = names[i] if isinstance(names, (list, tuple)) and len(names) == len(expected) else None
      label = f"{what}[{i}]" + (f" (`{n}`)" if isinstance(n, str) else "")
      _tree_allclose(g, e, label, rtol, atol, check_dtype, equal_nan, dict(ctx, names=n))
    return
  if _is_key(expected):
    import jax

    expected = np.asarray(jax.random.key_data(expected))
  e = np.asarray(expected)
  if got is None or isinstance(got, (str, bytes, dict, list, tuple)) or not (_is_array(got) or np.isscalar(got)):
    fail(f"{what}: expected an array {describe(e)}, got {type(got).__name__} {describe(got)[:60]}.")
  g = np.asarray(got)
  if g.shape != e.shape:
    fail(f"{what}: expected shape {e.shape}, got shape {g.shape} ({e.dtype} vs {g.dtype}).{_shape_hint(g, e, ctx)}")
  if check_dtype and g.dtype != e.dtype:
    fail(
      f"{what}: expected dtype {e.dtype}, got {g.dtype} (shape {g.shape}). "
      "Keep the input's dtype: jax.numpy functions do; NumPy and Python floats often give float64."
    )
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
    extra = (
      " (NaN/Inf never pass: look for exp overflow or 0/0)"
      if not np.isfinite(gv) and np.isfinite(ev)
      else " (NaN never passes, even where the expected value is NaN too: look for exp overflow or 0/0)"
      if np.isnan(gv)
      else ""
    )
    where = f"at index {idx}" if idx else "for the scalar result"
    hint = "" if extra else _value_hint(gf, ef, rtol, atol, ctx)
    fail(
      f"{what}: {n_bad} of {e.size} values differ; first {where}: expected {_fmt(ev)}, got {_fmt(gv)}{extra} "
      f"(shape {e.shape}, dtype {e.dtype}, rtol {rtol:g}, atol {atol:g}).{hint}"
    )


# ---------------------------------------------------------------- patterns in wrong results

_CALLED = re.compile(r"^(?:jax\.jit\()?([A-Za-z_]\w*)\(|^jax\.vmap\(([A-Za-z_]\w*),")


def _outputs_from_tests(what: str):
  """The output names of the function ``what`` calls, from ``OUTPUTS`` in the tests.py that called the check.

  ``OUTPUTS = {"lstm_step": "((h, c), h)"}`` in tests.py turns ``lstm_step(...)[0][0]`` into
  ``lstm_step(...)[0][0] (`h`)`` in messages. Gradients are shaped like the inputs, so they get no names.
  """
  m = _CALLED.match(what)
  if m is None:
    return None
  fn = m.group(1) or m.group(2)
  f = sys._getframe(1)  # noqa: SLF001  (the caller's frame: the documented CPython way)
  for _ in range(40):
    if f is None:
      return None
    outs = f.f_globals.get("OUTPUTS")
    if isinstance(outs, dict) and "FUNCTIONS" in f.f_globals:
      spec = outs.get(fn)
      return _parse_names(spec) if isinstance(spec, str) else None
    f = f.f_back
  return None


def _parse_names(spec: str):
  """``"((h, c), h)"`` -> ``(("h", "c"), "h")``; ``"({'w': dw, 'b': db}, dx)"`` keeps the dict."""

  def conv(node):
    if isinstance(node, (ast.Tuple, ast.List)):
      return tuple(conv(e) for e in node.elts)
    if isinstance(node, ast.Dict):
      return {conv(k): conv(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.Name):
      return node.id
    if isinstance(node, ast.Constant):
      return str(node.value)
    return ast.unparse(node)

  try:
    return conv(ast.parse(spec, mode="eval").body)
  except SyntaxError:
    return None


def _names_text(names) -> str:
  if isinstance(names, (list, tuple)):
    return "(" + ", ".join(_names_text(n) for n in names) + ")"
  return str(names)


def _input_arrays(ctx):
  """[(label, shape)] of the array arguments of the call, for explaining shapes and factors."""
  out = []
  args, kwargs = ctx.get("inputs", ((), {}))
  for i, a in enumerate(args):
    for path, leaf in _leaves_with_paths(a):
      if _is_array(leaf) and not _is_key(leaf):
        out.append((f"argument {i + 1}" + (f" [{path}]" if path else ""), np.shape(leaf)))
  for k, v in kwargs.items():
    for path, leaf in _leaves_with_paths(v):
      if _is_array(leaf) and not _is_key(leaf):
        out.append((f"{k}" + (f"[{path}]" if path else ""), np.shape(leaf)))
  return out


def _drop(shape, axis):
  return shape[:axis] + shape[axis + 1 :]


def _shape_hint(g, e, ctx) -> str:
  """Name the pattern behind a wrong shape: transposed, off by one, a missing or extra axis, the wrong axis reduced."""
  gs, es = g.shape, e.shape
  if len(gs) >= 2 and gs == es[::-1]:
    return (
      f" Your result is transposed ({gs} is {es} reversed): check the order of the operands of the matrix "
      f"product and any .T, so the result comes out {es}."
    )
  for label, shape in _input_arrays(ctx):  # reduced over the wrong axis of an input
    if len(shape) < 2:
      continue
    for keep in (False, True):

      def reduced(axis):
        return shape[:axis] + ((1,) if keep else ()) + shape[axis + 1 :]

      exp_axes = [i for i in range(len(shape)) if reduced(i) == es]
      got_axes = [j for j in range(len(shape)) if reduced(j) == gs]
      if exp_axes and got_axes and not set(exp_axes) & set(got_axes):
        return (
          f" Your result has the shape of {label} {shape} reduced over axis {got_axes[0]}; the expected one "
          f"reduces over axis {exp_axes[0]}: change the axis you reduce over."
        )
  if len(gs) == len(es):
    diff = [i for i in range(len(es)) if gs[i] != es[i]]
    if len(diff) == 1 and abs(gs[diff[0]] - es[diff[0]]) == 1:
      k = diff[0]
      return (
        f" Off by one along axis {k} ({es[k]} expected, {gs[k]} got): check a range, a slice bound, the "
        "padding or the output-size formula."
      )
    return " Check the shapes of your intermediate results."
  if len(gs) == len(es) - 1:
    for k in range(len(es)):
      if _drop(es, k) == gs:
        return (
          f" Axis {k} (size {es[k]}) is missing: keep it with keepdims=True."
          if es[k] == 1
          else f" Axis {k} (size {es[k]}) is missing: you reduced over an axis that should stay."
        )
  if len(gs) == len(es) + 1:
    for k in range(len(gs)):
      if _drop(gs, k) == es:
        return (
          f" Axis {k} (size 1) is extra: reduce without keepdims, or drop it."
          if gs[k] == 1
          else f" Axis {k} (size {gs[k]}) is extra: the expected result reduces over it (a sum, mean or max)."
        )
  return " Check which axis you reduce over and keepdims."


def _size_names(ctx) -> dict:
  """{size: "axis 0 of argument 2 (4, 3)"} for the sizes of the inputs' axes and element counts."""
  out = {}
  for label, shape in _input_arrays(ctx):
    for ax, n in enumerate(shape):
      if n > 1:
        out.setdefault(
          n,
          f"the size of axis {ax} of {label} {tuple(shape)}"
          + (", the batch size" if ax == 0 and len(shape) > 1 else ""),
        )
    total = int(np.prod(shape)) if len(shape) else 1
    if total > 1:
      out.setdefault(total, f"the number of elements of {label} {tuple(shape)}")
  return out


def _value_hint(gf, ef, rtol, atol, ctx) -> str:
  """Name the pattern behind wrong values of the right shape: a constant factor, a sign, a transpose."""
  if gf.dtype.kind == "c" or ef.dtype.kind == "c":
    return ""
  with np.errstate(all="ignore"):
    if ef.ndim == 2 and ef.shape[0] == ef.shape[1] > 1 and np.allclose(gf, ef.T, rtol=rtol, atol=atol):
      return (
        " Your values are the transpose of the expected ones: check the order of the operands of the "
        "matrix product and any .T."
      )
    mask = np.isfinite(gf) & np.isfinite(ef) & (np.abs(ef) > max(10 * atol, 1e-300))
    if not mask.any() or not np.isfinite(gf).all():
      return ""
    r = gf[mask] / ef[mask]
    c = float(np.median(r))
    if c == 0 or abs(c - 1) < 1e-3 or not np.allclose(r, c, rtol=1e-3, atol=0):
      return ""
    if not np.allclose(gf[~mask], 0, atol=10 * atol + 1e-12):  # the factor must explain the near-zero values too
      return ""
  if abs(c + 1) < 1e-3:
    return (
      " Every value has the wrong sign (got / expected = -1 everywhere): check a minus sign or a subtraction's order."
    )
  k, inverse = (abs(c), False) if abs(c) >= 1 else (1 / abs(c), True)
  n = round(k)
  sign = "-" if c < 0 else ""
  if n > 1 and abs(k - n) < 1e-3 * k:
    what = f"{sign}1/{n} of" if inverse else f"{sign}{n} times"
    dim = _size_names(ctx).get(n)
    dim = f"; {n} is {dim}" if dim else ""
    return (
      f" Every value is {what} the expected one (got / expected = {c:.6g} everywhere{dim}): a constant factor "
      "is wrong, e.g. a mean where a sum belongs (or the reverse), or a missing or extra scale."
    )
  if r.size < 2:
    return ""
  return (
    f" Every value is {c:.6g} times the expected one: a constant factor is wrong (a scale, a mean vs a sum, "
    "a learning rate)."
  )


# ---------------------------------------------------------------- calling the student


def _call_text(name, args, kwargs, limit: int = 300) -> str:
  """``name(float32[4, 3] in [...], lr=0.1)``; a long call keeps whole arguments and says how many it left out."""
  parts = [describe(a) for a in args] + [f"{k}={describe(v)}" for k, v in kwargs.items()]
  kept, size = [], len(name) + 2
  for i, part in enumerate(parts):
    if size + len(part) + 2 > limit and kept:
      kept.append(f"... {len(parts) - i} more argument{'s' if len(parts) - i > 1 else ''}")
      break
    kept.append(part)
    size += len(part) + 2
  return f"{name}({', '.join(kept)})"


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
  return (
    callable(reference)
    and getattr(reference, "__closure__", None) is None
    and "<" not in q
    and hasattr(reference, "__module__")
  )


def _arg_key(tree):
  import jax

  leaves, treedef = jax.tree_util.tree_flatten(tree)
  parts: list[Any] = [str(treedef)]
  for x in leaves:
    if _is_key(x):
      x = np.asarray(jax.random.key_data(x))
    if isinstance(x, (np.ndarray, np.generic)) or _is_array(x):
      a = np.asarray(x)
      parts.append((a.dtype.str, a.shape, hashlib.sha1(a.tobytes(), usedforsecurity=False).hexdigest()))
    else:
      parts.append(repr(x))
  return tuple(parts)


def _ref(reference, args, kwargs, x64=False):
  """The reference's output as NumPy: jit-compiled (one compile instead of one per primitive), memoised
  across submissions for module-level references (grade-all computes each once), and kept on disk across
  runs while grading (``_refcache``)."""
  import jax

  key = None
  if _stable(reference):
    key = (reference.__module__, reference.__qualname__, id(reference), x64, _arg_key((args, kwargs)))
    with _MEMO_LOCK:
      if key in _MEMO:
        return _MEMO[key]
  static = tuple(
    i for i, a in enumerate(args) if not (_is_array(a) or _is_key(a) or isinstance(a, (dict, list, tuple)))
  )

  def compute():
    with jax.enable_x64(x64):
      try:
        fn = jax.jit(functools.partial(reference, **kwargs), static_argnums=static)
        return _to_numpy(fn(*args))
      except Exception:  # noqa: BLE001  (a reference that does not trace: run it eagerly)
        return _to_numpy(reference(*args, **kwargs))

  if key is not None:  # on disk too, across runs (a student's next check; see _refcache)
    out = _refcache.cached(reference, f"call x64={x64}", key[-1], compute)
  else:
    out = compute()
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


def matches(
  sub, name: str, reference: Callable, *args, rtol=None, atol=None, check_dtype=True, equal_nan=False, **kwargs
):
  """Call the student's ``name(*args, **kwargs)``, compare with ``reference``; return the student's output.

  With float64 inputs, the student's function runs with float64 enabled, as the reference does.
  """
  # compile: one XLA program instead of one per primitive (eagerly if it does not trace; see _ops._call)
  opts = {"x64": True, "compile": True} if _any_float64(args, kwargs) else {"compile": True}
  wait = sub.start("call", name, *args, _opts=opts, **kwargs)  # the worker runs while the reference is computed here
  expected = _ref_or_wait(wait, reference, args, kwargs)
  got = wait()
  allclose(got, expected, _call_text(name, args, kwargs), rtol, atol, check_dtype, equal_nan, inputs=(args, kwargs))
  return got


def jit_matches(
  sub, name: str, reference: Callable, *args, static_argnums=(), rtol=None, atol=None, equal_nan=False, **kwargs
):
  """``jax.jit`` of the student's function traces and gives the reference's values."""
  wait = sub.start("jit", name, *args, _opts={"static_argnums": list(_tup(static_argnums))}, **kwargs)
  expected = _ref_or_wait(wait, reference, args, kwargs)
  got = wait()
  allclose(
    got,
    expected,
    "jax.jit(" + _call_text(name, args, kwargs) + ")",
    rtol,
    atol,
    equal_nan=equal_nan,
    inputs=(args, kwargs),
  )
  return got


def vmap_matches(sub, name: str, reference: Callable, *args, in_axes=0, rtol=None, atol=None, **kwargs):
  """``jax.vmap(student, in_axes)`` equals the reference applied per example (``jax.vmap`` of it)."""
  import jax

  wait = sub.start("vmap", name, *args, _opts={"in_axes": in_axes}, **kwargs)

  def compute():
    with jax.enable_x64(_any_float64(args, kwargs)):
      return _to_numpy(jax.jit(jax.vmap(lambda *a: reference(*a, **kwargs), in_axes=in_axes))(*args))

  try:
    if _stable(reference):
      expected = _refcache.cached(reference, f"vmap in_axes={in_axes!r}", _arg_key((args, kwargs)), compute)
    else:
      expected = compute()
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
    raise ValueError(
      f"grad_matches({name!r}): argnums {sorted(static & set(nums))} names a Python "
      f"{', '.join(type(args[i]).__name__ for i in sorted(static & set(nums)))}, which cannot be "
      "differentiated; give an array there or change argnums."
    )
  args = tuple(a if i in static else _to64(a) for i, a in enumerate(args))
  dyn = [i for i in range(len(args)) if i not in static]

  def full_args(values):
    full = list(args)
    for i, v in zip(dyn, values):
      full[i] = v
    return full

  memo = None
  if _stable(reference):  # grade-all: the reference's vjp is computed once per input, not once per submission
    memo = (reference.__module__, reference.__qualname__, id(reference), "vjp", nums, seed, _arg_key((args, kwargs)))
    with _MEMO_LOCK:
      cached = _MEMO.get(memo)
    if cached is None:  # computed by an earlier run (on disk; see _refcache)
      cached = _refcache.lookup(reference, f"vjp argnums={nums} seed={seed}", memo[-1])
      if not (isinstance(cached, tuple) and len(cached) == 3):
        cached = None
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
    _refcache.store(reference, f"vjp argnums={nums} seed={seed}", memo[-1], (cot, out, grads))
  got_out, got_grads = wait()
  return _judge_grads(sub, name, args, kwargs, argnums, out, grads, got_out, got_grads, rtol, atol)


def _judge_grads(sub, name, args, kwargs, argnums, out, grads, got_out, got_grads, rtol, atol):
  expected = grads[0] if isinstance(argnums, int) else grads
  call = _call_text(name, args, kwargs)
  allclose(got_out, out, f"{call} in float64", rtol, atol, inputs=(args, kwargs))
  try:
    allclose(
      got_grads,
      expected,
      f"gradient of {call} (float64, random cotangent)",
      rtol or 1e-7,
      atol or 1e-9,
      inputs=(args, kwargs),
    )
  except CheckFailed as e:
    hint = ""
    try:
      msg = sub.check_grads(name, args, argnums=argnums, **kwargs)
      hint = (
        " Your gradient is consistent with your function's values (jax.test_util.check_grads), so the "
        "function itself differs somewhere the test input did not show."
        if msg is None
        else f" Your gradient is also inconsistent with your own function's values: {msg[:200]} — look for "
        "stop_gradient, non-differentiable operations, or custom_vjp mistakes."
      )
    except SubmissionError:
      pass
    raise CheckFailed(str(e) + hint) from None


def _other_key(k):
  """A key other than ``k``, made from its data in NumPy (``jax.random.fold_in`` would cost the grader a
  compilation per check)."""
  import jax
  import jax.numpy as jnp

  flip = np.array([0x9E3779B9, 0x7F4A7C15], np.uint32)
  if isinstance(k, jax.Array) and jnp.issubdtype(k.dtype, jax.dtypes.prng_key):
    data = np.asarray(jax.random.key_data(k))
    if data.shape[-1:] == (2,) and data.dtype == np.uint32:
      return jax.random.wrap_key_data(data ^ flip, impl=jax.random.key_impl(k))  # pyright: ignore[reportArgumentType]
  elif isinstance(k, (np.ndarray, jax.Array)) and k.shape[-1:] == (2,) and k.dtype == np.uint32:  # a raw key
    return np.asarray(k) ^ flip
  return jax.random.fold_in(k, 12345)


def prng_discipline(sub, name: str, *args, key_argnum: int = 0, **kwargs):
  """Same key -> identical output; a different key -> a different output."""
  import jax

  a = sub.call(name, *args, **kwargs)
  call = _call_text(name, args, kwargs)
  leaves_a = jax.tree_util.tree_leaves(a)
  if not leaves_a or not all(_is_array(x) for x in leaves_a):
    fail(
      f"{call}: expected an array (or a pytree of arrays), got {type(a).__name__} {describe(a)[:60]}; "
      "the same key must give the same array, so return the result."
    )
  b = sub.call(name, *args, **kwargs)
  leaves_b = jax.tree_util.tree_leaves(b)
  if len(leaves_a) != len(leaves_b) or not all(np.array_equal(x, y) for x, y in zip(leaves_a, leaves_b)):
    fail(
      f"{call}: two calls with the same key gave different results. Randomness must come only from "
      "the key argument (no np.random, no global state)."
    )
  other = list(args)
  other[key_argnum] = _other_key(args[key_argnum])
  c = sub.call(name, *other, **kwargs)
  leaves_c = jax.tree_util.tree_leaves(c)
  random_leaves = [(x, y) for x, y in zip(leaves_a, leaves_c) if np.asarray(x).size > 1]
  if random_leaves and all(np.array_equal(x, y) for x, y in random_leaves):
    fail(
      f"{call}: a different key gave exactly the same result. Use the key argument "
      "(jax.random.uniform(key, ...)), not a fixed jax.random.key(0)."
    )


def compiles_once(sub, name: str, arg_lists: Sequence[tuple], static_argnums=()):
  """``jax.jit`` of the student's function traces once for same-shaped inputs."""
  _, n = sub.trace_count(name, arg_lists, static_argnums=static_argnums)
  if n != 1:
    fail(
      f"jax.jit({name}) was traced {n} times for {len(arg_lists)} calls with the same shapes; "
      "expected 1. Pass changing numbers as arrays, not Python values that become static."
    )


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
