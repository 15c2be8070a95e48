"""dlfunc.optim freezing, parameter groups, jit behaviour and argument checks."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.datasets import load_digits

from dlfunc import losses, optim
from dlfunc.models import MLP


@pytest.fixture(scope="module")
def digits():
  d = load_digits()
  return jnp.asarray(d.data[:256] / 16.0, jnp.float32).reshape(-1, 8, 8, 1), jnp.asarray(d.target[:256])


@pytest.fixture(scope="module")
def model_and_params(digits):
  model = MLP(hidden=(32, 16))
  return model, model.init(jax.random.key(0), digits[0][:1])["params"]


def _train(model, params, tx, data, steps):
  x, y = data

  @jax.jit
  def step(params, state, x, y):
    loss, grads = jax.value_and_grad(lambda p: losses.sparse_softmax_cross_entropy(model.apply({"params": p}, x), y))(
        params)
    updates, state = tx.update(grads, state, params)
    return optim.apply_updates(params, updates), state, loss

  state = tx.init(params)
  history = []
  for _ in range(steps):
    params, state, loss = step(params, state, x, y)
    history.append(float(loss))
  return params, state, history


def _bits(x):
  x = np.asarray(x)
  return x.view(np.dtype(f"u{x.dtype.itemsize}"))


def _leaf_paths(tree):
  return dict(zip(optim.paths(tree), jax.tree.leaves(tree)))


@pytest.fixture(scope="module")
def frozen_run(model_and_params, digits):
  """50 Adam steps of the MLP with its first layer frozen (trained once for the tests below)."""
  model, params = model_and_params
  new_params, state, history = _train(model, params, optim.freeze(optim.adam(1e-2), r"^Dense_0/"), digits, steps=50)
  return params, new_params, state, history


def test_frozen_leaves_stay_bit_identical_and_the_rest_trains(frozen_run):
  params, new_params, _, history = frozen_run
  before, after = _leaf_paths(params), _leaf_paths(new_params)
  for path in before:
    if path.startswith("Dense_0/"):
      np.testing.assert_array_equal(_bits(after[path]), _bits(before[path]), err_msg=f"frozen {path} moved")
    else:
      assert np.max(np.abs(after[path] - before[path])) > 1e-3, f"trainable {path} did not move"
  assert history[-1] < 0.7 * history[0], f"loss did not go down: {history[0]:.3f} -> {history[-1]:.3f}"


def test_frozen_leaves_carry_no_optimizer_state(frozen_run):
  params, _, state, _ = frozen_run
  trainable = [p for p in optim.paths(params) if not p.startswith("Dense_0/")]
  assert state.inner_states["frozen"] == optim.EmptyState()
  adam_state = state.inner_states["trainable"][0]
  assert optim.paths(adam_state.mu) == optim.paths(adam_state.nu) == trainable
  n_trainable = sum(v.size for k, v in _leaf_paths(params).items() if k in trainable)
  assert sum(leaf.size for leaf in jax.tree.leaves(state)) == 2 * n_trainable + 1  # mu, nu and Adam's count


def test_frozen_negative_zero_keeps_its_sign_bit():
  params = {"frozen": jnp.array([-0.0, 0.0, 1.5]), "train": jnp.ones(2)}
  tx = optim.freeze(optim.sgd(0.1, momentum=0.9), {"frozen": True, "train": False})
  step = lambda p, s: (lambda u, s: (optim.apply_updates(p, u), s))(*tx.update(p, s, p))  # noqa: E731
  for run in (step, jax.jit(step)):  # eagerly, -0.0 + (+0.0) would give +0.0; XLA under jit folds x + 0 away
    p, s = params, tx.init(params)
    for _ in range(3):
      p, s = run(p, s)
    np.testing.assert_array_equal(_bits(p["frozen"]), _bits(params["frozen"]))


# Three more ways to say "freeze the first hidden layer" (built from the params), each equal to r"^Dense_0/".
FREEZE_SPECS = [
    ("prefix-mask", lambda p: {"Dense_0": True, "Dense_1": False, "Dense_2": False}),
    ("full-mask", lambda p: optim.mask_by_path(p, "^Dense_0/")),
    ("callable", lambda p: (lambda q: optim.mask_by_path(q, "Dense_0"))),
]


@pytest.mark.parametrize("spec", [s[1] for s in FREEZE_SPECS], ids=[s[0] for s in FREEZE_SPECS])
def test_freeze_by_mask_or_callable_equals_freeze_by_regex(model_and_params, spec):
  _, params = model_and_params
  frozen = spec(params)
  grads = jax.tree.map(jnp.ones_like, params)
  want_tx, got_tx = optim.freeze(optim.sgd(0.5), r"^Dense_0/"), optim.freeze(optim.sgd(0.5), frozen)
  want, _ = want_tx.update(grads, want_tx.init(params), params)
  got, _ = got_tx.update(grads, got_tx.init(params), params)
  assert jax.tree.map(float, jax.tree.map(jnp.sum, got)) == jax.tree.map(float, jax.tree.map(jnp.sum, want))
  assert float(jnp.sum(got["Dense_0"]["kernel"])) == 0.0 and float(jnp.sum(got["Dense_2"]["kernel"])) != 0.0


def test_partition_matches_optax_partition_with_per_group_learning_rates(model_and_params):
  _, params = model_and_params
  labels = optim.labels_by_path(params, {r"^Dense_0/": "frozen", r"^Dense_1/": "slow"}, default="fast")
  ours = optim.partition({"frozen": optim.set_to_zero(), "slow": optim.sgd(1e-3, momentum=0.9),
                          "fast": optim.adam(1e-2)}, labels)
  theirs = optax.partition({"frozen": optax.set_to_zero(), "slow": optax.sgd(1e-3, momentum=0.9),
                            "fast": optax.adam(1e-2)}, labels)

  def run(tx):
    @jax.jit
    def step(p, s):
      grads = jax.tree.map(lambda x: 0.5 * x + jnp.sin(3.0 * x), p)  # a non-quadratic loss's gradient
      u, s = tx.update(grads, s, p)
      return optim.apply_updates(p, u), s

    p, s = params, tx.init(params)
    for _ in range(20):
      p, s = step(p, s)
    return p

  for path, a, b in zip(optim.paths(params), jax.tree.leaves(run(ours)), jax.tree.leaves(run(theirs)), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7, err_msg=path)


def test_per_group_learning_rate_scales_each_groups_step():
  params = {"backbone": {"w": jnp.ones(3)}, "head": {"w": jnp.ones(2)}}
  grads = {"backbone": {"w": jnp.full(3, 2.0)}, "head": {"w": jnp.full(2, 2.0)}}
  tx = optim.partition({"slow": optim.sgd(1e-3), "fast": optim.sgd(1e-1)}, {"backbone": "slow", "head": "fast"})
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["backbone"]["w"], -2e-3)
  np.testing.assert_allclose(updates["head"]["w"], -2e-1)


def test_labels_by_path_on_flax_params(model_and_params):
  _, params = model_and_params
  assert optim.paths(params) == ["Dense_0/bias", "Dense_0/kernel", "Dense_1/bias", "Dense_1/kernel",
                                 "Dense_2/bias", "Dense_2/kernel"]
  labels = optim.labels_by_path({"params": params}, {"kernel$": "decay", "Dense_2": "head"}, default="rest")
  assert labels["params"]["Dense_0"] == {"kernel": "decay", "bias": "rest"}
  assert labels["params"]["Dense_2"] == {"kernel": "decay", "bias": "head"}  # the first matching rule wins
  mask = optim.mask_by_path(params, "^Dense_2/")
  assert jax.tree.leaves(mask) == [False, False, False, False, True, True]


# (callable, expected error type, text the one-line message must contain)
BAD_FREEZE_CALLS = [
    (lambda p: optim.labels_by_path(p, {"kernel": "k"}), ValueError, "no rule matches parameter 'Dense_0/bias'"),
    (lambda p: optim.labels_by_path(p, {"(": "k"}), ValueError, "not a valid regular expression"),
    (lambda p: optim.partition({"a": optim.sgd(0.1)}, jax.tree.map(lambda _: "b", p)).init(p), ValueError,
     "parameter labels 'b' have no transform"),
    (lambda p: optim.partition({"a": optim.sgd(0.1)}, {"nope": "a"}).init(p), ValueError,
     "must have the structure of the params"),
    (lambda p: optim.freeze(optim.sgd(0.1), jax.tree.map(lambda _: 1, p)).init(p), TypeError,
     "mask leaves must be Python bools"),
    (lambda p: optim.partition({}, {}), ValueError, "transforms is empty"),
    # A selection that selects nothing is an error naming it and showing real paths (issue 14).
    (lambda p: optim.freeze(optim.adam(1e-3), r"^params/(?!Dense_2/)").init(p), ValueError,
     "freeze: the pattern '^params/(?!Dense_2/)' selects no parameter; paths are ['Dense_0/bias', 'Dense_0/kernel', "
     "'Dense_1/bias', 'Dense_1/kernel', 'Dense_2/bias', 'Dense_2/kernel'] (the optimizer sees "
     "model.init(...)['params'], whose paths have no 'params/' in front)"),
    (lambda p: optim.freeze(optim.sgd(0.1), jax.tree.map(lambda _: False, p)).init(p), ValueError,
     "freeze: the label 'frozen' selects no parameter; paths are ['Dense_0/bias'"),
    (lambda p: optim.mask_by_path(p, "^fc/"), ValueError, "mask_by_path: the pattern '^fc/' selects no parameter"),
    (lambda p: optim.labels_by_path(p, {"kernel": "k", "Dense_0/bias": "b", "fc": "f"}, default="x"), ValueError,
     "labels_by_path: the rule 'fc' selects no parameter; paths are"),
    (lambda p: optim.partition({"a": optim.sgd(0.1), "b": optim.sgd(0.2)}, jax.tree.map(lambda _: "a", p)).init(p),
     ValueError, "partition: the label 'b' selects no parameter"),
    (lambda p: optim.masked(optim.sgd(0.1), jax.tree.map(lambda _: False, p)).init(p), ValueError,
     "masked: the mask selects no parameter"),
]


@pytest.mark.parametrize("call,error,text", BAD_FREEZE_CALLS)
def test_freeze_and_partition_errors_are_one_line(model_and_params, call, error, text):
  _, params = model_and_params
  with pytest.raises(error) as info:
    call(params)
  assert text in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_adamw_mask_decays_only_selected_leaves_and_state_skips_nothing():
  params = {"kernel": jnp.ones(2), "bias": jnp.ones(2)}
  tx = optim.adamw(0.1, weight_decay=0.5, mask={"kernel": True, "bias": False})
  zero = jax.tree.map(jnp.zeros_like, params)
  updates, state = tx.update(zero, tx.init(params), params)
  np.testing.assert_allclose(updates["kernel"], -0.1 * 0.5)
  np.testing.assert_allclose(updates["bias"], 0.0)
  assert set(optim.paths(state[0].mu)) == {"bias", "kernel"}  # Adam itself still tracks every leaf


# ------------------------------------------------------------- jit, pytrees

JIT_OPTIMIZERS = [
    ("adam", lambda: optim.adam(1e-3)),
    ("sgd-schedule-nesterov", lambda: optim.sgd(optax.exponential_decay(0.1, 10, 0.9), momentum=0.9, nesterov=True)),
    ("rmsprop-centered", lambda: optim.rmsprop(1e-3, centered=True, momentum=0.5)),
    ("adamw-freeze", lambda: optim.freeze(optim.adamw(1e-3, weight_decay=0.1), "^a/")),
]


@pytest.mark.parametrize("make", [c[1] for c in JIT_OPTIMIZERS], ids=[c[0] for c in JIT_OPTIMIZERS])
def test_jit_compiles_once_on_a_nested_pytree(make):
  tx = make()
  params = {"a": {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}, "c": [jnp.arange(3.0), {"d": jnp.ones(())}]}
  traces = []

  @jax.jit
  def step(params, state):
    traces.append(1)
    grads = jax.grad(lambda p: sum(jnp.sum(jnp.sin(x) * x) for x in jax.tree.leaves(p)))(params)
    updates, state = tx.update(grads, state, params)
    return optim.apply_updates(params, updates), state

  state = tx.init(params)
  for _ in range(10):
    params, state = step(params, state)
  assert len(traces) == 1, f"step was traced {len(traces)} times"
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(params))


@pytest.mark.parametrize("make", [c[1] for c in JIT_OPTIMIZERS], ids=[c[0] for c in JIT_OPTIMIZERS])
def test_bfloat16_params_under_strict_promotion_keep_their_dtype(make, strict_promotion):
  tx = make()
  params = {"a": {"w": jnp.ones((3, 2), jnp.bfloat16)}, "c": [jnp.arange(3.0, dtype=jnp.bfloat16)]}
  updates, state = tx.update(params, tx.init(params), params)
  updates, _ = tx.update(params, state, params)
  new = optim.apply_updates(params, updates)
  assert {str(x.dtype) for x in jax.tree.leaves((updates, new))} == {"bfloat16"}
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(new))


def test_jit_and_eager_updates_agree():
  tx = optim.freeze(optim.adamw(1e-2, weight_decay=0.1), "^a/")
  params = {"a": {"w": jnp.ones((3, 2))}, "c": [jnp.arange(3.0), {"d": jnp.ones(())}]}
  grads = jax.tree.map(lambda x: jnp.cos(x) + 0.5, params)
  state = tx.init(params)
  eager, eager_state = tx.update(grads, state, params)
  jitted, jit_state = jax.jit(tx.update)(grads, state, params)
  for a, b in zip(jax.tree.leaves((eager, eager_state)), jax.tree.leaves((jitted, jit_state)), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)


def test_apply_updates_matches_optax_and_keeps_dtypes():
  params = {"w": jnp.ones(3, jnp.bfloat16), "b": jnp.ones(2, jnp.float32)}
  updates = {"w": jnp.full(3, 0.25, jnp.float32), "b": jnp.full(2, -0.5, jnp.float32)}
  ours, theirs = optim.apply_updates(params, updates), optax.apply_updates(params, updates)
  assert jax.tree.map(lambda x: x.dtype, ours) == jax.tree.map(lambda x: x.dtype, theirs)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
    np.testing.assert_array_equal(a, b)


# --------------------------------------------------------- argument checks

# (builder, kwargs, error type, text the one-line message must contain)
BAD_HYPERPARAMETERS = [
    (optim.sgd, dict(learning_rate=0.0), ValueError, "sgd: learning_rate must be a positive finite number, got 0.0"),
    (optim.sgd, dict(learning_rate=-0.1), ValueError, "learning_rate must be a positive"),
    (optim.adam, dict(learning_rate=float("nan")), ValueError, "learning_rate must be a positive"),
    (optim.adamw, dict(learning_rate=None), ValueError, "learning_rate is required"),
    (optim.adam, dict(learning_rate="fast"), TypeError, "learning_rate must be a positive float"),
    (optim.adam, dict(learning_rate=1e-3, b1=1.0), ValueError, r"adam: b1 must be in \[0.0, 1.0\), got 1.0"),
    (optim.adam, dict(learning_rate=1e-3, b1=-0.1), ValueError, r"b1 must be in \[0.0, 1.0\)"),
    (optim.adamw, dict(learning_rate=1e-3, b2=1.5), ValueError, r"b2 must be in \[0.0, 1.0\)"),
    (optim.adam, dict(learning_rate=1e-3, eps=-1e-8), ValueError, "eps must be >= 0.0"),
    (optim.adamw, dict(learning_rate=1e-3, weight_decay=-0.1), ValueError, "weight_decay must be >= 0.0"),
    (optim.rmsprop, dict(learning_rate=1e-3, decay=1.0), ValueError, r"decay must be in \[0.0, 1.0\)"),
    (optim.sgd, dict(learning_rate=0.1, momentum=1.2), ValueError, r"sgd: momentum must be in \[0.0, 1.0\), got 1.2"),
    (optim.sgd, dict(learning_rate=0.1, nesterov=True), ValueError, "nesterov=True needs a momentum"),
    (optim.rmsprop, dict(learning_rate=0.1, momentum=-0.5), ValueError, r"rmsprop: momentum must be in \[0.0, 1.0\)"),
    (optim.scale_by_adam, dict(b2=1.0), ValueError, r"scale_by_adam: b2 must be in \[0.0, 1.0\)"),
    (optim.trace, dict(decay=2.0), ValueError, r"trace: decay \(the momentum\) must be in \[0.0, 1.0\)"),
    (optim.scale_by_learning_rate, dict(learning_rate=-1.0), ValueError, "scale_by_learning_rate: learning_rate must"),
]


@pytest.mark.parametrize("build,kwargs,error,text", BAD_HYPERPARAMETERS,
                         ids=[f"{b.__name__}-{'-'.join(f'{k}={v}' for k, v in kw.items())}"
                              for b, kw, *_ in BAD_HYPERPARAMETERS])
def test_bad_hyperparameters_give_a_one_line_error(build, kwargs, error, text):
  with pytest.raises(error, match=text) as info:
    build(**kwargs)
  assert "\n" not in str(info.value)


def test_traced_hyperparameters_are_not_checked_but_work():
  params = jnp.ones(2)
  tx = optax.inject_hyperparams(optim.adam)(learning_rate=1e-2, b1=0.8)
  updates, _ = jax.jit(tx.update)(params, tx.init(params), params)
  np.testing.assert_allclose(updates, -1e-2 * np.ones(2), rtol=1e-5)


def test_get_optimizer_by_name():
  assert optim.OPTIMIZER_NAMES == ("sgd", "momentum", "rmsprop", "adam", "adamw")
  params = jnp.ones(2)
  tx = optim.get_optimizer("momentum", 0.1)
  assert type(tx.init(params)[0]).__name__ == "TraceState"
  with pytest.raises(ValueError, match="unknown optimizer 'adagrad'; choose one of sgd, momentum, rmsprop, adam"):
    optim.get_optimizer("adagrad", 0.1)
