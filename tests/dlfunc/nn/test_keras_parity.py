"""dlfunc.nn layers against Keras 3 layers on the JAX backend, with the weights copied across.

One table drives the forward parity: (id, Keras layer factory, input shape,
weights in Keras' order, the dlfunc call on those weights, rtol, atol). Keras
stores Dense and Conv2D kernels as (in, out) and HWIO, like dlfunc, so weights
copy across without transposes. Batch normalization, whose training call also
updates Keras' moving statistics, has its own tests below.
"""
import numpy as np
import pytest

from dlfunc import nn

keras = pytest.importorskip("keras")
if keras.backend.backend() != "jax":  # conftest sets KERAS_BACKEND=jax before Keras is imported
  pytest.skip(f"Keras runs on {keras.backend.backend()!r}; these parity tests need KERAS_BACKEND=jax",
              allow_module_level=True)


def _rand(seed, *shape, scale=1.0):
  return (scale * np.random.RandomState(seed).randn(*shape)).astype(np.float32)


def _conv(strides=1, padding="valid", dilation=1, hw=(9, 8)):
  def ours(w, x):
    return nn.conv2d({"kernel": w[0], "bias": w[1]}, x, strides=strides, padding=padding, dilation=dilation)
  return (lambda: keras.layers.Conv2D(6, 3, strides=strides, padding=padding, dilation_rate=dilation),
          (2, *hw, 4), [_rand(1, 3, 3, 4, 6), _rand(2, 6)], ours, 1e-5, 1e-5)


def _pool(kind, pool_size=2, strides=None, padding="valid", hw=(7, 6)):
  layer = keras.layers.MaxPooling2D if kind == "max" else keras.layers.AveragePooling2D
  f = nn.max_pool if kind == "max" else nn.avg_pool  # avg_pool excludes padded cells, as Keras does
  return (lambda: layer(pool_size, strides=strides, padding=padding), (2, *hw, 3), [],
          lambda w, x: f(x, pool_size, strides, padding), 1e-6, 1e-6)


# (id, Keras layer factory, input shape, weights in Keras' order, dlfunc(weights, x), rtol, atol)
KERAS_LAYERS = [
    ("Dense", lambda: keras.layers.Dense(5), (4, 3), [_rand(1, 3, 5), _rand(2, 5)],
     lambda w, x: nn.dense({"kernel": w[0], "bias": w[1]}, x), 1e-5, 1e-5),
    ("Dense_3d_input", lambda: keras.layers.Dense(5), (2, 4, 3), [_rand(1, 3, 5), _rand(2, 5)],
     lambda w, x: nn.dense({"kernel": w[0], "bias": w[1]}, x), 1e-5, 1e-5),
    ("Conv2D_valid", *_conv()),
    ("Conv2D_same_stride2", *_conv(strides=2, padding="same")),
    ("Conv2D_same_stride_2x1", *_conv(strides=(2, 1), padding="same")),
    ("Conv2D_valid_dilation2", *_conv(dilation=2, hw=(10, 9))),
    ("Conv2D_same_dilation_1x2", *_conv(dilation=(1, 2), padding="same")),
    ("MaxPooling2D_valid", *_pool("max")),
    ("MaxPooling2D_same_3x3_s2", *_pool("max", 3, 2, "same")),
    ("MaxPooling2D_same_odd", *_pool("max", 2, None, "same")),
    ("AveragePooling2D_valid", *_pool("avg")),
    ("AveragePooling2D_same_3x3_s2", *_pool("avg", 3, 2, "same")),
    ("AveragePooling2D_same_odd", *_pool("avg", 2, None, "same")),
    ("AveragePooling2D_valid_s1", *_pool("avg", (3, 2), (1, 1), "valid")),
    ("LayerNormalization", lambda: keras.layers.LayerNormalization(epsilon=1e-3), (4, 6, 10),
     [1 + _rand(1, 10, scale=0.1), _rand(2, 10)],
     lambda w, x: nn.layer_norm({"scale": w[0], "bias": w[1]}, x, eps=1e-3), 1e-5, 1e-5),
    ("BatchNormalization_inference", lambda: keras.layers.BatchNormalization(epsilon=1e-3), (8, 5, 5, 3),
     [1 + _rand(1, 3, scale=0.1), _rand(2, 3), _rand(4, 3), 1 + np.abs(_rand(5, 3))],
     lambda w, x: nn.batch_norm({"scale": w[0], "bias": w[1]}, {"mean": w[2], "var": w[3]}, x,
                                train=False, eps=1e-3)[0], 1e-5, 1e-5),
    ("Dropout_inference", lambda: keras.layers.Dropout(0.5), (4, 6), [],
     lambda w, x: nn.dropout(x, 0.5, train=False), 0, 0),
    ("Flatten", lambda: keras.layers.Flatten(), (2, 3, 4, 5), [], lambda w, x: nn.flatten(x), 0, 0),
]
IDS = [row[0] for row in KERAS_LAYERS]


