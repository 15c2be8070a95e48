"""The per-call time meter: a call is charged what it would take on an idle machine.

Load is simulated the way it arrives on a shared grading machine: busy processes in
their own sessions (Linux gives each session a fair share of a core under
autogrouping), all pinned to the same core as the measured process.
"""
import os
import pathlib
import subprocess
import sys
import time

import pytest

from autograder import load_assignment
from autograder.authoring import _authoring
from autograder.worker import _meter

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or not hasattr(os, "sched_setaffinity"),
                                reason="the meter reads /proc and the load is pinned with sched_setaffinity (Linux)")

SPIN = "while True: pass"
SLEEP = "import time; time.sleep(1000)"


def _core():
  return sorted(os.sched_getaffinity(0))[0]


def _start(code, core):
  p = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
  os.sched_setaffinity(p.pid, {core})
  return p


@pytest.fixture
def burners():
  """Three busy processes, each in its own session, pinned to one core; yields that core."""
  core = _core()
  procs = [_start(SPIN, core) for _ in range(3)]
  yield core
  for p in procs:
    p.kill()
    p.wait()


def _measure(proc, seconds):
  meter = _meter.Meter(proc.pid)
  time.sleep(0.3)        # let the process start
  meter.start()
  t0 = time.monotonic()
  while time.monotonic() - t0 < seconds:
    time.sleep(0.1)
    meter.update()
  return meter, time.monotonic() - t0


def test_a_sleeping_call_is_charged_its_wall_time():
  proc = _start(SLEEP, _core())
  try:
    meter, wall = _measure(proc, 1.0)
  finally:
    proc.kill()
    proc.wait()
  assert meter.cpu < 0.1
  assert meter.charged == pytest.approx(wall, abs=0.15)


@pytest.mark.skipif(not os.path.exists("/proc/self/schedstat"), reason="kernel without schedstats: wall-clock rule")
def test_a_busy_call_sharing_its_core_is_charged_its_cpu_time_not_the_wait(burners):
  proc = _start(SPIN, burners)
  try:
    meter, wall = _measure(proc, 1.5)
  finally:
    proc.kill()
    proc.wait()
  # Four sessions on one core: the spinner gets about a quarter of it. It is charged that, not the wall time,
  # so the same computation is charged the same however busy the machine is.
  assert meter.cpu > 0.05
  assert meter.charged == pytest.approx(meter.cpu, abs=0.15)
  assert meter.charged < 0.6 * wall


def test_the_meter_falls_back_to_wall_time_without_schedstat(monkeypatch):
  proc = _start(SPIN, _core())
  try:
    meter = _meter.Meter(proc.pid)
    meter.has_schedstat = False
    meter.start()
    t0 = time.monotonic()
    time.sleep(0.5)
    charged = meter.update()
  finally:
    proc.kill()
    proc.wait()
  assert charged == pytest.approx(time.monotonic() - t0, abs=0.1)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/schedstat"), reason="kernel without schedstats: wall-clock rule")
def test_reference_keeps_full_marks_with_a_tight_timeout_on_a_crowded_core(tmp_path):
  """The CI failure of the hostile batch, made deterministic: the grader and its worker share one core with
  four busy sessions. With a 2 s wall-clock rule the reference lost 9 of 25 points here (softmax's gradient
  call and init_dense were "stopped"); charged time keeps full marks. A hanging function is still stopped."""
  a = load_assignment("01")
  ref = tmp_path / "ref.py"
  ref.write_text(_authoring.module_source(a.source, solved=True, assignment_id="01"))
  hang = tmp_path / "hang.py"
  hang.write_text(ref.read_text() + "\n\ndef relu(x):\n  while True:\n    pass\n")
  core = _core()
  burn = [_start(SPIN, core) for _ in range(4)]
  try:
    code = ("import json, sys; from autograder.grader._runner import grade_submission as g; "
            "r = [g('01', sys.argv[1], timeout=2.0, functions=['softmax', 'init_dense']), "
            "g('01', sys.argv[2], timeout=2.0, functions=['relu'])]; "
            "print(json.dumps([[x.score, x.max_score, [t.output for t in x.tests if t.score < t.max_score]] "
            "for x in r]))")
    repo = pathlib.Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", code, str(ref), str(hang)], stdout=subprocess.PIPE, text=True,
                            cwd=repo)
    os.sched_setaffinity(proc.pid, {core})
    out, _ = proc.communicate(timeout=600)
  finally:
    for p in burn:
      p.kill()
      p.wait()
  import json
  (ref_score, ref_max, ref_fail), (hang_score, hang_max, hang_fail) = json.loads(out.strip().splitlines()[-1])
  assert ref_score == ref_max, ref_fail
  assert hang_score == 0, hang_fail
  assert "did not finish within 2 s" in hang_fail[0]
