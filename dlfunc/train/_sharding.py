"""Data parallelism with ``jax.sharding``: batches split over devices, state replicated.

With one device these return ``None`` and nothing is moved. With several
(GPUs, TPU cores, or ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` on
a CPU), each batch is split along its first axis over a 1-D ``Mesh`` named
``"data"`` and the train state is replicated; ``jit`` inserts the gradient
all-reduce, so the maths is the same as on one device.

The same holds across hosts: after ``jax.distributed`` is initialised
(:func:`dlfunc.train.initialize_distributed`), the mesh spans the devices of
every process, and :meth:`DataParallel.put_batch` hands JAX only this process's
rows of each global batch (``jax.make_array_from_process_local_data``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dlfunc.train._distributed import global_devices, put_global_batch, put_replicated


class DataParallel(NamedTuple):
  """Where data-parallel training puts arrays: the device mesh and its two shardings.

  Attributes:
    mesh: a one-axis mesh (``"data"``) over the devices.
    batch: batches are split along their leading axis, one slice per device.
    replicated: parameters and optimizer state, a full copy on every device.
  """

  mesh: Mesh
  batch: NamedSharding  # PartitionSpec("data"): split the leading axis.
  replicated: NamedSharding  # PartitionSpec(): a full copy on every device.

  @property
  def num_devices(self) -> int:
    """How many devices share each batch."""
    return self.mesh.size

  @property
  def multi_process(self) -> bool:
    """``True`` when the mesh spans devices of other processes (other hosts)."""
    return not self.batch.is_fully_addressable

  def put_batch(self, batch: Any) -> Any:
    """A global batch (the same host arrays on every process), split over the mesh."""
    return put_global_batch(batch, self.batch)

  def replicate(self, tree: Any) -> Any:
    """``tree`` with a full copy on every device of the mesh (e.g. the train state)."""
    return put_replicated(tree, self.replicated)


def data_parallel(batch_size: int, devices=None) -> DataParallel | None:
  """The shardings for data-parallel training, or ``None`` on a single device.

  Without ``devices``, the mesh holds every device of every process (grouped by
  process), so under ``jax.distributed`` it is the global mesh.

  Raises:
    ValueError: ``batch_size`` is not a multiple of the device count.
  """
  devices = list(devices if devices is not None else global_devices())
  if len(devices) == 1:
    return None
  if batch_size % len(devices):
    hosts = len({d.process_index for d in devices})
    where = "visible devices" if hosts == 1 else f"devices of the {hosts} processes"
    raise ValueError(
      f"batch_size {batch_size} must be a multiple of the {len(devices)} {where} to split "
      f"each batch evenly; use e.g. --batch-size {max(1, batch_size // len(devices)) * len(devices)}."
    )
  mesh = Mesh(np.asarray(devices), ("data",))
  return DataParallel(mesh, NamedSharding(mesh, PartitionSpec("data")), NamedSharding(mesh, PartitionSpec()))