def _keras_layer(factory, input_shape, weights):
  layer = factory()
  layer.build(input_shape)
  # Assign variable by variable (layer.get_weights() goes through a NumPy-2-deprecated __array__).
  assert [tuple(v.shape) for v in layer.weights] == [w.shape for w in weights], "Keras' weight layout changed"
  for v, w in zip(layer.weights, weights):
    v.assign(w)
  return layer


@pytest.mark.parametrize("name,factory,shape,weights,ours,rtol,atol", KERAS_LAYERS, ids=IDS)
def test_matches_keras_layer(name, factory, shape, weights, ours, rtol, atol):
  layer = _keras_layer(factory, shape, weights)
  x = _rand(3, *shape, scale=2.0)
  expected = np.asarray(layer(x, training=False))
  got = np.asarray(ours(weights, x))
  assert got.shape == expected.shape, f"{name}: dlfunc {got.shape}, Keras {expected.shape}"
  np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


def test_embedding_matches_keras():
  table = _rand(1, 11, 4)
  layer = _keras_layer(lambda: keras.layers.Embedding(11, 4), (3, 5), [table])
  ids = np.random.RandomState(0).randint(0, 11, size=(3, 5)).astype(np.int32)
  np.testing.assert_array_equal(nn.embedding({"embedding": table}, ids), np.asarray(layer(ids)))


@pytest.mark.parametrize("shape", [(16, 7), (8, 5, 5, 3)], ids=["dense_features", "nhwc"])
def test_batch_normalization_training_and_moving_statistics_match_keras(shape):
  c = shape[-1]
  gamma, beta = 1 + _rand(1, c, scale=0.1), _rand(2, c)
  mean, var = _rand(4, c), 1 + np.abs(_rand(5, c))
  layer = _keras_layer(lambda: keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-3), shape,
                       [gamma, beta, mean, var])
  params, stats = {"scale": gamma, "bias": beta}, {"mean": mean, "var": var}
  for step in range(3):  # three training steps: the moving statistics must track Keras' step by step
    x = 2.0 + _rand(10 + step, *shape, scale=3.0)
    expected = np.asarray(layer(x, training=True))
    y, stats = nn.batch_norm(params, stats, x, train=True, momentum=0.9, eps=1e-3)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats["mean"], np.asarray(layer.moving_mean.value), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["var"], np.asarray(layer.moving_variance.value), rtol=1e-5, atol=1e-6)
  # Inference then uses the moving statistics in both.
  x = _rand(20, *shape)
  y, unchanged = nn.batch_norm(params, stats, x, train=False, eps=1e-3)
  np.testing.assert_allclose(y, np.asarray(layer(x, training=False)), rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(unchanged["mean"], stats["mean"])


def test_dropout_training_statistics_match_keras():
  # Masks come from different generators, so compare what both promise: rate dropped, survivors scaled.
  x = np.ones((100, 400), np.float32)
  import jax
  ours = np.asarray(nn.dropout(x, 0.3, key=jax.random.key(0)))
  theirs = np.asarray(keras.layers.Dropout(0.3, seed=0)(x, training=True))
  for y in (ours, theirs):
    assert abs((y == 0).mean() - 0.3) < 0.012
    np.testing.assert_allclose(np.unique(y), [0.0, 1 / 0.7], rtol=1e-6)
