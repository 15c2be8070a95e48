"""Assignment 10 (between frameworks): fixtures, typical porting mistakes, and the train-and-checkpoint path.

The validate/hostile runs for every assignment live in the autograder tests;
here the reference solution runs in-process (``LocalSubmission``) with one
function swapped for a typical mistake, and the notebook's last section (train
the ported model with dlfunc's jit-compiled step, checkpoint, restore) runs.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _assignment_helpers import Reference

R = Reference("10")


def test_fixture_models_learned():
  f = R.assignment.module.fixtures()
  for name in ("keras_mlp", "torch_mlp", "torch_cnn"):
    assert float(f[f"{name}_accuracy"]) > 0.9
  assert f["x_nchw"].shape == (32, 1, 8, 8)
  np.testing.assert_array_equal(f["x_nchw"].transpose(0, 2, 3, 1), f["x_nhwc"])


@pytest.mark.parametrize("key", ["test_port_keras_mlp_logits", "test_port_torch_mlp_logits", "test_port_torch_cnn_logits",
                                 "test_torch_conv2d_to_dlfunc_output", "test_torch_linear_to_dlfunc_square"])
def test_reference_passes(ref_ns, key):
  assert R.run(ref_ns, key)[:2] == (1.0, "passed")


def test_cnn_without_flatten_reorder_fails_with_a_hint(ref_ns):
  ns = dict(ref_ns)

  def naive(sd):
    conv = ref_ns["torch_conv2d_to_dlfunc"](sd["conv1.weight"], sd["conv1.bias"])
    return {"params": {"Conv_0": conv, "Dense_0": ref_ns["torch_linear_to_dlfunc"](sd["fc1.weight"], sd["fc1.bias"])}}
  ns["port_torch_cnn"] = naive
  frac, status, msg = R.run(ns, "test_port_torch_cnn_logits")
  assert status == "failed" and "(c, h, w)" in msg


def test_missing_transpose_on_square_layer_fails(ref_ns):
  ns = dict(ref_ns)
  ns["torch_linear_to_dlfunc"] = lambda w, b: {"kernel": jnp.asarray(w), "bias": jnp.asarray(b)}
  assert R.run(ns, "test_torch_linear_to_dlfunc_square")[1] == "failed"


def test_conv_kernel_wrong_axes_fails(ref_ns):
  ns = dict(ref_ns)
  ns["torch_conv2d_to_dlfunc"] = lambda w, b: {"kernel": jnp.transpose(w, (3, 2, 1, 0)), "bias": jnp.asarray(b)}
  assert R.run(ns, "test_torch_conv2d_to_dlfunc_output")[1] == "failed"


@pytest.mark.slow
def test_ported_cnn_trains_and_checkpoints(ref_ns, tmp_path):
  """The notebook's last section: ported weights -> TrainState -> jit train_step -> Orbax checkpoint -> restore."""
  from dlfunc import data, models, optim, train
  m = R.assignment.module
  ported = ref_ns["port_torch_cnn"](m.state_dict("torch_cnn"))
  tr, te = data.load("digits", "train"), data.load("digits", "test")
  state = train.create_train_state(models.CNN(), optim.sgd(0.05), tr.x[:1], jax.random.key(0))
  state = state.replace(params=jax.tree_util.tree_map(jnp.asarray, ported["params"]))
  before = train.evaluate(state, te)["accuracy"]
  assert abs(before - float(m.fixtures()["torch_cnn_accuracy"])) < 1.5 / len(te.y)
  step = jax.jit(train.train_step)
  for xb, yb in data.batches(tr.x, tr.y, 32, seed=0, epoch=0):
    state, _ = step(state, (xb, yb))
  after = train.evaluate(state, te)["accuracy"]
  assert after >= before - 0.02
  ckpt = train.Checkpointer(tmp_path)
  ckpt.save(1, state, {"source": "torch"})
  restored, meta = ckpt.restore_latest(state)
  assert meta["source"] == "torch"
  for a, b in zip(jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(restored.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
