"""Multi-host training on ``jax.distributed``: one process per host, one program over a global mesh.

JAX runs multi-host training as *multi-controller* SPMD: every host starts the
same Python program, :func:`initialize` connects them (one coordinator, the
others dial in), and from then on ``jax.devices()`` lists the devices of all
hosts. ``fit`` then builds a 1-D mesh over those global devices
(:func:`dlfunc.train.data_parallel`) and every process

* computes the same epoch permutation and so the same global batch, and hands
  JAX only *its* rows of it (:func:`put_global_batch`, via
  ``jax.make_array_from_process_local_data``) -- no process ever sends data to
  another;
* runs the same jit-compiled ``train_step``; XLA inserts the cross-host gradient
  all-reduce (NCCL on GPUs, gloo over TCP on CPUs), so every process holds the
  same replicated state, the same metrics and the same history;
* saves Orbax checkpoints collectively (Orbax writes each shard once, from the
  process that holds it, and synchronises the processes), so a run resumes with
  the same process count;
* leaves files to process 0 (:func:`is_main_process`): the progress bar, the
  training-curve PNG and the JSON files.

Nothing here connects anywhere unless asked: ``initialize()`` with no arguments
returns ``False``. ``initialize(auto=True)`` uses JAX's own cluster detection
(SLURM, Open MPI, Kubernetes with the ``kubernetes`` package).

Example (two processes on one machine emulate two hosts)::

    dlfunc train --coordinator localhost:12345 --num-processes 2 --process-id 0 &
    dlfunc train --coordinator localhost:12345 --num-processes 2 --process-id 1
"""

from __future__ import annotations

import argparse
from typing import Any

import jax
import numpy as np


def _parse_coordinator(coordinator: str) -> str:
  host, sep, port = str(coordinator).rpartition(":")
  if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise ValueError(
      f"--coordinator must be HOST:PORT (the address of process 0), got {coordinator!r}; "
      "e.g. --coordinator node0:12345."
    )
  return f"{host}:{port}"


def initialize(
  coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None, *, auto: bool = False
) -> bool:
  """Joins a multi-process run on ``jax.distributed``; returns whether this process is part of one.

  Call it first, before any JAX computation (JAX fixes its devices then).

  Args:
    coordinator: ``HOST:PORT`` where process 0 listens (every process passes the same).
    num_processes: how many processes take part (one per host, usually).
    process_id: this process's index, ``0 <= process_id < num_processes``.
    auto: with none of the three given, let JAX detect the cluster (SLURM,
      Open MPI, Kubernetes) from the environment.

  Returns:
    ``True`` when JAX's distributed runtime is up, ``False`` when nothing was
    asked (the single-process default: no network access).

  Raises:
    ValueError: incomplete or impossible flags, or ``auto`` found no cluster.
  """
  if jax.distributed.is_initialized():
    return True
  given = (coordinator, num_processes, process_id)
  if all(v is None for v in given) and not auto:
    return False
  if any(v is not None for v in given):
    if coordinator is None or num_processes is None or process_id is None:
      raise ValueError(
        "--coordinator, --num-processes and --process-id go together; pass all three "
        "(or --distributed auto to detect the cluster)."
      )
    coordinator = _parse_coordinator(coordinator)
    if isinstance(num_processes, bool) or not isinstance(num_processes, (int, np.integer)) or num_processes < 1:
      raise ValueError(f"--num-processes must be a positive integer, got {num_processes!r}.")
    if (
      isinstance(process_id, bool)
      or not isinstance(process_id, (int, np.integer))
      or not 0 <= process_id < num_processes
    ):
      raise ValueError(
        f"--process-id must lie in [0, {num_processes - 1}] for --num-processes {num_processes}, got {process_id!r}."
      )
    num_processes, process_id = int(num_processes), int(process_id)
  # CPU hosts all-reduce over TCP with gloo (the default in recent JAX; GPUs use NCCL, TPUs their ICI).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(coordinator, num_processes, process_id)
  except ValueError as e:
    if all(v is None for v in given):
      raise ValueError(
        "--distributed auto found no cluster to join (SLURM, Open MPI, or Kubernetes with the "
        "`kubernetes` package); pass --coordinator HOST:PORT --num-processes N --process-id I."
      ) from e
    raise
  except RuntimeError as e:
    if "before" in str(e) or "already" in str(e):
      raise ValueError(
        "jax.distributed must start before any JAX computation; call "
        "dlfunc.train.initialize_distributed first in the program."
      ) from e
    raise
  return True


