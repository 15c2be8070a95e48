"""The grader <-> worker wire format: a JSON envelope plus ``.npy`` blobs. No pickle.

A frame is ``u64 total | u32 json_len | json | blob0 | blob1 | ...``. The JSON
holds the structure (dicts with string keys, lists, tuples, scalars, strings,
None) with arrays replaced by ``{"$a": i}`` (blob i, ``numpy.lib.format``),
typed PRNG keys by ``{"$key": i}`` (their key data), non-finite floats by
``{"$float": "nan"}`` and anything else the worker cannot send by
``{"$bad": "<type name>"}``. Decoding checks sizes, depth, node counts and
dtypes before using anything (the grader treats the worker as hostile): the JSON
header is at most ``MAX_HEADER`` bytes; each blob is used at most once and must
hold exactly the bytes its ``.npy`` header announces, in one of the plain numeric
dtypes (``_dtypes()``); the only casts are float32 blobs to the narrow float types
the worker legitimately sends that way (bfloat16, float8...). Decoding therefore
allocates at most a small multiple of the frame's own size, however the frame
was forged (student code can write onto the answer pipe).
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import struct
import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: a grader that only starts a worker does not wait for NumPy
  import numpy as np

MAX_FRAME = 128 * 2**20  # bytes in one frame (a result larger than this is refused)
MAX_NODES = 200_000
MAX_DEPTH = 64
MAX_HEADER = 16 * 2**20  # bytes of JSON structure in one frame
_NUMERIC_KINDS = "biufc"


@functools.lru_cache(maxsize=1)
def _dtypes() -> frozenset:
  import numpy as np

  return frozenset(
    np.dtype(t).str
    for t in (
      "bool",
      "int8",
      "int16",
      "int32",
      "int64",
      "uint8",
      "uint16",
      "uint32",
      "uint64",
      "float16",
      "float32",
      "float64",
      "complex64",
      "complex128",
    )
  )


_CASTS = re.compile(r"bfloat16|float8_e[0-9a-z]+|float4_e[0-9a-z]+|int4|uint4|int2|uint2")


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
  import jax.numpy as jnp

  try:
    return jnp.issubdtype(x.dtype, jax.dtypes.prng_key)
  except Exception:  # noqa: BLE001
    return False


def encode(obj) -> bytes:
  """One frame: a JSON header and the raw bytes of every array in ``obj`` (no pickle, so nothing runs on decode)."""
  import numpy as np

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


def _read_npy(view: memoryview) -> np.ndarray:
  """One ``.npy`` blob -> array, checked before anything is allocated (no ``read_array``: it would allocate
  whatever shape the header claims before noticing that the data is short)."""
  import numpy as np

  f = io.BytesIO(view[:4096].tobytes())
  version = np.lib.format.read_magic(f)
  if version == (1, 0):
    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=4096)
  elif version in ((2, 0), (3, 0)):
    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=4096)
  else:
    raise ValueError("unknown .npy version")
  if dtype.str not in _dtypes():
    raise WireError(f"an array of dtype {dtype}, which the worker never sends")
  n = 1
  for d in shape:
    if not isinstance(d, int) or d < 0:
      raise ValueError("bad shape")
    n *= d
  data = view[f.tell() :]
  if n * dtype.itemsize != len(data):
    raise ValueError("data size does not match the header")
  arr = np.frombuffer(data, dtype=dtype).copy()  # a copy: the frame's buffer is not kept alive
  return arr.reshape(shape, order="F" if fortran else "C")


def decode_body(body: bytes) -> Any:
  """The object of a frame body (without its length prefix); anything malformed raises :class:`WireError`."""
  import numpy as np

  if len(body) < 4:
    raise WireError("a malformed answer (frame too short)")
  (hlen,) = struct.unpack("<I", body[:4])
  if hlen > len(body) - 4 or hlen > MAX_HEADER:
    raise WireError("a malformed answer (bad header length)")
  try:
    head = json.loads(body[4 : 4 + hlen].decode("utf-8"))
  except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
    raise WireError(f"a malformed answer (bad JSON header: {type(e).__name__})") from None
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
  used: set[int] = set()
  view = memoryview(body)

  def array(i, want_key=False, dtype=None):
    if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(offsets):
      raise WireError("a malformed answer (bad blob index)")
    if i in used:  # one blob, many references: a few bytes would decode to any size
      raise WireError("a malformed answer (an array referenced twice)")
    used.add(i)
    a, b = offsets[i]
    try:
      arr = _read_npy(view[a:b])
    except WireError:
      raise
    except Exception as e:  # noqa: BLE001
      raise WireError(f"a malformed answer (bad array: {type(e).__name__})") from None
    if want_key:
      import jax

      if arr.dtype.kind not in "iu":
        raise WireError("a malformed answer (a key that is not integers)")
      # The stub asks for a jax.Array; wrap_key_data converts a NumPy array itself (no copy to make here).
      return jax.random.wrap_key_data(arr.astype(np.uint32))  # pyright: ignore[reportArgumentType]
    if dtype:
      if not _CASTS.fullmatch(dtype) or arr.dtype != np.float32:
        raise WireError(f"a malformed answer (a cast to {dtype[:40]!r})")
      try:
        import ml_dtypes  # noqa: F401  (registers bfloat16 & co with NumPy)

        arr = arr.astype(np.dtype(dtype))
      except Exception:  # noqa: BLE001, S110  (an unknown dtype stays as sent; the checks report it)
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
  """Write ``obj`` as one frame to file descriptor ``fd`` (all of it, across partial writes)."""
  data = encode(obj)
  view = memoryview(data)
  while view:
    n = os.write(fd, view)
    view = view[n:]


def read_exact(fd: int, n: int) -> bytes:
  """Exactly ``n`` bytes from ``fd``; raises EOFError when the other side closed the pipe first."""
  chunks, got = [], 0
  while got < n:
    chunk = os.read(fd, min(n - got, 1 << 20))
    if not chunk:
      raise EOFError("pipe closed")
    chunks.append(chunk)
    got += len(chunk)
  return b"".join(chunks)


def read_frame(fd: int) -> Any:
  """Read one frame (the worker reads its requests with it)."""
  (n,) = struct.unpack("<Q", read_exact(fd, 8))
  if n > MAX_FRAME:
    raise WireError(f"a result of {n / 2**20:.0f} MB, over the {MAX_FRAME / 2**20:.0f} MB limit")
  return decode_body(read_exact(fd, n))
