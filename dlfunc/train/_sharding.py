"""Data parallelism with ``jax.sharding``: batches split over devices, state replicated.

With one device these return ``None`` and nothing is moved. With several
(GPUs, TPU cores, or ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` on
a CPU), each batch is split along its first axis over a 1-D ``Mesh`` named
``"data"`` and the train state is replicated; ``jit`` inserts the gradient
all-reduce, so the maths is the same as on one device.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


class DataParallel(NamedTuple):
  """Where data-parallel training puts arrays: the device mesh and its two shardings.

  Attributes:
    mesh: a one-axis mesh (``"data"``) over the devices.
    batch: batches are split along their leading axis, one slice per device.
    replicated: parameters and optimizer state, a full copy on every device.
  """
  mesh: Mesh
  batch: NamedSharding       # PartitionSpec("data"): split the leading axis.
  replicated: NamedSharding  # PartitionSpec(): a full copy on every device.

  @property
  def num_devices(self) -> int:
    """How many devices share each batch."""
    return self.mesh.size


def data_parallel(batch_size: int, devices=None) -> DataParallel | None:
  """The shardings for data-parallel training, or ``None`` on a single device.

  Raises:
    ValueError: ``batch_size`` is not a multiple of the device count.
  """
  devices = list(devices if devices is not None else jax.devices())
  if len(devices) == 1:
    return None
  if batch_size % len(devices):
    raise ValueError(f"batch_size {batch_size} must be a multiple of the {len(devices)} visible devices to split "
                     f"each batch evenly; use e.g. --batch-size {max(1, batch_size // len(devices)) * len(devices)}.")
  mesh = Mesh(np.asarray(devices), ("data",))
  return DataParallel(mesh, NamedSharding(mesh, PartitionSpec("data")), NamedSharding(mesh, PartitionSpec()))
