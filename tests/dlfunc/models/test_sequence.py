"""RNNClassifier and CNN1D: parameter books, parity with Keras models built from the same weights,
bad-input errors, and (slow) training on digits-seq through dlfunc.train.fit."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlfunc import models, nn

keras = pytest.importorskip("keras")
RTOL, ATOL = 1e-5, 1e-5


def _randomize(variables, seed=0):
  leaves, tree = jax.tree_util.tree_flatten(variables)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree_util.tree_unflatten(tree, [0.3 * jax.random.normal(k, a.shape) for k, a in zip(keys, leaves)])


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_rnn_classifier_matches_keras(cell, bidirectional):
  x = np.random.default_rng(0).normal(size=(3, 8, 8)).astype(np.float32)
  m = models.RNNClassifier(cell, hidden_size=5, num_classes=4, num_layers=2, bidirectional=bidirectional)
  v = _randomize(m.init(jax.random.key(0), x))
  layer_cls = {"gru": keras.layers.GRU, "lstm": keras.layers.LSTM, "rnn": keras.layers.SimpleRNN}[cell]
  p = v["params"]
  seq = [keras.Input((8, 8))]
  for k in range(2):
    inner = layer_cls(5, return_sequences=k == 0)
    seq.append(keras.layers.Bidirectional(inner) if bidirectional else inner)
  seq.append(keras.layers.Dense(4))
  km = keras.Sequential(seq)
  for k in range(2):
    lp = p[f"layer_{k}"]
    w = (nn.to_keras(cell, lp["forward"]) + nn.to_keras(cell, lp["backward"]) if bidirectional
         else nn.to_keras(cell, lp))
    km.layers[k].set_weights(w)
  km.layers[2].set_weights([np.asarray(p["head"]["kernel"]), np.asarray(p["head"]["bias"])])
  np.testing.assert_allclose(m.apply(v, x), km(x), rtol=RTOL, atol=ATOL)


def test_rnn_classifier_readouts_and_mask():
  x = jax.random.normal(jax.random.key(1), (4, 6, 3))
  mask = jnp.arange(6)[None] < jnp.array([[6], [3], [1], [5]])
  for readout in ("last", "mean", "all"):
    m = models.RNNClassifier("gru", hidden_size=7, num_classes=2, readout=readout)
    v = m.init(jax.random.key(0), x)
    assert m.apply(v, x).shape == (4, 2)
    # padding must not change a sequence's logits
    y = m.apply(v, x, mask=mask)
    x_pad = x.at[1, 3:].set(100.0)
    if readout != "all":
      np.testing.assert_allclose(m.apply(v, x_pad, mask=mask)[1], y[1], rtol=1e-5, atol=1e-6)
  m = models.RNNClassifier("lstm", hidden_size=4, num_classes=3)
  v = m.init(jax.random.key(0), jnp.ones((2, 5)))  # (N, T) means one feature
  assert v["params"]["layer_0"]["kernel"].shape == (1, 16)
  np.testing.assert_array_equal(v["params"]["layer_0"]["bias"][4:8], np.ones(4))  # forget-gate bias


def test_cnn1d_matches_torch_style_keras():
  x = np.random.default_rng(0).normal(size=(2, 8, 8)).astype(np.float32)
  m = models.CNN1D(channels=(6, 4), kernel_sizes=(3, 5), strides=(1, 2), padding="SAME", num_classes=3)
  v = _randomize(m.init(jax.random.key(0), x))
  km = keras.Sequential([keras.Input((8, 8)), keras.layers.Conv1D(6, 3, padding="same", activation="relu"),
                         keras.layers.Conv1D(4, 5, strides=2, padding="same", activation="relu"),
                         keras.layers.Flatten(), keras.layers.Dense(3)])
  p = v["params"]
  for i, name in enumerate(["Conv_0", "Conv_1", "Dense_0"]):
    km.layers[i if i < 2 else 3].set_weights([np.asarray(p[name]["kernel"]), np.asarray(p[name]["bias"])])
  np.testing.assert_allclose(m.apply(v, x), km(x), rtol=RTOL, atol=ATOL)


def test_cnn1d_int_padding_and_2d_input():
  m = models.CNN1D(channels=(4,), kernel_sizes=3, padding=1, num_classes=5)
  v = m.init(jax.random.key(0), jnp.ones((2, 10)))
  assert v["params"]["Conv_0"]["kernel"].shape == (3, 1, 4)
  assert v["params"]["Dense_0"]["kernel"].shape == (40, 5)  # length kept by padding=1


def test_bad_inputs_are_one_line_errors():
  m = models.RNNClassifier("gru", hidden_size=4)
  with pytest.raises(ValueError, match=r"\(batch, time, features\).*got shape \(2, 3, 4, 5\)") as e:
    m.init(jax.random.key(0), jnp.ones((2, 3, 4, 5)))
  assert "\n" not in str(e.value)
  v = m.init(jax.random.key(0), jnp.ones((2, 8, 8)))
  with pytest.raises(ValueError, match="input has 5 features .* built for 8"):
    m.apply(v, jnp.ones((2, 8, 5)))
  with pytest.raises(ValueError, match=r"mask has shape \(2, 7\), expected \(2, 8\)"):
    m.apply(v, jnp.ones((2, 8, 8)), mask=jnp.ones((2, 7), bool))
  with pytest.raises(ValueError, match="unknown recurrent cell 'transformer'.*'rnn', 'lstm', 'gru'"):
    models.RNNClassifier("transformer").init(jax.random.key(0), jnp.ones((1, 8, 8)))
  with pytest.raises(ValueError, match="readout must be 'last', 'mean' or 'all', got 'max'"):
    models.RNNClassifier(readout="max").init(jax.random.key(0), jnp.ones((1, 8, 8)))
  with pytest.raises(ValueError, match=r"CNN1D: kernel_sizes needs one entry per conv layer \(2\)"):
    models.CNN1D(kernel_sizes=(3,)).init(jax.random.key(0), jnp.ones((1, 8, 8)))


# --- training on digits-seq (real data; dlfunc.train.fit) ----------------------------------------------

@pytest.fixture(scope="module")
def digits_seq():
  from dlfunc import data
  return data.load("digits-seq", "train"), data.load("digits-seq", "test")


def _train_accuracy(model, digits_seq, epochs, lr):
  import optax
  from dlfunc import optim
  from dlfunc.train import evaluate, fit
  train, test = digits_seq
  schedule = optax.cosine_decay_schedule(lr, epochs * (len(train) // 32))
  state, _ = fit(model, train, optimizer=optim.adam(schedule), epochs=epochs, batch_size=32, seed=0,
                 progress=False)
  return evaluate(state, test)["accuracy"]


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_recurrent_classifier_reaches_95_percent_on_digits_seq(cell, digits_seq):
  # Measured, seeds 0 / 1: GRU (last) 0.972 / 0.969, LSTM (readout "all") 0.969 / 0.978 test accuracy.
  model = models.RNNClassifier(cell, hidden_size=64, readout="last" if cell == "gru" else "all")
  acc = _train_accuracy(model, digits_seq, epochs=15, lr=5e-3)
  assert acc >= 0.95, f"{cell}: test accuracy {acc:.3f} < 0.95"


@pytest.mark.slow
def test_cnn1d_learns_digits_seq(digits_seq):
  acc = _train_accuracy(models.CNN1D(), digits_seq, epochs=8, lr=3e-3)
  assert acc >= 0.93, f"CNN1D: test accuracy {acc:.3f}"


@pytest.mark.slow
@pytest.mark.parametrize("model", ["rnn", "lstm", "gru", "cnn1d"])
def test_cli_trains_sequence_models(capsys, model):
  from dlfunc import cli
  code = cli.main(["train", "--model", model, "--dataset", "digits-seq", "--epochs", "1", "--no-progress"])
  out, err = capsys.readouterr()
  assert code == 0, err
  assert out.startswith("test accuracy: ") and f"{model} on digits-seq" in out
