"""dlfunc.train: the train state, the jit-compiled steps against a hand-written optax step, fit, bad input.

Tests share one model and one optimizer object so ``train_step`` (whose static
fields include the optimizer) compiles once for the whole file.
"""
import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dlfunc import data, losses, models, optim
from dlfunc.models import BatchNorm, Dense, Dropout
from dlfunc.train import (EarlyStopping, create_train_state, evaluate, fit, train_step)
from dlfunc.train import _fit

MLP = models.MLP()
ADAM = optim.adam(1e-3)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("tfds"))
  return data.load("digits", "train", d), data.load("digits", "test", d)


class TinyBNDropout(linen.Module):
  """Dense -> batch norm -> relu -> dropout -> Dense: exercises batch_stats and the dropout rng."""

  @linen.compact
  def __call__(self, x, train: bool = False):
    x = x.reshape((x.shape[0], -1))
    x = jax.nn.relu(BatchNorm(momentum=0.9)(Dense(16)(x), train=train))
    x = Dropout(0.5)(x, train=train)
    return Dense(10)(x)


def test_create_train_state_holds_the_models_init_params(digits):
  train, _ = digits
  state = create_train_state(MLP, ADAM, train.x[:32], jax.random.PRNGKey(0))
  init_key, _ = jax.random.split(jax.random.PRNGKey(0))
  expected = jax.jit(MLP.init)(init_key, train.x[:32])["params"]
  jax.tree_util.tree_map(np.testing.assert_array_equal, state.params, expected)
  assert int(state.step) == 0 and state.batch_stats == {} and state.input_shape == (8, 8, 1)
  bn = create_train_state(TinyBNDropout(), ADAM, train.x[:32], jax.random.key(0))  # typed keys work too
  assert set(bn.batch_stats) == {"BatchNorm_0"}


def test_train_step_matches_a_hand_written_optax_step(digits):
  """Three steps of dlfunc's train_step == three steps of plain JAX + optax (same init, same batches)."""
  train, _ = digits
  state = create_train_state(MLP, ADAM, train.x[:32], jax.random.PRNGKey(1))
  params = jax.tree_util.tree_map(jnp.copy, state.params)
  tx = optax.adam(1e-3)
  opt_state = tx.init(params)

  @jax.jit
  def reference_step(params, opt_state, x, y):
    def loss(p):
      logits = MLP.apply({"params": p}, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    value, grads = jax.value_and_grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value

  for i in range(3):
    x, y = train.x[32 * i:32 * (i + 1)], train.y[32 * i:32 * (i + 1)]
    state, metrics = train_step(state, (x, y))
    params, opt_state, ref_loss = reference_step(params, opt_state, x, y)
    np.testing.assert_allclose(metrics["loss"], ref_loss, rtol=1e-6)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), state.params, params)
  assert int(state.step) == 3


def test_train_step_donates_the_old_state(digits):
  train, _ = digits
  state = create_train_state(MLP, ADAM, train.x[:32], jax.random.PRNGKey(0))
  old_kernel = state.params["Dense_0"]["kernel"]
  new, _ = train_step(state, (train.x[:32], train.y[:32]))
  assert old_kernel.is_deleted(), "train_step must donate the state's buffers"
  assert not new.params["Dense_0"]["kernel"].is_deleted()


def test_train_step_updates_batch_stats_and_draws_dropout_per_step(digits):
  train, _ = digits
  state = create_train_state(TinyBNDropout(), ADAM, train.x[:32], jax.random.PRNGKey(0))
  before = np.asarray(state.batch_stats["BatchNorm_0"]["mean"]).copy()
  batch = (train.x[:32], train.y[:32])
  state, m1 = train_step(state, batch)
  assert not np.allclose(before, state.batch_stats["BatchNorm_0"]["mean"])
  assert {"loss", "accuracy"} == set(m1)
  # Same key, same step -> same dropout mask -> same loss (a pure function of the state).
  s_a = create_train_state(TinyBNDropout(), ADAM, train.x[:32], jax.random.PRNGKey(5))
  s_b = create_train_state(TinyBNDropout(), ADAM, train.x[:32], jax.random.PRNGKey(5))
  _, ma = train_step(s_a, batch)
  _, mb = train_step(s_b, batch)
  assert float(ma["loss"]) == float(mb["loss"])


