"""The grader <-> worker wire format: a JSON envelope plus ``.npy`` blobs. No pickle.

A frame is ``u64 total | u32 json_len | json | blob0 | blob1 | ...``. The JSON
holds the structure (dicts with string keys, lists, tuples, scalars, strings,
None) with arrays replaced by ``{"$a": i}`` (blob i, ``numpy.lib.format``),
typed PRNG keys by ``{"$key": i}`` (their key data), non-finite floats by
``{"$float": "nan"}`` and anything else the worker cannot send by
``{"$bad": "<type name>"}``. Decoding checks sizes, depth, node counts and
dtypes before using anything (the grader treats the worker as hostile).
"""
from __future__ import annotations

import io
import json
import math
import os
import struct

import numpy as np

MAX_FRAME = 128 * 2**20        # bytes in one frame (a result larger than this is refused)
MAX_NODES = 200_000
MAX_DEPTH = 64
_NUMERIC_KINDS = "biufc"


class WireError(Exception):
  """A malformed or oversized frame."""


class Opaque:
  """Stands for a value the worker could not send (a function, a custom object...)."""

  def __init__(self, type_name: str):
    self.type_name = str(type_name)[:80]

  def __repr__(self):
    return f"<{self.type_name}>"


def _is_key(x) -> bool:
  mod = type(x).__module__
  if not mod.startswith(("jax", "jaxlib")):
    return False
  import jax
  try:
    return jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
  except Exception:  # noqa: BLE001
    return False


def encode(obj) -> bytes:
  blobs: list[bytes] = []

  def add_array(a: np.ndarray, tag: str, extra=None):
    buf = io.BytesIO()
    # np.ascontiguousarray turns a 0-d array into shape (1,): keep the shape (scalar losses!).
    np.lib.format.write_array(buf, np.ascontiguousarray(a).reshape(a.shape), allow_pickle=False)
    blobs.append(buf.getvalue())
    node = {tag: len(blobs) - 1}
    if extra:
      node.update(extra)
    return node

  def enc(x, depth=0):
    if depth > MAX_DEPTH:
      return {"$bad": "structure nested too deeply"}
    if x is None or isinstance(x, (bool, str)):
      return x
    if isinstance(x, int):
      return x
    if isinstance(x, float):
      return x if math.isfinite(x) else {"$float": repr(x)}
    if isinstance(x, dict):
      if not all(isinstance(k, str) for k in x):
        return {"$bad": "dict with non-string keys"}
      return {"$d": [[k, enc(v, depth + 1)] for k, v in x.items()]}
    if isinstance(x, list):
      return {"$l": [enc(v, depth + 1) for v in x]}
    if isinstance(x, tuple):
      return {"$t": [enc(v, depth + 1) for v in x]}
    if _is_key(x):
      import jax
      return add_array(np.asarray(jax.random.key_data(x)), "$key", {"impl": str(jax.random.key_impl(x))})
    if isinstance(x, (np.ndarray, np.generic)) or type(x).__module__.startswith(("jax", "jaxlib")):
      try:
        a = np.asarray(x)
      except Exception as e:  # noqa: BLE001
        return {"$bad": f"{type(x).__name__} ({type(e).__name__} converting it to an array)"}
      if a.dtype.kind not in _NUMERIC_KINDS:
        name = a.dtype.name
        if a.dtype.kind == "V" or name in ("bfloat16",) or name.startswith("float8"):
          return add_array(a.astype(np.float32), "$a", {"dtype": name})
        return {"$bad": f"array of dtype {name}"}
      return add_array(a, "$a")
    return {"$bad": type(x).__name__}

  tree = enc(obj)
  head = json.dumps({"tree": tree, "blobs": [len(b) for b in blobs]}, allow_nan=False).encode()
  body = struct.pack("<I", len(head)) + head + b"".join(blobs)
  return struct.pack("<Q", len(body)) + body


