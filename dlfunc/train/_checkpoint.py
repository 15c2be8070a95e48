"""Orbax checkpoints, one per epoch, verified on restore.

Orbax writes each step into a temporary directory and renames it when complete
(a ``commit_success.txt`` marks it on file systems without atomic rename), so a
run killed mid-save leaves only finished checkpoints visible. On top of that,
each checkpoint stores a SHA-256 of every array; a checkpoint whose files were
truncated or altered fails to restore or fails the checksum, is reported with a
message, and the previous one is used instead -- never loaded silently.
"""

from __future__ import annotations

import hashlib
import os
import sys
from typing import Any

import jax
import numpy as np


def _ocp():
  import orbax.checkpoint as ocp  # Deferred: ~1 s of import, needed only with a workdir.

  return ocp


def tree_checksum(tree: Any) -> str:
  """SHA-256 over the shapes, dtypes and bytes of every leaf of ``tree``."""
  h = hashlib.sha256()
  for leaf in jax.tree_util.tree_leaves(jax.device_get(tree)):
    a = np.asarray(leaf)
    h.update(f"{a.shape}{a.dtype}".encode())
    h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()


def _key_name(key) -> str:
  for attr in ("name", "key", "idx"):  # GetAttrKey, DictKey / FlattenedIndexKey, SequenceKey.
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def tree_signature(tree: Any) -> list[tuple[str, tuple[int, ...], str]]:
  """``(path, shape, dtype)`` of every leaf, paths as ``"params/Dense_0/kernel"``.

  Example:
    >>> tree_signature({"params": {"w": np.zeros((2, 3), np.float32)}, "step": np.int32(0)})
    [('params/w', (2, 3), 'float32'), ('step', (), 'int32')]
  """
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return [
    (
      "/".join(_key_name(k) for k in path),
      tuple(int(d) for d in np.shape(leaf)),
      np.dtype(leaf.dtype).name if hasattr(leaf, "dtype") else np.asarray(leaf).dtype.name,
    )
    for path, leaf in leaves
  ]


def _describe(entry) -> str:
  return f"{tuple(entry[1])} {entry[2]}"


def first_difference(
  saved: list, wanted: list, *, names: tuple[str, str] = ("the checkpoint", "the model")
) -> str | None:
  """The first leaf where two :func:`tree_signature` lists differ, in words, or ``None`` when they agree.

  ``names`` say what ``saved`` and ``wanted`` are in the message.
  """
  a, b = names
  saved_paths = {s[0] for s in saved}
  for s, w in zip(saved, wanted):
    if s[0] == w[0] and (tuple(s[1]), s[2]) != (tuple(w[1]), w[2]):
      return f"{s[0]} is {_describe(s)} in {a} but {_describe(w)} in {b}"
    if s[0] != w[0]:
      if w[0] not in saved_paths:
        return f"{w[0]} ({_describe(w)}) is in {b} but not in {a}"
      return f"{s[0]} ({_describe(s)}) is in {a} but not in {b}"
  if len(saved) > len(wanted):
    return f"{saved[len(wanted)][0]} ({_describe(saved[len(wanted)])}) is in {a} but not in {b}"
  if len(wanted) > len(saved):
    return f"{wanted[len(saved)][0]} ({_describe(wanted[len(saved)])}) is in {b} but not in {a}"
  return None


class _DoesNotFit(ValueError):
  """A checkpoint written by another model: never skipped as corrupt, never overwritten."""


class Checkpointer:
  """Saves ``(state, meta)`` per epoch under ``workdir/checkpoints/<epoch>``.

  Args:
    workdir: the run's directory.
    max_to_keep: finished checkpoints kept (older ones are deleted after a save).
  """

  def __init__(self, workdir: str | os.PathLike, max_to_keep: int = 3):
    ocp = _ocp()
    self.directory = os.path.join(os.path.abspath(os.fspath(workdir)), "checkpoints")
    self._manager = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=False, create=True),
    )

  def epochs(self) -> list[int]:
    """Epochs with a finished checkpoint, oldest first (temporary directories are ignored)."""
    self._manager.reload()
    return sorted(self._manager.all_steps())

  def save(self, epoch: int, state: Any, meta: dict) -> None:
    """Writes the checkpoint of a completed ``epoch`` (blocking; atomic rename)."""
    ocp = _ocp()
    meta = dict(meta, epoch=int(epoch), checksum=tree_checksum(state), signature=tree_signature(state))
    if int(epoch) in self.epochs():  # A corrupt one skipped on resume, or a stale one past it.
      self._manager.delete(int(epoch))
    self._manager.save(
      int(epoch), args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True
    )
    self._manager.wait_until_finished()

  def restore_latest(self, target: Any, *, log=None) -> tuple[Any, dict] | None:
    """Restores the newest checkpoint that loads and passes its checksum.

    A checkpoint is first compared with ``target`` leaf by leaf (path, shape,
    dtype, from its stored :func:`tree_signature`): one written by another
    model or optimizer raises, before any array is read, and is never called
    corrupt (``fit`` would otherwise start over and overwrite it).

    Args:
      target: a state with the structure, shapes and shardings to restore into.
      log: ``log(message)`` for skipped checkpoints (default: print to stderr).

    Returns:
      ``(state, meta)`` or ``None`` when no valid checkpoint exists.

    Raises:
      ValueError: a checkpoint does not fit ``target``; names the first differing
        leaf and both shapes.
    """
    ocp = _ocp()
    log = log or (lambda m: print(m, file=sys.stderr))
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
    for epoch in reversed(self.epochs()):
      try:
        meta = dict(self._manager.restore(epoch, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])
        if "signature" in meta:
          self._check_fits(epoch, meta["signature"], tree_signature(target))
        restored = self._manager.restore(
          epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
        )
        state, meta = restored["state"], dict(restored["meta"])
        if meta.get("checksum") != tree_checksum(state):
          raise ValueError("checksum mismatch")
      except _DoesNotFit:
        raise
      except Exception as e:  # noqa: BLE001 -- any other failure means "do not trust this one".
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if "not compatible with the stored shape" in reason:  # Written before signatures were stored.
          raise _DoesNotFit(
            f"the checkpoint of epoch {epoch} in {self.directory} was written by another "
            f"model ({reason[:160]}); resume with the model that wrote it, or choose a new "
            "workdir."
          ) from None
        log(
          f"dlfunc: checkpoint of epoch {epoch} in {self.directory} is corrupt or partial ({reason[:160]}); "
          "skipping it."
        )
        continue
      return state, meta
    return None

  def _check_fits(self, epoch: int, saved: list, wanted: list) -> None:
    difference = first_difference([tuple(s) for s in saved], wanted)
    if difference:
      raise _DoesNotFit(
        f"the checkpoint of epoch {epoch} in {self.directory} does not fit this model: {difference}; "
        "resume with the model and optimizer that wrote it, or choose a new workdir."
      )

  def close(self) -> None:
    self._manager.close()