def test_evaluate_matches_numpy_on_every_example(digits):
  train, test = digits
  state = create_train_state(MLP, ADAM, train.x[:32], jax.random.PRNGKey(0))
  got = evaluate(state, test, batch_size=100)  # 360 = 3 full batches + 60 padded.
  logits = np.asarray(MLP.apply({"params": state.params}, test.x), np.float64)
  logp = logits - logits.max(1, keepdims=True)
  logp -= np.log(np.exp(logp).sum(1, keepdims=True))
  np.testing.assert_allclose(got["loss"], -logp[np.arange(len(test.y)), test.y].mean(), rtol=1e-5)
  assert got["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == test.y), abs=1e-7)


def test_fit_learns_digits_and_reports_history(digits):
  train, test = digits
  state, history = fit(MLP, train, eval_data=test, optimizer=ADAM, epochs=4, batch_size=32, progress=False)
  assert [h["epoch"] for h in history] == [1, 2, 3, 4]
  assert {"loss", "accuracy", "val_loss", "val_accuracy", "seconds", "examples_per_second"} <= set(history[0])
  assert history[-1]["loss"] < history[0]["loss"]
  assert history[-1]["val_accuracy"] > 0.85
  assert int(state.step) == 4 * (len(train) // 32)


def test_fit_compiles_nothing_after_the_first_step(digits, monkeypatch):
  """Counts XLA backend compilations during 150+ steps of fit: all happen before step 1 returns."""
  train, _ = digits
  compiles = []

  def on_event(event, duration, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration":
      compiles.append(event)

  after_step = []
  real_step = _fit.train_step

  def counting_step(state, batch):
    out = real_step(state, batch)
    after_step.append(len(compiles))
    return out

  monkeypatch.setattr(_fit, "train_step", counting_step)
  jax.monitoring.register_event_duration_secs_listener(on_event)
  try:
    cache_before = train_step._cache_size()
    # A fresh optimizer object: train_step must compile once here, then never again.
    fit(MLP, train, optimizer=optim.adam(2e-3), epochs=2, batch_size=16, progress=False)
  finally:
    jax.monitoring.unregister_event_duration_listener(on_event)
  assert len(after_step) == 2 * (len(train) // 16) >= 101
  assert after_step[0] >= 1, "the listener saw no compilation at all: it is not counting"
  assert after_step[-1] == after_step[0], f"recompiled after step 1: {after_step[0]} -> {after_step[-1]}"
  assert train_step._cache_size() == cache_before + 1


def test_fit_with_a_custom_loss_trains_a_regression_without_accuracy(digits):
  train, _ = digits
  x = np.asarray(train.x[:512])
  targets = x.reshape(len(x), -1)  # Reconstruct the 64 pixels: an autoencoder-style target.
  model = models.MLP(hidden=(16,), num_classes=64)
  state, history = fit(model, (x, targets), optimizer=optim.adam(1e-2), epochs=3, batch_size=64,
                       progress=False, loss_fn=losses.mse)
  assert "accuracy" not in history[0]
  assert history[-1]["loss"] < 0.5 * history[0]["loss"]
  ev = evaluate(state, (x, targets))
  assert set(ev) == {"loss"}


def test_early_stopping_stops_when_the_monitored_value_stalls(digits):
  train, _ = digits
  frozen = optax.sgd(0.0)  # Nothing changes: the loss never improves after epoch 1
  # (beyond float noise from summing the batches in a different order: min_delta).
  _, history = fit(MLP, (train.x[:256], train.y[:256]), optimizer=frozen, epochs=10, batch_size=32,
                   progress=False, early_stopping=EarlyStopping(patience=2, monitor="loss", min_delta=1e-6), log=lambda m: None)
  assert len(history) == 3


# ---------------------------------------------------------------------------- bad input: one line each


def _one_line(excinfo):
  msg = str(excinfo.value)
  assert "\n" not in msg, msg
  return msg


@pytest.mark.parametrize("kwargs, match", [
    ({"epochs": 0}, "epochs must be a positive integer, got 0"),
    ({"batch_size": -4}, "batch_size must be a positive integer, got -4"),
    ({"batch_size": 10_000}, "batch_size 10000 is larger than the 1437 training examples"),
    ({"resume": True}, "resume=True needs the workdir"),
])
def test_fit_rejects_bad_arguments(digits, kwargs, match):
  train, _ = digits
  with pytest.raises(ValueError, match=match) as e:
    fit(MLP, train, **{"epochs": 1, "batch_size": 32, "progress": False, **kwargs})
  _one_line(e)


def test_labels_out_of_range_are_rejected(digits):
  train, _ = digits
  y = np.asarray(train.y).copy()
  y[5] = 12
  with pytest.raises(ValueError, match=r"labels must lie in \[0, 9\] for a model with 10 outputs, got labels in "
                                       r"\[0, 12\]") as e:
    fit(MLP, (train.x, y), epochs=1, progress=False)
  _one_line(e)
  with pytest.raises(ValueError, match="needs integer class labels") as e:
    fit(MLP, (train.x, y.astype(np.float32)), epochs=1, progress=False)
  _one_line(e)


def test_wrong_input_shape_names_expected_and_given(digits):
  train, _ = digits
  state = create_train_state(MLP, ADAM, train.x[:32], jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match=r"initialised for inputs of shape \(batch, 8, 8, 1\), got \(32, 28, 28, 1\)") as e:
    train_step(state, (np.zeros((32, 28, 28, 1), np.float32), train.y[:32]))
  _one_line(e)
  with pytest.raises(ValueError, match=r"LeNet cannot take inputs of shape \(4, 64\)") as e:
    create_train_state(models.LeNet(), ADAM, np.zeros((4, 64), np.float32), jax.random.PRNGKey(0))
  _one_line(e)
  with pytest.raises(ValueError, match="eval_data inputs have shape") as e:
    fit(MLP, train, eval_data=(np.zeros((8, 28, 28, 1)), np.zeros(8, np.int32)), epochs=1, progress=False)
  _one_line(e)


# ---------------------------------------------------------------------------- fit's pieces, each on its own


def test_train_epoch_is_train_step_over_the_epochs_batches(digits):
  train, _ = digits
  x, y = np.asarray(train.x[:96]), np.asarray(train.y[:96])
  a = create_train_state(MLP, ADAM, x[:32], jax.random.PRNGKey(3))
  b = create_train_state(MLP, ADAM, x[:32], jax.random.PRNGKey(3))
  a, host = _fit.train_epoch(a, x, y, batch_size=32, seed=1, epoch=2)
  losses = []
  for batch in data.batches(x, y, 32, seed=1, epoch=2):
    b, m = train_step(b, batch)
    losses.append(float(m["loss"]))
  assert [float(h["loss"]) for h in host] == losses and len(losses) == 3
  jax.tree_util.tree_map(np.testing.assert_array_equal, a.params, b.params)
  record = _fit.epoch_record(2, host, seconds=2.0, examples=96, val={"loss": 0.5})
  assert record["epoch"] == 3 and record["loss"] == pytest.approx(np.mean(losses))
  assert record["val_loss"] == 0.5 and record["examples_per_second"] == 48.0 and "accuracy" in record


def test_check_finite_names_the_first_bad_step():
  ok = [{"loss": np.float32(1.0)}] * 4
  _fit.check_finite(ok, None, epoch=0, steps_per_epoch=4, ckpt=None)
  bad = ok[:2] + [{"loss": np.float32(np.nan)}] + ok[:1]
  with pytest.raises(_fit.TrainingDiverged, match=r"NaN/inf at step 7 \(epoch 2\); .*no checkpoint was written"):
    _fit.check_finite(bad, None, epoch=1, steps_per_epoch=4, ckpt=None)


def test_resume_or_start_without_a_workdir_starts_fresh(digits):
  train, _ = digits
  state = create_train_state(MLP, ADAM, train.x[:32], jax.random.PRNGKey(0))
  same, saved = _fit.resume_or_start(None, state, resume=False, log=print)
  assert same is state and saved == {"history": [], "epoch": 0, "early_stopping": None}


def test_train_state_create_and_apply_gradients_equal_train_steps_update(digits):
  """flax.training's API: TrainState.create(apply_fn=, params=, tx=) and .apply_gradients(grads=)."""
  from dlfunc.train import TrainState
  train, _ = digits
  x, y = train.x[:32], train.y[:32]
  made = create_train_state(MLP, ADAM, x, jax.random.PRNGKey(2))
  created = TrainState.create(apply_fn=MLP.apply, params=jax.tree_util.tree_map(jnp.copy, made.params), tx=ADAM)
  assert int(created.step) == 0 and created.batch_stats == {}
  grads = jax.grad(lambda p: losses.sparse_softmax_cross_entropy(MLP.apply({"params": p}, x), y))(created.params)
  manual = created.apply_gradients(grads=grads)
  stepped, _ = train_step(made, (x, y))
  assert int(manual.step) == int(stepped.step) == 1
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8), manual.params,
                         stepped.params)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8), manual.opt_state,
                         stepped.opt_state)