def decode_body(body: bytes):
  if len(body) < 4:
    raise WireError("a malformed answer (frame too short)")
  (hlen,) = struct.unpack("<I", body[:4])
  if hlen > len(body) - 4:
    raise WireError("a malformed answer (bad header length)")
  try:
    head = json.loads(body[4:4 + hlen].decode("utf-8"))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise WireError(f"a malformed answer (bad JSON header: {e})") from None
  if not isinstance(head, dict) or not isinstance(head.get("blobs"), list):
    raise WireError("a malformed answer (bad header)")
  lens = head["blobs"]
  if not all(isinstance(n, int) and n >= 0 for n in lens) or 4 + hlen + sum(lens) != len(body):
    raise WireError("a malformed answer (blob lengths do not add up)")
  offsets, pos = [], 4 + hlen
  for n in lens:
    offsets.append((pos, pos + n))
    pos += n
  count = [0]

  def array(i, want_key=False, dtype=None):
    if not isinstance(i, int) or not 0 <= i < len(offsets):
      raise WireError("a malformed answer (bad blob index)")
    a, b = offsets[i]
    try:
      arr = np.lib.format.read_array(io.BytesIO(body[a:b]), allow_pickle=False)
    except Exception as e:  # noqa: BLE001
      raise WireError(f"a malformed answer (bad array: {type(e).__name__})") from None
    if arr.dtype.kind not in _NUMERIC_KINDS:
      raise WireError(f"an array of dtype {arr.dtype}, which is not numeric")
    if want_key:
      import jax
      return jax.random.wrap_key_data(arr.astype(np.uint32))
    if dtype:
      try:
        import ml_dtypes  # noqa: F401  (registers bfloat16 & co with NumPy)
        arr = arr.astype(np.dtype(dtype))
      except Exception:  # noqa: BLE001
        pass
    return arr

  def dec(x, depth=0):
    count[0] += 1
    if count[0] > MAX_NODES or depth > MAX_DEPTH:
      raise WireError("a malformed answer (structure too large or too deep)")
    if x is None or isinstance(x, (bool, int, float, str)):
      return x
    if isinstance(x, dict) and len(x) >= 1:
      if "$a" in x:
        return array(x["$a"], dtype=x.get("dtype") if isinstance(x.get("dtype"), str) else None)
      if "$key" in x:
        return array(x["$key"], want_key=True)
      if "$d" in x and isinstance(x["$d"], list):
        out = {}
        for item in x["$d"]:
          if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
            raise WireError("a malformed answer (bad dict item)")
          out[item[0]] = dec(item[1], depth + 1)
        return out
      if "$l" in x and isinstance(x["$l"], list):
        return [dec(v, depth + 1) for v in x["$l"]]
      if "$t" in x and isinstance(x["$t"], list):
        return tuple(dec(v, depth + 1) for v in x["$t"])
      if "$float" in x and x["$float"] in ("nan", "inf", "-inf"):
        return float(x["$float"])
      if "$bad" in x:
        return Opaque(x["$bad"])
    raise WireError("a malformed answer (unknown node in structure)")

  return dec(head.get("tree"))


def write_frame(fd: int, obj) -> None:
  data = encode(obj)
  view = memoryview(data)
  while view:
    n = os.write(fd, view)
    view = view[n:]


def read_exact(fd: int, n: int) -> bytes:
  chunks, got = [], 0
  while got < n:
    chunk = os.read(fd, min(n - got, 1 << 20))
    if not chunk:
      raise EOFError("pipe closed")
    chunks.append(chunk)
    got += len(chunk)
  return b"".join(chunks)


def read_frame(fd: int):
  (n,) = struct.unpack("<Q", read_exact(fd, 8))
  if n > MAX_FRAME:
    raise WireError(f"a result of {n / 2**20:.0f} MB, over the {MAX_FRAME / 2**20:.0f} MB limit")
  return decode_body(read_exact(fd, n))