def add_arguments(p: argparse.ArgumentParser) -> None:
  """The multi-host flags of ``dlfunc train`` (read by :func:`initialize_from_args`)."""
  g = p.add_argument_group("multi-host (jax.distributed; one process per host, start all with the same flags)")
  g.add_argument(
    "--coordinator",
    default=None,
    metavar="HOST:PORT",
    help="address where process 0 listens, the same on every process",
  )
  g.add_argument("--num-processes", type=int, default=None, metavar="N", help="processes taking part")
  g.add_argument("--process-id", type=int, default=None, metavar="I", help="this process, 0..N-1")
  g.add_argument(
    "--distributed",
    choices=("auto",),
    default=None,
    help="auto: let JAX detect the cluster (SLURM, Open MPI, Kubernetes) instead of the three flags",
  )


def initialize_from_args(args: argparse.Namespace) -> bool:
  """:func:`initialize` from the flags of :func:`add_arguments`; ``False`` when none was given."""
  return initialize(
    getattr(args, "coordinator", None),
    getattr(args, "num_processes", None),
    getattr(args, "process_id", None),
    auto=getattr(args, "distributed", None) == "auto",
  )


def is_main_process() -> bool:
  """``True`` on process 0 (and in any single-process run): the one that writes files and draws bars."""
  return jax.process_index() == 0


def global_devices() -> list:
  """All devices of all processes, grouped by process, so each process's rows of a batch are contiguous."""
  return sorted(jax.devices(), key=lambda d: (d.process_index, d.id))


def process_rows(sharding, global_rows: int) -> slice:
  """The rows of a ``global_rows``-long batch that ``sharding`` places on this process's devices."""
  starts, stops = [], []
  for index in sharding.addressable_devices_indices_map((global_rows,)).values():
    rows = index[0] if index else slice(None)
    start, stop, _ = rows.indices(global_rows)
    starts.append(start)
    stops.append(stop)
  lo, hi = min(starts), max(stops)
  covered = np.zeros(global_rows, bool)
  for start, stop in zip(starts, stops):
    covered[start:stop] = True
  if not covered[lo:hi].all():
    raise ValueError(
      "this process's devices hold non-contiguous rows of the batch; build the mesh from "
      "dlfunc.train.global_devices() (grouped by process)."
    )
  return slice(lo, hi)


def put_global_batch(batch: Any, sharding) -> Any:
  """A global batch (the same host arrays on every process) as ``jax.Array`` s split by ``sharding``.

  Each process passes only its own rows to ``jax.make_array_from_process_local_data``;
  on a single process this is ``jax.device_put``.
  """
  if sharding.is_fully_addressable:
    return jax.device_put(batch, sharding)

  def put(a):
    a = np.asarray(a)
    return jax.make_array_from_process_local_data(sharding, a[process_rows(sharding, a.shape[0])], a.shape)

  return jax.tree_util.tree_map(put, batch)


def put_replicated(tree: Any, sharding) -> Any:
  """``tree`` (the same values on every process) as global arrays with a full copy on every device."""
  if sharding.is_fully_addressable:
    return jax.device_put(tree, sharding)
  host = jax.device_get(tree)
  return jax.tree_util.tree_map(
    lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a), np.shape(a)), host
  )