# ---------------------------------------------------------------------------- an open fit (issue 14)


class MaskedMLP(linen.Module):
  """Takes ``(x, mask)``: features the mask zeroes are dropped (as padded tokens would be)."""

  @linen.compact
  def __call__(self, inputs, train: bool = False):
    x, mask = inputs
    return Dense(10)(jax.nn.relu(Dense(32)(x * mask)))


class TwoInputs(linen.Module):
  """Takes ``{"pixels": ..., "extra": ...}``."""

  @linen.compact
  def __call__(self, batch, train: bool = False):
    h = jnp.concatenate([batch["pixels"].reshape(batch["pixels"].shape[0], -1), batch["extra"]], -1)
    return Dense(10)(jax.nn.relu(Dense(32)(h)))


def _flat(split, n):
  x = np.asarray(split.x[:n]).reshape(n, -1)
  return x, np.asarray(split.y[:n])


def test_fit_evaluate_and_predictor_take_a_tuple_input(digits):
  train, test = digits
  (x, y), (tx, ty) = _flat(train, 512), _flat(test, 200)
  mask, tmask = ((np.random.default_rng(0).random(a.shape) < 0.8).astype(np.float32) for a in (x, tx))
  state, history = fit(MaskedMLP(), ((x, mask), y), eval_data=((tx, tmask), ty), optimizer=optim.adam(1e-2),
                       epochs=3, batch_size=64, progress=False)
  assert history[-1]["loss"] < history[0]["loss"] and history[-1]["val_accuracy"] > 0.6
  ev = evaluate(state, ((tx, tmask), ty))
  logits = np.asarray(models.Predictor(MaskedMLP(), state.variables, autotune=False)((tx, tmask)))
  assert ev["accuracy"] == pytest.approx(np.mean(logits.argmax(-1) == ty), abs=1e-7)
  with pytest.raises(ValueError, match="every array needs the same leading") as e:
    fit(MaskedMLP(), ((x, mask[:10]), y), epochs=1, progress=False)
  _one_line(e)


