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
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=False,
                                             create=True))

  def epochs(self) -> list[int]:
    """Epochs with a finished checkpoint, oldest first (temporary directories are ignored)."""
    self._manager.reload()
    return sorted(self._manager.all_steps())

  def save(self, epoch: int, state: Any, meta: dict) -> None:
    """Writes the checkpoint of a completed ``epoch`` (blocking; atomic rename)."""
    ocp = _ocp()
    meta = dict(meta, epoch=int(epoch), checksum=tree_checksum(state))
    if int(epoch) in self.epochs():  # A corrupt one skipped on resume, or a stale one past it.
      self._manager.delete(int(epoch))
    self._manager.save(int(epoch), args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                           meta=ocp.args.JsonSave(meta)), force=True)
    self._manager.wait_until_finished()

  def restore_latest(self, target: Any, *, log=None) -> tuple[Any, dict] | None:
    """Restores the newest checkpoint that loads and passes its checksum.

    Args:
      target: a state with the structure, shapes and shardings to restore into.
      log: ``log(message)`` for skipped checkpoints (default: print to stderr).

    Returns:
      ``(state, meta)`` or ``None`` when no valid checkpoint exists.
    """
    ocp = _ocp()
    log = log or (lambda m: print(m, file=sys.stderr))
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
    for epoch in reversed(self.epochs()):
      try:
        restored = self._manager.restore(epoch, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        state, meta = restored.state, dict(restored.meta)
        if meta.get("checksum") != tree_checksum(state):
          raise ValueError("checksum mismatch")
      except Exception as e:  # noqa: BLE001 -- any failure means "do not trust this one".
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        log(f"dlfunc: checkpoint of epoch {epoch} in {self.directory} is corrupt or partial ({reason}); skipping it.")
        continue
      return state, meta
    return None

  def close(self) -> None:
    self._manager.close()
