"""Charging a call's time to the student in a way that does not depend on how busy the machine is.

A wall-clock timeout punishes honest code on a loaded machine: with eight other
processes on two cores, a call that needs 1 s of CPU takes 4-8 s of wall time,
and a 6 s limit fails it (the grader then also skips that function's other
tests). The grader therefore charges a call the time it *would* have taken on an
idle machine, measured from the worker's process tree in ``/proc``:

- time the tree spends **running** counts as CPU time divided by the
  parallelism it asked for (at most the number of cores), so a two-threaded
  XLA kernel on two idle cores is charged its wall time, not twice it;
- time the tree spends **runnable but waiting for a core** (another process
  had it) is not charged — that is the load;
- time the tree spends **neither running nor waiting to run** (``sleep``,
  blocked on a lock or a pipe) is charged in full, so ``time.sleep(10**6)``
  is stopped after the limit just like ``while True: pass``.

Each sampling interval is charged at most its wall length. On an idle machine
the charge therefore equals the wall time, as before. Run-queue waits come from
``/proc/<pid>/task/<tid>/schedstat``; where that file is missing (kernels
without schedstats, non-Linux), the meter charges wall time (the old rule).
The grader also keeps a generous wall-clock backstop per call, so an overloaded
machine cannot make a hostile call run for ever.
"""

from __future__ import annotations

import os
import time

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
try:
  _CORES = max(1, len(os.sched_getaffinity(0)))
except (AttributeError, OSError):
  _CORES = max(1, os.cpu_count() or 1)


def _stat(pid: int):
  """(ppid, utime + stime in seconds) of ``pid`` or None."""
  try:
    with open(f"/proc/{pid}/stat", "rb") as f:
      data = f.read()
  except OSError:
    return None
  fields = data.rsplit(b")", 1)[-1].split()
  try:
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK
  except (IndexError, ValueError):
    return None


def _tree(root: int) -> list[int]:
  """``root`` and all its descendants (bubblewrap, its init, the worker, anything the worker forked)."""
  children: dict[int, list[int]] = {}
  try:
    names = os.listdir("/proc")
  except OSError:
    return [root]
  for p in names:
    if not p.isdigit():
      continue
    try:
      with open(f"/proc/{p}/stat", "rb") as f:
        ppid = int(f.read().rsplit(b")", 1)[-1].split()[1])
    except (OSError, IndexError, ValueError):
      continue
    children.setdefault(ppid, []).append(int(p))
  out, todo = [], [root]
  while todo:
    pid = todo.pop()
    out.append(pid)
    todo.extend(children.get(pid, ()))
  return out


class Meter:
  """Charged seconds for one call of the worker rooted at ``root`` (see the module docstring)."""

  RESCAN = 1.0  # seconds between scans of /proc for new descendants

  def __init__(self, root: int):
    self.root = root
    self.supported = os.path.exists(f"/proc/{root}/stat")
    self.has_schedstat = os.path.exists(f"/proc/{root}/schedstat")
    self._pids: list[int] = [root]
    self._scanned = 0.0
    self._cpu: dict[int, float] = {}  # pid -> last utime+stime
    self._run: dict[tuple[int, str], float] = {}  # (pid, tid) -> last on-cpu + run-queue seconds
    self._t = time.monotonic()
    self.charged = 0.0
    self.cpu = 0.0

  def _sample(self):
    """(cpu seconds, runnable seconds) gained by the tree since the last sample."""
    now = time.monotonic()
    if now - self._scanned >= self.RESCAN:
      self._pids = _tree(self.root)
      self._scanned = now
    dcpu = drun = 0.0
    for pid in self._pids:
      st = _stat(pid)
      if st is None:
        continue
      last = self._cpu.get(pid)
      self._cpu[pid] = st[1]
      dcpu += max(0.0, st[1] - last) if last is not None else (st[1] if self._seen else 0.0)
      if not self.has_schedstat:
        continue
      try:
        tids = os.listdir(f"/proc/{pid}/task")
      except OSError:
        continue
      for tid in tids:
        try:
          with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
            on_cpu, waiting = f.read().split()[:2]
        except (OSError, ValueError):
          continue
        value = (int(on_cpu) + int(waiting)) / 1e9
        k = (pid, tid)
        last = self._run.get(k)
        self._run[k] = value
        # a thread born since the last sample (pool threads are long-lived; XLA starts few): count it whole
        drun += value - last if last is not None else (value if self._seen else 0.0)
    return dcpu, drun

  _seen = False

  def start(self):
    """Begin a call: remember where every thread stands."""
    self._seen = False
    self._sample()
    self._seen = True
    self._t = time.monotonic()
    self.charged = self.cpu = 0.0

  def update(self, count_idle: bool = True) -> float:
    """Charge the time since the last update; return the total charged for this call.

    ``count_idle=False`` charges only the CPU the tree used (for the stretch when the grader was busy
    computing the reference and not yet reading the answer, so a worker blocked on writing its answer
    is not charged for the grader's time).
    """
    now = time.monotonic()
    dt, self._t = now - self._t, now
    if not self.supported:
      self.charged += dt
      return self.charged
    dcpu, drun = self._sample()
    self.cpu += dcpu
    if not self.has_schedstat:  # no run-queue data: every second counts (the wall-clock rule)
      self.charged += dt
      return self.charged
    parallel = min(max(drun / dt, 1.0), _CORES) if dt > 0 else 1.0
    busy = dcpu / parallel
    idle = max(0.0, dt - drun) if count_idle else 0.0
    self.charged += min(dt, busy + idle) if count_idle else min(dt, busy)
    return self.charged