def test_fit_takes_a_dict_input(digits):
  train, _ = digits
  x, y = np.asarray(train.x[:256]), np.asarray(train.y[:256])
  inputs = {"pixels": x, "extra": np.ones((256, 3), np.float32)}
  state, history = fit(TwoInputs(), (inputs, y), optimizer=optim.adam(1e-2), epochs=2, batch_size=32,
                       progress=False)
  assert state.input_shape == ((3,), (8, 8, 1)) and history[-1]["loss"] < history[0]["loss"]
  assert set(evaluate(state, (inputs, y))) == {"loss", "accuracy"}


def test_fit_from_given_variables_with_a_zero_update_changes_nothing(digits):
  train, test = digits
  state, _ = fit(MLP, train, optimizer=ADAM, epochs=1, batch_size=32, progress=False)
  variables = state.variables
  before = evaluate(state, test)
  again, _ = fit(MLP, train, optimizer=optax.set_to_zero(), epochs=1, batch_size=32, progress=False,
                 variables=variables)
  after = evaluate(again, test)
  assert after["accuracy"] == before["accuracy"] > 0.5 and after["loss"] == before["loss"]
  jax.tree_util.tree_map(np.testing.assert_array_equal, again.params, variables["params"])  # still readable
  with pytest.raises(ValueError, match=r"variables do not fit MLP: params/Dense_0/bias is \(128,\) float32 in "
                                       r"variables but \(64,\) float32 in the model") as e:
    fit(models.MLP(hidden=(64,)), train, epochs=1, progress=False, variables=variables)
  _one_line(e)


