"""load_keras: parity with keras.applications (Keras 3 on the JAX backend, weights=None) and Keras files.

The Keras models are built once per module (building one costs seconds).
BatchNorm statistics and biases are randomised, so the test exercises them.
"""
import os
import warnings

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from dlfunc.pretrained import WeightLoadError, load_keras  # noqa: E402

keras = pytest.importorskip("keras", reason="Keras 3 is not installed")


def _randomise(kmodel, seed=0):
  rng = np.random.default_rng(seed)
  values = []
  for w in kmodel.weights:
    v = keras.ops.convert_to_numpy(w.value)
    if w.path.endswith("moving_variance") or w.path.endswith("gamma"):
      v = rng.uniform(0.5, 1.5, v.shape)
    elif w.path.endswith(("moving_mean", "beta", "bias")):
      v = rng.normal(0, 0.1, v.shape)
    values.append(v.astype(np.float32))
  kmodel.set_weights(values)
  return kmodel


def _rel(out, ref):
  return float(np.abs(np.asarray(out) - np.asarray(ref)).max() / np.abs(np.asarray(ref)).max())


@pytest.fixture(scope="module")
def keras_resnet50():
  return _randomise(keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classifier_activation=None))


@pytest.mark.slow
def test_resnet50_logits_match_keras(keras_resnet50):
  x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype(np.float32)
  ref = keras_resnet50(x, training=False)
  model, variables = load_keras(keras_resnet50)
  assert model.variant == "keras" and model.num_classes == 1000
  out = model.apply(variables, jnp.asarray(x), train=False)
  assert _rel(out, ref) < 1e-4


@pytest.mark.slow
def test_resnet50_new_head_and_no_head(keras_resnet50):
  x = np.random.default_rng(2).normal(size=(1, 32, 32, 3)).astype(np.float32)
  model, variables = load_keras(keras_resnet50, num_classes=0)
  feats = model.apply(variables, jnp.asarray(x))
  pooled = keras.Model(keras_resnet50.input, keras_resnet50.get_layer("avg_pool").output)(x)
  assert feats.shape == (1, 2048) and _rel(feats, pooled) < 1e-4
  headless = _randomise(keras.applications.ResNet50(weights=None, include_top=False, pooling="avg",
                                                    input_shape=(32, 32, 3)))
  model_h, variables_h = load_keras(headless)
  assert model_h.num_classes == 0 and "fc" not in variables_h["params"]
  assert _rel(model_h.apply(variables_h, jnp.asarray(x)), headless(x)) < 1e-4
  model5, variables5 = load_keras(keras_resnet50, num_classes=5)
  assert variables5["params"]["fc"]["kernel"].shape == (2048, 5)
  np.testing.assert_array_equal(variables5["params"]["conv1"]["kernel"], variables["params"]["conv1"]["kernel"])


def test_vgg16_features_match_keras_without_top():
  kmodel = _randomise(keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3)))
  x = np.random.default_rng(3).normal(size=(2, 32, 32, 3)).astype(np.float32)
  model, variables = load_keras(kmodel)
  assert not model.include_top
  assert _rel(model.apply(variables, jnp.asarray(x)), kmodel(x)) < 1e-4


@pytest.mark.slow
def test_vgg16_logits_match_keras_at_224():
  kmodel = _randomise(keras.applications.VGG16(weights=None, classifier_activation=None))
  x = np.random.default_rng(4).uniform(0, 1, size=(1, 224, 224, 3)).astype(np.float32)
  model, variables = load_keras(kmodel)
  assert _rel(model.apply(variables, jnp.asarray(x)), kmodel(x)) < 1e-4


def test_saved_keras_file_round_trip_and_truncated_file(tmp_path):
  kmodel = _randomise(keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3)))
  path = tmp_path / "vgg16.keras"
  with warnings.catch_warnings():  # Keras 3.15's own saver trips numpy 2's __array__(copy=) deprecation
    warnings.simplefilter("ignore", DeprecationWarning)
    kmodel.save(path)
  _, variables = load_keras(path)
  np.testing.assert_array_equal(variables["params"]["block5_conv3"]["kernel"],
                                keras.ops.convert_to_numpy(kmodel.get_layer("block5_conv3").kernel.value))
  data = path.read_bytes()
  bad = tmp_path / "cut.keras"
  bad.write_bytes(data[: len(data) // 3])
  with pytest.raises(WeightLoadError, match="truncated"):
    load_keras(bad)


def test_unknown_keras_model_is_a_clear_error():
  inp = keras.Input((4,))
  m = keras.Model(inp, keras.layers.Dense(2)(inp), name="mystery")
  with pytest.raises(ValueError, match="cannot tell the architecture of Keras model 'mystery'"):
    load_keras(m)
