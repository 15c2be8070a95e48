"""The seed models (MLP, CNN, LeNet): shapes, parameter counts, train/eval behaviour, errors, Keras parity."""
import math

import flax.errors
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlfunc import nn
from dlfunc.models import CNN, MLP, LeNet

DIGITS = (8, 8, 1)  # the embedded data set's images


def _x(n=4, shape=DIGITS, seed=0):
  return jnp.asarray(np.random.RandomState(seed).rand(n, *shape).astype(np.float32))


def _count(tree):
  return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree))


@pytest.fixture(scope="module")
def lenet():
  model = LeNet()
  return model, jax.jit(model.init)(jax.random.key(0), _x(1))


# ----------------------------------------------------------------- shapes and parameter counts


@pytest.mark.parametrize("model,shape,expected", [
    (MLP(), DIGITS, 64 * 128 + 128 + 128 * 10 + 10),
    (MLP(hidden=(32, 16), num_classes=3), DIGITS, 64 * 32 + 32 + 32 * 16 + 16 + 16 * 3 + 3),
    (MLP(), (28, 28, 1), 784 * 128 + 128 + 128 * 10 + 10),  # the seed's MNIST MLP
    (CNN(), DIGITS, 3 * 3 * 1 * 32 + 32 + 6 * 6 * 32 * 10 + 10),
    (CNN(), (28, 28, 1), 3 * 3 * 1 * 32 + 32 + 26 * 26 * 32 * 10 + 10),  # the seed's MNIST CNN
    # LeNet: two bias-free SAME convs with batch norm (scale, bias) and 2x2 SAME pools: 8 -> 4 -> 2.
    (LeNet(), DIGITS, 3 * 3 * 1 * 32 + 2 * 32 + 3 * 3 * 32 * 64 + 2 * 64 + 2 * 2 * 64 * 128 + 128 + 128 * 10 + 10),
], ids=["mlp_digits", "mlp_custom", "mlp_mnist", "cnn_digits", "cnn_mnist", "lenet_digits"])
def test_init_apply_shapes_and_parameter_count(model, shape, expected):
  variables = jax.eval_shape(model.init, jax.random.key(0), _x(1, shape))  # shapes only: no compute
  assert _count(variables["params"]) == expected
  logits = jax.eval_shape(model.apply, variables, _x(5, shape))
  assert logits.shape == (5, getattr(model, "num_classes", 10)) and logits.dtype == jnp.float32


def test_mlp_flattens_any_input_and_returns_logits():
  model = MLP()
  variables = jax.jit(model.init)(jax.random.key(0), _x(1))
  x = _x(3)
  y, y3, y2 = jax.jit(lambda v, x: [model.apply(v, x), model.apply(v, x.reshape(3, 8, 8)),
                                    model.apply(v, x.reshape(3, 64))])(variables, x)
  np.testing.assert_allclose(y3, y, rtol=1e-6)
  np.testing.assert_allclose(y2, y, rtol=1e-6)
  p = variables["params"]
  manual = nn.dense(p["Dense_1"], nn.relu(nn.dense(p["Dense_0"], x.reshape(3, 64))))
  np.testing.assert_allclose(y, manual, rtol=1e-6)  # logits: no softmax inside
  assert set(variables) == {"params"}


def test_cnn_accepts_images_without_a_channel_axis():
  model = CNN()
  variables = jax.jit(model.init)(jax.random.key(0), _x(1))
  apply = jax.jit(model.apply)
  np.testing.assert_allclose(apply(variables, _x(2).reshape(2, 8, 8)), apply(variables, _x(2)), rtol=1e-6)


# ----------------------------------------------------------------- LeNet train / eval


def test_lenet_train_updates_batch_stats_and_needs_a_dropout_rng(lenet):
  model, variables = lenet
  x = _x(16)
  logits, updates = jax.jit(lambda v, x, key: model.apply(v, x, train=True, rngs={"dropout": key},
                                                          mutable=["batch_stats"]))(variables, x, jax.random.key(1))
  assert logits.shape == (16, 10)
  old, new = variables["batch_stats"], updates["batch_stats"]
  assert jax.tree_util.tree_structure(old) == jax.tree_util.tree_structure(new)
  # The first batch norm sees the first conv's output: its running mean moves 10% (momentum 0.9) of the way.
  h = nn.conv2d(variables["params"]["Conv_0"], x, padding="SAME")
  np.testing.assert_allclose(new["BatchNorm_0"]["mean"], 0.9 * old["BatchNorm_0"]["mean"] + 0.1 * h.mean((0, 1, 2)),
                             rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(new["BatchNorm_0"]["var"], 0.9 * old["BatchNorm_0"]["var"] + 0.1 * h.var((0, 1, 2)),
                             rtol=1e-4, atol=1e-6)
  assert not np.allclose(new["BatchNorm_1"]["mean"], old["BatchNorm_1"]["mean"])
  with pytest.raises(flax.errors.InvalidRngError, match="dropout"):
    jax.eval_shape(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]), variables, x)
  with pytest.raises(flax.errors.ModifyScopeVariableError, match="batch_stats"):
    jax.eval_shape(lambda v, x: model.apply(v, x, train=True, rngs={"dropout": jax.random.key(1)}), variables, x)