def test_loss_fn_with_params_and_aux_metrics_fills_the_history(digits):
  train, test = digits

  def loss_fn(outputs, y, params):
    ce = losses.sparse_softmax_cross_entropy(outputs, y)
    l2 = sum(jnp.sum(w ** 2) for w in jax.tree_util.tree_leaves(params))
    return ce + 1e-4 * l2, {"ce": ce, "l2": l2}

  state, history = fit(MLP, (train.x[:256], train.y[:256]), eval_data=(test.x[:100], test.y[:100]),
                       optimizer=ADAM, epochs=2, batch_size=32, progress=False, loss_fn=loss_fn)
  h = history[-1]
  assert {"loss", "ce", "l2", "val_loss", "val_ce", "val_l2", "accuracy", "val_accuracy"} <= set(h)
  assert h["loss"] == pytest.approx(h["ce"] + 1e-4 * h["l2"], rel=1e-5) and h["l2"] > 1.0
  assert h["val_loss"] == pytest.approx(h["val_ce"] + 1e-4 * h["val_l2"], rel=1e-5)


def test_fit_runs_your_own_train_step_in_its_loop(digits):
  """A hand-written step (plain SGD on a squared-logit penalty) driven by fit's loop, checkpoints included."""
  train, _ = digits
  calls = []

  def my_step(state, batch):
    calls.append(1)  # Python side effect: runs once per trace, so counts compilations.
    x, y = batch

    def loss(params):
      logits = state.apply_fn({"params": params}, x, train=True)
      return losses.sparse_softmax_cross_entropy(logits, y) + 1e-3 * jnp.mean(logits ** 2), logits

    (value, logits), grads = jax.value_and_grad(loss, has_aux=True)(state.params)
    return state.apply_gradients(grads=grads), {"loss": value, "mean_logit": jnp.mean(logits)}

  _, history = fit(MLP, (train.x[:256], train.y[:256]), optimizer=optim.sgd(0.1), epochs=2, batch_size=32,
                   progress=False, train_step=my_step)
  assert len(calls) == 1 and "mean_logit" in history[0] and history[-1]["loss"] < history[0]["loss"]
  with pytest.raises(ValueError, match="metrics must be a dict with a 'loss' entry") as e:
    fit(MLP, (train.x[:64], train.y[:64]), epochs=1, progress=False, train_step=lambda s, b: (s, {"l": 0.0}))
  _one_line(e)


