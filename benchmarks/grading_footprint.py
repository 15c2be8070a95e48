"""Memory and time of a full grade of each assignment's reference solution (what a Gradescope container needs).

For each assignment, `autograder grade ID reference.py` runs as a child of this process; every 50 ms the RSS of
its whole process tree (grader + worker + anything they start) is summed from /proc (RSS, and PSS, which
counts shared pages once), and after it ends
``getrusage(RUSAGE_CHILDREN).ru_maxrss`` gives the largest single process. Writes autograder/footprint.json,
which `autograder export --gradescope` puts into the bundle's README.

    .venv/bin/python benchmarks/grading_footprint.py            # all assignments
    .venv/bin/python benchmarks/grading_footprint.py 01 03      # some
"""
from __future__ import annotations

import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import threading
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
OUT = REPO / "autograder" / "footprint.json"


def _tree_kb(root: int) -> tuple[int, int]:
  """(summed RSS, summed PSS) in kB of ``root`` and its descendants. RSS counts the pages grader and worker share
  (JAX's libraries) twice; PSS splits them, so its sum is close to what a container's memory limit charges."""
  kids: dict[int, list[int]] = {}
  for p in os.listdir("/proc"):
    if not p.isdigit():
      continue
    try:
      with open(f"/proc/{p}/stat") as f:
        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
      continue
    kids.setdefault(ppid, []).append(int(p))
  rss = pss = 0
  todo = [root]
  while todo:
    pid = todo.pop()
    todo.extend(kids.get(pid, []))
    try:
      with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
          if line.startswith("Rss:"):
            rss += int(line.split()[1])
          elif line.startswith("Pss:"):
            pss += int(line.split()[1])
    except (OSError, ValueError):
      continue
  return rss, pss


def measure(aid: str) -> dict:
  """Run one full grade in a fresh wrapper process (so RUSAGE_CHILDREN counts only it)."""
  code = f"""
import json, os, resource, subprocess, sys, threading, time
sys.path.insert(0, {str(REPO / 'benchmarks')!r})
from grading_footprint import _tree_kb
t0 = time.monotonic()
p = subprocess.Popen([sys.executable, "-m", "autograder.cli", "grade", {aid!r}, sys.argv[1], "--format", "json"],
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd={str(REPO)!r})
peak = [0, 0]
def watch():
  while p.poll() is None:
    rss, pss = _tree_kb(p.pid)
    peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
    time.sleep(0.05)
threading.Thread(target=watch, daemon=True).start()
out = p.communicate()[0]
secs = time.monotonic() - t0
rep = json.loads(out)
single = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({{"seconds": secs, "peak_tree_mb": peak[0] / 1024, "peak_pss_mb": peak[1] / 1024,
                  "peak_single_mb": single / 1024,
                  "score": rep["score"], "max_score": rep["max_score"], "isolation": rep["isolation"]}}))
"""
  from autograder.authoring import _authoring
  from autograder.grader import _registry
  a = _registry.load_assignment(aid)
  with tempfile.TemporaryDirectory() as tmp:
    ref = pathlib.Path(tmp) / "reference.py"
    ref.write_text(_authoring.module_source(a.source, solved=True, assignment_id=aid))
    r = subprocess.run([sys.executable, "-c", code, str(ref)], capture_output=True, text=True)
    if r.returncode:
      raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv):
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  sys.path.insert(0, str(REPO))
  from autograder.grader import _registry
  ids = argv or _registry.list_assignments()
  data = json.loads(OUT.read_text()) if OUT.is_file() else {"assignments": {}}
  for aid in ids:
    d = measure(aid)
    d = {k: (round(v, 1) if isinstance(v, float) else v) for k, v in d.items()}
    data["assignments"][aid] = d
    print(f"{aid}: {d['seconds']:.1f} s, peak {d['peak_pss_mb']:.0f} MB PSS / {d['peak_tree_mb']:.0f} MB RSS "
          f"(tree), {d['peak_single_mb']:.0f} MB "
          f"(largest process), score {d['score']:g}/{d['max_score']:g}", flush=True)
  data["how"] = (f"benchmarks/grading_footprint.py, `autograder grade ID reference.py` on {os.cpu_count()} cores "
                 f"(shared with other jobs), {time.strftime('%Y-%m-%d')}; isolation: "
                 f"{next(iter(data['assignments'].values()))['isolation']}")
  OUT.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
  main(sys.argv[1:])
