"""The dlfunc CLI: one-line errors, registries, and (slow) end-to-end runs, accuracy, time, SIGKILL + --resume."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from dlfunc import cli
from dlfunc.train import MODELS, register_model

DLFUNC = [sys.executable, "-m", "dlfunc"]


def _main(capsys, *argv):
  code = cli.main(list(argv))
  out, err = capsys.readouterr()
  return code, out, err


@pytest.mark.parametrize("argv, expected", [
    (["train", "--model", "resnet9000"], "unknown model 'resnet9000'; choose one of: "),
    (["train", "--dataset", "imagenet22k"], "unknown data set 'imagenet22k'; choose one of: cifar10, digits"),
    (["train", "--optimizer", "lion"], "unknown optimizer 'lion'; choose one of: adam, adamw"),
    (["train", "--lr", "0"], "the learning rate must be a positive number, got 0.0"),
    (["train", "--lr", "-0.1"], "the learning rate must be a positive number, got -0.1"),
    (["train", "--epochs", "0"], "epochs must be a positive integer, got 0"),
    (["train", "--batch-size", "-8"], "batch_size must be a positive integer, got -8"),
    (["train", "--schedule", "warp"], "unknown schedule 'warp'"),
    (["train", "--resume"], "--resume needs the --workdir"),
    (["--model", "nope"], "unknown model 'nope'"),  # `dlfunc` alone means `dlfunc train`.
])
def test_bad_flags_are_one_line_errors(capsys, argv, expected):
  code, out, err = _main(capsys, *argv)
  assert code == 2
  assert err.count("\n") == 1 and err.startswith("dlfunc: error: "), err
  assert expected in err
  assert "Traceback" not in err and out == ""
  if "unknown model" in expected:
    assert all(name in err for name in ("mlp", "cnn", "lenet"))


def test_evaluate_without_a_run_is_a_one_line_error(capsys, tmp_path):
  code, _, err = _main(capsys, "evaluate", "--workdir", str(tmp_path))
  assert code == 2 and err.count("\n") == 1 and "no dlfunc run" in err and "dlfunc train --workdir" in err


def test_registries_extend_the_cli(capsys):
  called = {}
  cli.register_command("hello", "say hello", lambda p: p.add_argument("--name", default="x"),
                       lambda args, t0: called.setdefault("name", args.name) and 0)
  register_model("tiny-test-model", lambda num_classes=10: None, lr=0.5, description="test only")
  try:
    assert cli.main(["hello", "--name", "dlfunc"]) == 0 and called["name"] == "dlfunc"
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "tiny-test-model" in help_text
    code, _, err = _main(capsys, "train", "--model", "tiny-test-model", "--lr", "-1")
    assert code == 2 and "learning rate" in err
  finally:
    cli.COMMANDS.pop("hello")
    MODELS.pop("tiny-test-model")


# ---------------------------------------------------------------------------- end to end (subprocess)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  """A TFDS dir with nothing prepared: the first run prepares the embedded digits into it."""
  return str(tmp_path_factory.mktemp("tfds"))


def _env():
  return dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")


def _train(data_dir, *args, timeout=300):
  t0 = time.perf_counter()
  out = subprocess.run([*DLFUNC, "train", "--data-dir", data_dir, "--no-progress", "--json", *args],
                       capture_output=True, text=True, timeout=timeout, env=_env())
  wall = time.perf_counter() - t0
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1]), wall


@pytest.mark.slow
def test_default_run_is_the_seed_mlp_on_digits_above_97_percent_within_60_s(data_dir):
  summary, wall = _train(data_dir)
  assert summary["model"] == "mlp" and summary["dataset"] == "digits"
  assert {"epochs", "test_accuracy", "test_loss", "wall_seconds"} <= set(summary)
  assert summary["test_accuracy"] >= 0.97, summary
  assert wall < 60, f"dlfunc train took {wall:.1f} s wall (start-up and compilation included)"


@pytest.mark.slow
def test_lenet_above_98_percent_within_60_s(data_dir):
  summary, wall = _train(data_dir, "--model", "lenet")
  assert summary["model"] == "lenet"
  assert summary["test_accuracy"] >= 0.98, summary
  assert wall < 60, f"dlfunc train --model lenet took {wall:.1f} s wall (start-up and compilation included)"


def _last_checkpoint_checksum(workdir):
  ckpt = os.path.join(workdir, "checkpoints")
  last = max(int(d) for d in os.listdir(ckpt) if d.isdigit())
  with open(os.path.join(ckpt, str(last), "meta", "metadata")) as f:
    return last, json.load(f)["checksum"]


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_ends_with_the_same_parameters(data_dir, tmp_path):
  epochs = "30"
  killed, straight = str(tmp_path / "killed"), str(tmp_path / "straight")
  proc = subprocess.Popen([*DLFUNC, "train", "--data-dir", data_dir, "--no-progress", "--epochs", epochs,
                           "--workdir", killed], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
  ckpt = os.path.join(killed, "checkpoints")
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    if os.path.isdir(os.path.join(ckpt, "3")):  # Finished checkpoints appear by atomic rename.
      break
    time.sleep(0.01)
  assert proc.poll() is None, "the run finished before it could be killed: " + proc.stderr.read().decode()[-2000:]
  proc.send_signal(signal.SIGKILL)
  proc.wait(timeout=60)
  proc.stderr.close()
  assert proc.returncode == -signal.SIGKILL
  done_before = max(int(d) for d in os.listdir(ckpt) if d.isdigit())
  assert 3 <= done_before < int(epochs)

  out = subprocess.run([*DLFUNC, "train", "--data-dir", data_dir, "--no-progress", "--json", "--epochs", epochs,
                        "--workdir", killed, "--resume"], capture_output=True, text=True, timeout=300, env=_env())
  assert out.returncode == 0, out.stderr[-3000:]
  assert f"resuming from the checkpoint of epoch {done_before}" in out.stderr
  resumed = json.loads(out.stdout.strip().splitlines()[-1])
  reference, _ = _train(data_dir, "--epochs", epochs, "--workdir", straight)

  assert _last_checkpoint_checksum(killed) == _last_checkpoint_checksum(straight)  # Bit-identical state.
  assert resumed["test_loss"] == reference["test_loss"]
  assert resumed["test_accuracy"] == reference["test_accuracy"]
  assert os.path.exists(os.path.join(straight, "training_curve.png"))

  ev = subprocess.run([*DLFUNC, "evaluate", "--workdir", straight, "--data-dir", data_dir, "--json"],
                      capture_output=True, text=True, timeout=300, env=_env())
  assert ev.returncode == 0, ev.stderr[-3000:]
  evaluated = json.loads(ev.stdout.strip().splitlines()[-1])
  assert evaluated["epochs"] == int(epochs)
  assert evaluated["test_accuracy"] == pytest.approx(reference["test_accuracy"], abs=1e-7)


# ---------------------------------------------------------------------------- the command table


def test_python_m_dlfunc_lists_the_same_commands_as_the_script():
  script = os.path.join(os.path.dirname(sys.executable), "dlfunc")
  outs = []
  for argv in ([script], [sys.executable, "-m", "dlfunc"], [sys.executable, "-m", "dlfunc.cli"]):
    run = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=120, env=_env())
    assert run.returncode == 0, run.stderr[-2000:]
    outs.append(run.stdout.split("\n", 1)[1])  # After "usage: dlfunc ...", identical.
  assert outs[0] == outs[1] == outs[2]
  flat = " ".join(outs[0].split())
  for name, command in cli.COMMANDS.items():
    assert f"{name} {command.help}" in flat, (name, flat)
  assert list(cli.COMMANDS) == ["train", "evaluate", "anomaly", "finetune", "embed"]


def test_missing_optional_dependency_is_one_line(capsys, monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, "tokenizers", None)  # `import tokenizers` now raises ModuleNotFoundError.
  code, out, err = _main(capsys, "embed", "--model", str(tmp_path), "a sentence")
  assert code == 1 and out == "" and err.count("\n") == 1, err
  assert "`dlfunc embed` needs the package 'tokenizers', which is not installed: " in err
  assert "pip install 'dlfunc[pretrained]'" in err and "Traceback" not in err

  # A subcommand whose module cannot be imported stays listed, the others work, and using it says what to install.
  (tmp_path / "dlfunc_fake_cmd.py").write_text("import dlfunc_not_installed_pkg\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  cli.register_command("fake", "needs a missing package", "dlfunc_fake_cmd:add_arguments", "dlfunc_fake_cmd:run",
                       install="pip install dlfunc-not-installed-pkg")
  try:
    code, out, err = _main(capsys, "fake", "--flag")
    assert code == 1 and err.count("\n") == 1, err
    assert "needs the package 'dlfunc_not_installed_pkg'" in err and "pip install dlfunc-not-installed-pkg" in err
    code, _, err = _main(capsys, "train", "--lr", "0")
    assert code == 2 and "learning rate" in err
  finally:
    cli.COMMANDS.pop("fake")