class NoTrainArgument(linen.Module):
  @linen.compact
  def __call__(self, x):
    return Dense(10)(x.reshape((x.shape[0], -1)))


# (fit or evaluate call on the digits, error type, the exact hint the one-line message must contain)
BAD_INPUT = [
    (lambda tr, te: fit(MLP, tr, optimizer=optim.adam, epochs=1, progress=False), TypeError,
     "optimizer must be an optax GradientTransformation, got adam; call it: optimizer=adam(1e-3)."),
    (lambda tr, te: fit(MLP, {"image": tr.x, "label": tr.y}, epochs=1, progress=False), TypeError,
     "training data is a dict with keys ['image', 'label']; pass a pair (inputs, labels), e.g. "
     "(d['image'], d['label'])"),
    (lambda tr, te: fit(models.MLP, tr, epochs=1, progress=False), TypeError,
     "model is the class MLP, not a module; create one: MLP(...)."),
    (lambda tr, te: fit(NoTrainArgument(), tr, epochs=1, progress=False), ValueError,
     "NoTrainArgument.__call__ has no train argument, which fit and train_step pass; define it as "
     "def __call__(self, x, train: bool = False)"),
    (lambda tr, te: fit(models.LeNet(features=(4,), hidden=8), (np.zeros((8, 1, 28, 28), np.float32),
                                                               np.zeros(8, np.int32)), epochs=1, batch_size=4,
                        progress=False), ValueError,
     "LeNet got images of shape (4, 1, 28, 28), channels first (NCHW); images are NHWC: x.transpose(0, 2, 3, 1)."),
    (lambda tr, te: evaluate(create_train_state(MLP, ADAM, tr.x[:4], jax.random.PRNGKey(0)),
                             (te.x[:0], te.y[:0])), ValueError,
     "evaluate: data is empty (0 examples); pass at least one example."),
    (lambda tr, te: evaluate({"params": {}}, te), TypeError,
     "evaluate takes a TrainState (from fit or create_train_state) first, got dict"),
    (lambda tr, te: fit(MLP, tr, epochs=1, eval_batch_size=0, progress=False), ValueError,
     "eval_batch_size must be a positive integer, got 0"),
]


@pytest.mark.parametrize("call, error, text", BAD_INPUT, ids=["optimizer-not-called", "data-dict", "model-class",
                                                              "no-train-argument", "nchw", "evaluate-empty",
                                                              "evaluate-not-a-state", "eval-batch-size"])
def test_bad_input_says_what_to_change(digits, call, error, text):
  with pytest.raises(error) as e:
    call(*digits)
  assert text in str(e.value), str(e.value)
  _one_line(e)


def test_nchw_images_are_caught_at_init_by_every_image_model():
  nchw = np.zeros((2, 3, 32, 32), np.float32)
  for model in (models.CNN(), models.LeNet(), models.ResNet18(num_classes=3, width=8, stem="small"),
                models.VGG11(num_classes=3)):
    with pytest.raises(ValueError, match=r"channels first \(NCHW\); images are NHWC: x\.transpose\(0, 2, 3, 1\)\."):
      jax.eval_shape(model.init, jax.random.key(0), nchw)
    jax.eval_shape(model.init, jax.random.key(0), nchw.transpose(0, 2, 3, 1))  # NHWC: fine


def test_readme_your_own_model_example_runs(capsys):
  import pathlib
  import re
  text = (pathlib.Path(__file__).resolve().parents[3] / "README.md").read_text()
  code = re.search(r"```python\n(.*?)```", text[text.index("### Your own model"):], re.S).group(1)
  namespace: dict = {}
  exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
  history = namespace["history"]
  assert len(history) == 2 and "l2" in history[0] and history[-1]["loss"] < history[0]["loss"]
  assert "'head/kernel'" in capsys.readouterr().out
