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
