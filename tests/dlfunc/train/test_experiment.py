"""train_and_evaluate / evaluate_workdir: one epoch on mocked MNIST (the Flax-examples smoke test)."""
import json
import os

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from dlfunc.data import _load
from dlfunc.train import TrainConfig, evaluate_workdir, train_and_evaluate


def test_one_epoch_on_mock_mnist_writes_the_run_and_counts_parameters(monkeypatch, tmp_path):
  monkeypatch.setattr(_load, "_online", lambda *a, **k: True)  # A "connected machine", TFDS mocked.
  config = TrainConfig(model="mlp", dataset="mnist", epochs=1, batch_size=8, progress=False,
                       data_dir=str(tmp_path / "tfds"))
  workdir = str(tmp_path / "run")
  with tfds.testing.mock_data(num_examples=32):
    state, summary = train_and_evaluate(config, workdir)
    again = evaluate_workdir(workdir)
  n_params = sum(np.size(p) for p in jax.tree_util.tree_leaves(state.params))
  assert n_params == 784 * 128 + 128 + 128 * 10 + 10  # The seed MLP on 28x28 inputs.
  assert summary["model"] == "mlp" and summary["dataset"] == "mnist" and summary["epochs"] == 1
  assert 0.0 <= summary["test_accuracy"] <= 1.0 and np.isfinite(summary["test_loss"])
  for name in ("config.json", "result.json", "training_curve.png"):
    assert os.path.exists(os.path.join(workdir, name)), name
  with open(os.path.join(workdir, "config.json")) as f:
    saved = json.load(f)
  assert saved["lr"] == 3e-3 and saved["optimizer"] == "adam" and saved["schedule"] == "cosine"
  assert again["epochs"] == 1
  assert again["test_loss"] == pytest.approx(summary["test_loss"], rel=1e-6)


def test_resume_with_different_settings_is_refused(monkeypatch, tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "config.json").write_text(json.dumps({"model": "mlp", "dataset": "digits", "optimizer": "adam",
                                                   "lr": 0.003, "batch_size": 32, "schedule": "cosine",
                                                   "seed": 0, "epochs": 40}))
  with pytest.raises(ValueError, match=r"different settings.*lr 0.003 -> 0.1") as e:
    train_and_evaluate(TrainConfig(lr=0.1, progress=False), str(workdir), resume=True)
  assert "\n" not in str(e.value)


_FRESH_PROCESS = r"""
import json, sys
from dlfunc.train import TrainConfig, train_and_evaluate, write_figures
out = {}
for model in ("rnn", "vae"):
  state, summary = train_and_evaluate(TrainConfig(model=model, epochs=1, progress=False, data_dir=sys.argv[1]))
  out[model] = dict(summary, figures=write_figures(model, state, sys.argv[2], data_dir=sys.argv[1]))
out["cli_imported"] = any(m.startswith("dlfunc.cli") or m == "dlfunc._transfer_cli" for m in sys.modules)
print(json.dumps(out))
"""


def test_builtin_experiments_train_in_a_fresh_process_without_the_cli(tmp_path):
  """The sequence models and autoencoders are library specs: no CLI module needs importing first."""
  import subprocess
  import sys
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  run = subprocess.run([sys.executable, "-c", _FRESH_PROCESS, str(tmp_path / "tfds"), str(tmp_path / "figs")],
                       capture_output=True, text=True, timeout=300, env=env)
  assert run.returncode == 0, run.stderr[-3000:]
  out = json.loads(run.stdout.strip().splitlines()[-1])
  assert out["cli_imported"] is False
  assert out["rnn"]["dataset"] == "digits-seq" and out["rnn"]["epochs"] == 1 and out["rnn"]["figures"] == []
  assert 0.0 <= out["rnn"]["test_accuracy"] <= 1.0 and out["rnn"]["lr"] == 5e-3
  assert out["vae"]["dataset"] == "digits" and "test_accuracy" not in out["vae"]  # Reconstructs its inputs.
  assert [os.path.basename(p) for p in out["vae"]["figures"]] == ["reconstructions.png", "latent.png"]
  assert all(os.path.getsize(p) > 1000 for p in out["vae"]["figures"])


def test_one_optimizer_registry_for_the_library_and_the_cli(capsys):
  import functools

  import jax.numpy as jnp

  from dlfunc import cli, optim, train
  assert train.OPTIMIZERS is optim.OPTIMIZERS and train.register_optimizer is optim.register_optimizer
  grads, params = jnp.ones(3), jnp.zeros(3)

  def two_steps(tx):
    state, out = tx.init(params), []
    for _ in range(2):
      updates, state = tx.update(grads, state, params)
      out.append(updates)
    return jnp.stack(out)

  # `momentum` is sgd with momentum 0.9, written once; an explicit momentum overrides it.
  assert jnp.allclose(two_steps(optim.get_optimizer("momentum", 0.1)), two_steps(optim.sgd(0.1, momentum=0.9)))
  assert jnp.allclose(two_steps(optim.get_optimizer("Momentum", 0.1, momentum=0.5)),
                      two_steps(optim.sgd(0.1, momentum=0.5)))
  optim.register_optimizer("nesterov-test", functools.partial(optim.sgd, momentum=0.9, nesterov=True))
  try:
    with pytest.raises(ValueError, match="already registered"):
      optim.register_optimizer("nesterov-test", optim.sgd)
    assert train.TrainConfig(optimizer="nesterov-test").resolved().optimizer == "nesterov-test"
    assert jnp.allclose(two_steps(optim.get_optimizer("nesterov-test", 0.1)),
                        two_steps(optim.sgd(0.1, momentum=0.9, nesterov=True)))
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "nesterov-test" in help_text
  finally:
    optim.OPTIMIZERS.pop("nesterov-test")
  with pytest.raises(ValueError, match="unknown optimizer 'nesterov-test'"):
    train.TrainConfig(optimizer="nesterov-test").resolved()


def test_bfloat16_compute_keeps_float32_parameters_and_is_checked(tmp_path):
  """`dlfunc train --dtype bfloat16`: mixed precision (bf16 compute, f32 master params); resume/evaluate agree."""
  workdir = str(tmp_path / "run")
  config = TrainConfig(model="mlp", epochs=2, progress=False, dtype="bfloat16")
  state, summary = train_and_evaluate(config, workdir)
  assert summary["dtype"] == "bfloat16" and summary["test_accuracy"] > 0.8
  assert {p.dtype for p in jax.tree_util.tree_leaves(state.params)} == {np.dtype("float32")}
  assert state.apply_fn.__self__.dtype == jax.numpy.bfloat16
  again = evaluate_workdir(workdir)
  assert again["test_loss"] == pytest.approx(summary["test_loss"], rel=1e-6)
  with pytest.raises(ValueError, match=r"different settings.*dtype 'bfloat16' -> 'float32'"):
    train_and_evaluate(TrainConfig(model="mlp", epochs=2, progress=False), workdir, resume=True)
  with pytest.raises(ValueError, match=r"unknown compute dtype 'float8'.*float32, bfloat16"):
    train_and_evaluate(TrainConfig(dtype="float8", progress=False))