def test_lenet_dropout_keys_and_eval_determinism(lenet):
  model, variables = lenet
  x = _x(8)
  train = jax.jit(lambda v, x, key: model.apply(v, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"])[0])
  a, b = train(variables, x, jax.random.key(1)), train(variables, x, jax.random.key(2))
  np.testing.assert_array_equal(a, train(variables, x, jax.random.key(1)))
  assert not np.allclose(a, b)  # dropout is on in training
  evaluate = jax.jit(lambda v, x: model.apply(v, x, train=False))
  y = evaluate(variables, x)
  np.testing.assert_array_equal(y, evaluate(variables, x))  # no rng and no mutable collection needed
  # Eval uses the running statistics: per-example outputs don't depend on the rest of the batch.
  np.testing.assert_allclose(evaluate(variables, x[:1]), y[:1], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------- errors


def test_wrong_rank_is_a_clear_value_error():
  model = CNN()
  variables = jax.eval_shape(model.init, jax.random.key(0), _x(1))
  with pytest.raises(ValueError, match=r"CNN expects images shaped \(batch, height, width, channels\).* got shape "
                                       r"\(8, 8\)"):
    model.apply(variables, jnp.ones((8, 8)))


@pytest.mark.parametrize("model", [MLP(), CNN(), LeNet()], ids=["mlp", "cnn", "lenet"])
def test_wrong_input_shape_at_apply_names_expected_and_got(model):
  variables = jax.eval_shape(model.init, jax.random.key(0), _x(1))
  with pytest.raises(ValueError, match=r"expected.*got") as info:
    jax.eval_shape(model.apply, variables, _x(2, (28, 28, 3)))
  assert "\n" not in str(info.value)


# ----------------------------------------------------------------- Keras parity


def _keras():
  keras = pytest.importorskip("keras")
  if keras.backend.backend() != "jax":
    pytest.skip(f"Keras runs on {keras.backend.backend()!r}; this parity test needs KERAS_BACKEND=jax")
  return keras


def test_seed_mlp_matches_keras_sequential():
  """The seed's Keras model, Sequential([Flatten, Dense(128, relu), Dense(10, softmax)]), with dlfunc's weights."""
  keras = _keras()
  model = MLP()
  variables = jax.jit(model.init)(jax.random.key(0), _x(1))
  p = variables["params"]
  seq = keras.Sequential([keras.Input(DIGITS), keras.layers.Flatten(), keras.layers.Dense(128, activation="relu"),
                          keras.layers.Dense(10, activation="softmax")])
  for layer, name in zip(seq.layers[1:], ["Dense_0", "Dense_1"]):
    layer.kernel.assign(p[name]["kernel"])
    layer.bias.assign(p[name]["bias"])
  x = _x(7, seed=3)
  logits = jax.jit(model.apply)(variables, x)
  probs = np.asarray(seq(x))
  np.testing.assert_allclose(nn.softmax(logits), probs, rtol=1e-5, atol=1e-6)
  # Keras' pre-softmax output: the same logits.
  pre = keras.Sequential(seq.layers[:-1] + [keras.layers.Dense(10)])
  pre.layers[-1].build((None, 128))
  pre.layers[-1].kernel.assign(p["Dense_1"]["kernel"])
  pre.layers[-1].bias.assign(p["Dense_1"]["bias"])
  np.testing.assert_allclose(logits, np.asarray(pre(x)), rtol=1e-5, atol=1e-5)


def test_seed_cnn_matches_keras_sequential():
  keras = _keras()
  model = CNN()
  variables = jax.jit(model.init)(jax.random.key(0), _x(1))
  p = variables["params"]
  seq = keras.Sequential([keras.Input(DIGITS), keras.layers.Conv2D(32, 3, activation="relu"),
                          keras.layers.Flatten(), keras.layers.Dense(10)])
  for layer, name in zip([seq.layers[0], seq.layers[2]], ["Conv_0", "Dense_0"]):
    layer.kernel.assign(p[name]["kernel"])  # HWIO and (in, out): Keras' layouts too
    layer.bias.assign(p[name]["bias"])
  x = _x(5, seed=4)
  np.testing.assert_allclose(jax.jit(model.apply)(variables, x), np.asarray(seq(x)), rtol=1e-5, atol=1e-5)
