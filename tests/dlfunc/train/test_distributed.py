"""Multi-host training on jax.distributed, emulated by two local processes (CPU, gloo collectives over TCP).

One slow test runs three two-process ``dlfunc train`` runs (A uninterrupted; B killed
once its epoch-1 checkpoint exists; C resumes B) and one single-process run, and
checks from them: the same test accuracy on both processes and within 2 examples of
one process with the same global batch; C ends exactly where A ends; only process 0
writes files (process 1 runs under a Python audit hook that records every write).
"""
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import jax
import pytest

from dlfunc.train import _distributed

ARGS = ["train", "--epochs", "3", "--seed", "0"]
# Process 1 runs the CLI under an audit hook that logs every file it opens for writing, renames, creates or
# deletes (Python-level: json, matplotlib, os.makedirs, Orbax's Python side) to $WRITES_LOG at exit.
AUDITED = textwrap.dedent("""
  import atexit, json, os, runpy, sys
  writes, on = [], [True]
  WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
  def hook(event, args):
    if not on[0]:
      return
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
      mode, flags = args[1], args[2]
      if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & WRITE):
        writes.append(os.path.abspath(os.fsdecode(args[0])))
    elif event in ("os.rename", "os.replace", "os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree"):
      if isinstance(args[0], (str, bytes, os.PathLike)):
        writes.append(os.path.abspath(os.fsdecode(args[0])))
  def dump():
    on[0] = False
    with open(os.environ["WRITES_LOG"], "w") as f:
      json.dump(writes, f)
  atexit.register(dump)
  sys.addaudithook(hook)
  sys.argv = ["dlfunc"] + sys.argv[1:]
  runpy.run_module("dlfunc.cli", run_name="__main__")
""")


