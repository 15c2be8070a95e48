"""Mixed precision: ``dtype`` (compute) and ``param_dtype`` (parameters) from dlfunc.nn up to fit.

float32 stays bit-for-bit what it was (the parity tests elsewhere run unchanged); these tests check what
bfloat16 compute does: the matmuls and convolutions really run in bfloat16, parameters and their gradients
stay float32, normalisation statistics and losses are float32, and training reaches float32's accuracy.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlfunc import data, losses, models, nn, optim
from dlfunc.train import fit

BF16 = jnp.bfloat16


def _rand(seed, *shape):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def test_dense_and_conv_compute_in_the_dtype_asked_and_send_float32_gradients_to_float32_params():
  x, w, b = _rand(0, 4, 16), _rand(1, 16, 8), _rand(2, 8)
  p = {"kernel": w, "bias": b}
  assert nn.dense(p, x).dtype == jnp.float32
  np.testing.assert_array_equal(nn.dense(p, x, dtype=jnp.float32), nn.dense(p, x))  # no dtype: as before
  y = nn.dense(p, x, dtype=BF16)
  assert y.dtype == BF16
  np.testing.assert_allclose(np.asarray(y, np.float32), nn.dense(p, x), rtol=3e-2, atol=3e-2)
  g = jax.grad(lambda p: jnp.sum(nn.dense(p, x, dtype=BF16).astype(jnp.float32)))(p)
  assert g["kernel"].dtype == g["bias"].dtype == jnp.float32
  img, k = _rand(3, 2, 9, 9, 3), _rand(4, 3, 3, 3, 5)
  cp = {"kernel": k, "bias": _rand(5, 5)}
  for pad in ("SAME", ((0, 0), (0, 0))):
    yc = nn.conv2d(cp, img, padding=pad, dtype=BF16)
    assert yc.dtype == BF16
    np.testing.assert_allclose(np.asarray(yc, np.float32), nn.conv2d(cp, img, padding=pad), rtol=5e-2, atol=5e-2)
  small = _rand(6, 2, 2, 2, 3)  # maps smaller than the kernel: the im2col path
  assert nn.conv2d(cp, small, padding="SAME", dtype=BF16).dtype == BF16


def test_layer_norm_statistics_in_float32_for_bfloat16_inputs():
  # A large common offset: in bfloat16 the mean and variance would lose the small differences entirely.
  x = (1000.0 + _rand(0, 3, 64)).astype(BF16)
  y = nn.layer_norm({"scale": jnp.ones(64), "bias": jnp.zeros(64)}, x)
  assert y.dtype == BF16
  ref = nn.layer_norm({}, x.astype(jnp.float32))
  np.testing.assert_allclose(np.asarray(y, np.float32), ref, atol=0.05)


def test_losses_upcast_16_bit_logits_to_float32():
  logits, labels = _rand(0, 32, 10).astype(BF16), jnp.arange(32) % 10
  got = losses.sparse_softmax_cross_entropy(logits, labels)
  assert got.dtype == jnp.float32
  np.testing.assert_array_equal(got, losses.sparse_softmax_cross_entropy(logits.astype(jnp.float32), labels))
  assert losses.mse(logits, logits.astype(jnp.float32) + 1).dtype == jnp.float32


@pytest.mark.parametrize("model, x", [
    (models.MLP(), jnp.ones((2, 8, 8, 1))),
    (models.LeNet(), jnp.ones((2, 8, 8, 1))),
    (models.RNNClassifier("gru", hidden_size=8), jnp.ones((2, 5, 3))),
    (models.BertForSequenceClassification(models.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=16)), jnp.ones((2, 5), jnp.int32)),
], ids=["mlp", "lenet", "gru", "bert"])
def test_models_take_dtype_and_param_dtype(model, x):
  f32 = jax.eval_shape(model.init, jax.random.key(0), x)
  mixed = model.clone(dtype=BF16)
  v = jax.jit(mixed.init)(jax.random.key(0), x)
  # the same float32 parameters (master copies) whatever the compute dtype; batch statistics float32 too
  assert jax.tree.map(lambda a: (a.shape, a.dtype), v) == jax.tree.map(lambda a: (a.shape, a.dtype), f32)
  y = jax.jit(mixed.apply)(v, x)
  assert y.dtype == BF16
  ref = jax.jit(model.apply)(v, x)
  np.testing.assert_allclose(np.asarray(y, np.float32), ref, atol=0.1 * float(jnp.abs(ref).max()) + 0.05)
  half = jax.eval_shape(model.clone(param_dtype=BF16).init, jax.random.key(0), x)
  assert {a.dtype for a in jax.tree.leaves(half["params"])} == {jnp.dtype(BF16)}


def test_batch_norm_keeps_float32_running_statistics_under_bfloat16_compute():
  model = models.LeNet(dtype=BF16)
  x = _rand(0, 4, 8, 8, 1)
  v = jax.jit(model.init)(jax.random.key(0), x)
  _, upd = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"],
                                            rngs={"dropout": jax.random.key(1)}))(v, x)
  assert {a.dtype for a in jax.tree.leaves(upd)} == {jnp.dtype(jnp.float32)}


def test_predictor_takes_a_compute_dtype():
  model = models.CNN()
  x = _rand(0, 3, 8, 8, 1)
  v = model.init(jax.random.key(0), x)
  y = models.Predictor(model, v, autotune=False, dtype=BF16)(x)
  assert y.dtype == BF16
  np.testing.assert_allclose(np.asarray(y, np.float32), model.apply(v, x), atol=0.05 * float(jnp.abs(y).max()))


@pytest.mark.slow
@pytest.mark.parametrize("model", [models.MLP(), models.LeNet()], ids=["mlp", "lenet"])
def test_bfloat16_compute_trains_the_seed_models_to_float32_accuracy(model, tmp_path_factory):
  """The issue's bar: same seed and epochs, test accuracy within 0.5 points of float32's."""
  d = str(tmp_path_factory.mktemp("tfds"))
  train, test = data.load("digits", "train", d), data.load("digits", "test", d)
  acc = {}
  for dtype in (jnp.float32, BF16):
    state, history = fit(model.clone(dtype=dtype), train, eval_data=test, optimizer=optim.adam(1e-3), epochs=3,
                         batch_size=32, seed=0, progress=False)
    assert {a.dtype for a in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}  # float32 master params
    acc[dtype] = history[-1]["val_accuracy"]
  assert acc[jnp.float32] > 0.85, acc  # a trained model, not two equal failures
  assert abs(acc[BF16] - acc[jnp.float32]) <= 0.005, acc
