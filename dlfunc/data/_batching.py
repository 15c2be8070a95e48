"""Per-epoch deterministic shuffling and fixed-shape batches (so ``jit`` compiles once)."""

from __future__ import annotations

from typing import Iterator

import numpy as np


def epoch_permutation(n: int, *, seed: int, epoch: int) -> np.ndarray:
  """The order of the ``n`` examples in epoch ``epoch`` of a run seeded ``seed``.

  A pure function of ``(seed, epoch)`` -- a resumed run replays exactly the
  order an uninterrupted one would have used.
  """
  return np.random.default_rng((int(seed), int(epoch))).permutation(n)


def num_batches(n: int, batch_size: int, *, drop_remainder: bool = True) -> int:
  """Number of batches :func:`batches` yields for ``n`` examples."""
  return n // batch_size if drop_remainder else -(-n // batch_size)


def batches(
  x, y, batch_size: int, *, seed: int = 0, epoch: int = 0, shuffle: bool = True, drop_remainder: bool = True
) -> Iterator[tuple]:
  """Yields fixed-shape batches of ``(x, y)``.

  Args:
    x, y: arrays with the same leading size ``n``.
    batch_size: examples per batch; every batch has exactly this many.
    seed, epoch: the shuffle is ``epoch_permutation(n, seed=seed, epoch=epoch)``.
    shuffle: ``False`` keeps the stored order.
    drop_remainder: ``True`` drops the last ``n % batch_size`` examples (the
      shuffle moves different ones to the end each epoch) and yields ``(x, y)``;
      ``False`` pads the last batch by repeating its first example and yields
      ``(x, y, mask)`` with ``mask`` 1.0 for real examples and 0.0 for padding.

  Unlike ``torch.utils.data.DataLoader(drop_last=False)``, no batch is ever
  smaller than ``batch_size``: a smaller batch would make ``jit`` recompile.
  """
  if batch_size <= 0:
    raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
  n = len(x)
  if len(y) != n:
    raise ValueError(f"x and y must have the same number of examples, got {n} and {len(y)}.")
  order = epoch_permutation(n, seed=seed, epoch=epoch) if shuffle else np.arange(n)
  stop = num_batches(n, batch_size, drop_remainder=drop_remainder)
  for b in range(stop):
    idx = order[b * batch_size : (b + 1) * batch_size]
    if drop_remainder:
      yield x[idx], y[idx]
      continue
    mask = np.ones(batch_size, np.float32)
    if len(idx) < batch_size:
      mask[len(idx) :] = 0.0
      idx = np.concatenate([idx, np.full(batch_size - len(idx), idx[0])])
    yield x[idx], y[idx], mask