def _env(**extra):
  env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "OMPI_", "KUBERNETES_", "XLA_FLAGS"))}
  env.update(JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", **extra)
  return env


def _free_port(lo=None):
  for port in ([0] if lo is None else range(lo, 65536)):
    with socket.socket() as s:
      try:
        s.bind(("localhost", port))
      except OSError:
        continue
      return s.getsockname()[1]
  raise RuntimeError("no free port")


def _start_pair(tmp_path, name, extra, *, audit=False, slurm=False):
  """Starts processes 0 and 1 of one run, each in its own empty cwd; returns the Popen objects."""
  procs = []
  if slurm:  # JAX's SLURM detection: coordinator = first node : 61440 + job id % 4096.
    job = _free_port(61440) - 61440
  else:
    port = _free_port()
  for i in (0, 1):
    cwd = tmp_path / f"{name}-cwd{i}"
    cwd.mkdir()
    if slurm:
      flags = ["--distributed", "auto"]
      env = _env(SLURM_JOB_ID=str(job), SLURM_STEP_NODELIST="localhost", SLURM_NTASKS="2", SLURM_PROCID=str(i),
                 SLURM_LOCALID="0")
    else:
      flags = ["--coordinator", f"localhost:{port}", "--num-processes", "2", "--process-id", str(i)]
      env = _env()
    cmd = [sys.executable, "-m", "dlfunc.cli"]
    if audit and i == 1:
      cmd = [sys.executable, "-c", AUDITED]
      env["WRITES_LOG"] = str(tmp_path / f"{name}-writes.json")
    # Output goes to files (a pipe nobody reads while the runs go on could fill and block a process).
    with open(tmp_path / f"{name}{i}.out", "w") as out, open(tmp_path / f"{name}{i}.err", "w") as err:
      p = subprocess.Popen(cmd + extra + flags, cwd=cwd, env=env, stdout=out, stderr=err, start_new_session=True)
    p.out, p.err = out.name, err.name
    procs.append(p)
  return procs


def _read(path) -> str:
  with open(path) as f:
    return f.read()


def _finish(procs, timeout=300):
  """Waits for a run; returns ``[(exit code, stdout, stderr)]`` of processes 0 and 1."""
  outs = []
  try:
    for p in procs:
      p.wait(timeout=timeout)
      outs.append((p.returncode, _read(p.out), _read(p.err)))
  finally:
    for p in procs:
      if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
  for code, out, err in outs:
    assert code == 0, f"exit {code}\n{out}\n{err[-3000:]}"
  return outs


def _accuracy(stdout: str) -> float:
  return json.loads(stdout.strip().splitlines()[-1])["test_accuracy"]


def _history(workdir):
  with open(os.path.join(workdir, "result.json")) as f:
    result = json.load(f)
  return result["test_loss"], [{k: v for k, v in h.items() if k not in ("seconds", "examples_per_second")}
                               for h in result["history"]]


@pytest.mark.slow
def test_two_processes_agree_resume_and_only_process_0_writes(tmp_path):
  a_dir, b_dir = str(tmp_path / "a"), str(tmp_path / "b")
  # A (uninterrupted, process 1 audited) and B (killed after epoch 1) run side by side.
  a = _start_pair(tmp_path, "a", ARGS + ["--json", "--workdir", a_dir], audit=True)
  b = _start_pair(tmp_path, "b", ARGS + ["--no-progress", "--workdir", b_dir])
  deadline = time.monotonic() + 300
  try:
    while not os.path.isdir(os.path.join(b_dir, "checkpoints", "1")):  # Orbax renames it into place when complete.
      assert all(p.poll() is None for p in b), "run B ended before its epoch-1 checkpoint: " + _read(b[0].err)[-3000:]
      assert time.monotonic() < deadline, "run B wrote no epoch-1 checkpoint in 300 s"
      time.sleep(0.01)
  finally:
    for p in b:
      os.killpg(p.pid, signal.SIGKILL)
      p.wait()
  assert not os.path.exists(os.path.join(b_dir, "result.json")), "run B finished before it was killed"
  assert not os.path.isdir(os.path.join(b_dir, "checkpoints", "3"))

  # C resumes B with the same process count, joining through JAX's SLURM detection (--distributed auto).
  c = _start_pair(tmp_path, "c", ARGS + ["--no-progress", "--json", "--workdir", b_dir, "--resume"], slurm=True)
  from dlfunc import data  # Meanwhile, one process with the same global batch (32).
  from dlfunc.train import TrainConfig, train_and_evaluate
  _, single = train_and_evaluate(TrainConfig(epochs=3, seed=0, progress=False))
  (_, a0, a0_err), (_, a1, a1_err) = _finish(a)
  (_, c0, c0_err), (_, c1, _) = _finish(c)

  # The same test accuracy on both processes.
  assert _accuracy(a0) == _accuracy(a1)
  assert _accuracy(c0) == _accuracy(c1)
  # The resumed run ends where the uninterrupted one ends: same per-epoch history and test loss.
  assert "resuming from the checkpoint of epoch" in c0_err
  assert _history(b_dir) == _history(a_dir)
  assert _accuracy(c0) == _accuracy(a0)

  # Within 2 test examples of the single-process run.
  n_test = len(data.load("digits", "test"))
  assert abs(_accuracy(a0) - single["test_accuracy"]) * n_test <= 2 + 1e-9, (_accuracy(a0), single)

  # Only process 0 wrote files: its JSON, curve and checkpoints exist; process 1 wrote nothing in the
  # workdir or its own cwd, and only process 0 drew a progress bar.
  assert "step/s" in a0_err and "step/s" not in a1_err
  assert {"config.json", "result.json", "training_curve.png", "checkpoints"} <= set(os.listdir(a_dir))
  with open(tmp_path / "a-writes.json") as f:
    writes = json.load(f)
  checkpoints = os.path.join(a_dir, "checkpoints") + os.sep
  inside = [w for w in writes if w.startswith((a_dir + os.sep, str(tmp_path / "a-cwd1")))]
  assert [w for w in inside if not w.startswith(checkpoints)] == []
  # In the checkpoints, Orbax's multi-host protocol has each process record its own array metadata.
  assert all(os.path.basename(w) == "process_1" for w in inside), inside
  assert os.listdir(tmp_path / "a-cwd1") == []
  assert os.listdir(tmp_path / "a-cwd0") == []


def test_no_flags_connect_nowhere():
  assert _distributed.initialize() is False
  assert not jax.distributed.is_initialized()


@pytest.mark.parametrize("kwargs, message", [
    ({"coordinator": "localhost:1234"}, "go together"),
    ({"coordinator": "localhost", "num_processes": 2, "process_id": 0}, "HOST:PORT"),
    ({"coordinator": "localhost:1234", "num_processes": 2, "process_id": 2}, r"\[0, 1\]"),
    ({"coordinator": "localhost:1234", "num_processes": 0, "process_id": 0}, "positive"),
])
def test_bad_flags_fail_before_connecting(kwargs, message):
  with pytest.raises(ValueError, match=message):
    _distributed.initialize(**kwargs)
  assert not jax.distributed.is_initialized()


def test_cli_flags_parse_and_a_partial_set_is_a_one_line_error(capsys):
  from dlfunc import cli
  assert cli.main(["train", "--process-id", "1", "--epochs", "1"]) == 2
  err = capsys.readouterr().err
  assert "--coordinator, --num-processes and --process-id go together" in err
  assert len(err.strip().splitlines()) == 1
