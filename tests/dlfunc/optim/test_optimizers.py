"""dlfunc.optim against optax, Keras 3 (JAX backend) and torch.optim, step for step.

Every run is 25 steps in float64 on a nested dict of parameters, with the
gradient of a fixed non-quadratic loss re-evaluated at the current parameters
(so any difference in a step changes all the later gradients too). Tolerance:
rtol 1e-6 on the parameters after every step.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dlfunc import optim

STEPS = 25
RTOL, ATOL = 1e-6, 1e-12


def _init_params():
  rng = np.random.default_rng(0)
  return {"dense": {"kernel": rng.uniform(-2, 2, (3, 2)), "bias": rng.uniform(-2, 2, (2,))},
          "scale": rng.uniform(-2, 2, (4,))}


def _grad(p, xp=np):
  """Gradient of sum(p**2 / 4 - cos(3 p) / 3): well-behaved, not quadratic, any scale of update."""
  return 0.5 * p + xp.sin(3.0 * p)


def _run_jax(tx, steps=STEPS):
  params = jax.tree.map(jnp.asarray, _init_params())
  state = tx.init(params)
  out = []
  for _ in range(steps):
    grads = jax.tree.map(lambda p: _grad(p, jnp), params)
    updates, state = tx.update(grads, state, params)
    params = optim.apply_updates(params, updates)
    out.append(jax.tree.map(np.asarray, params))
  return out


def _assert_trajectories_close(got, want, what, rtol=RTOL):
  for step, (g, w) in enumerate(zip(got, want, strict=True), start=1):
    for path, gl, wl in zip(optim.paths(g), jax.tree.leaves(g), jax.tree.leaves(w), strict=True):
      np.testing.assert_allclose(gl, wl, rtol=rtol, atol=ATOL, err_msg=f"{what}: step {step}, leaf {path}")


# ------------------------------------------------------------------- optax

_SCHEDULE = optax.warmup_cosine_decay_schedule(0.0, 0.05, 5, STEPS)
_WD_SCHEDULE = optax.linear_schedule(0.1, 0.0, STEPS)

# (name, kwargs): dlfunc.optim.<name>(**kwargs) must equal optax.<name>(**kwargs).
OPTAX_CASES = [
    ("sgd", dict(learning_rate=0.05)),
    ("sgd", dict(learning_rate=0.05, momentum=0.9)),
    ("sgd", dict(learning_rate=0.05, momentum=0.9, nesterov=True)),
    ("sgd", dict(learning_rate=_SCHEDULE, momentum=0.5)),
    ("rmsprop", dict(learning_rate=0.01)),
    ("rmsprop", dict(learning_rate=0.01, decay=0.99, eps=1e-3, eps_in_sqrt=False)),
    ("rmsprop", dict(learning_rate=0.01, centered=True, momentum=0.9)),
    ("rmsprop", dict(learning_rate=_SCHEDULE, initial_scale=0.5, momentum=0.9, nesterov=True, bias_correction=True)),
    ("rmsprop", dict(learning_rate=0.01, centered=True, eps_in_sqrt=False, eps=1e-2, decay=0.8)),
    ("adam", dict(learning_rate=0.01)),
    ("adam", dict(learning_rate=0.01, b1=0.5, b2=0.9, eps=1e-3, eps_root=1e-6)),
    ("adam", dict(learning_rate=_SCHEDULE, nesterov=True)),
    ("adamw", dict(learning_rate=0.01)),
    ("adamw", dict(learning_rate=0.01, weight_decay=0.1, mask={"dense": {"kernel": True, "bias": False},
                                                               "scale": False})),
    ("adamw", dict(learning_rate=_SCHEDULE, weight_decay=_WD_SCHEDULE, nesterov=True, b2=0.99)),
]


def _case_id(case):
  name, kw = case
  bits = [f"{k}={'sched' if callable(v) else ('mask' if isinstance(v, dict) else v)}" for k, v in kw.items()
          if k != "learning_rate" or callable(v)]
  return f"{name}({', '.join(bits)})"


@pytest.mark.parametrize("case", OPTAX_CASES, ids=_case_id)
def test_matches_optax_for_25_steps(case, x64):
  name, kwargs = case
  _assert_trajectories_close(_run_jax(getattr(optim, name)(**kwargs)), _run_jax(getattr(optax, name)(**kwargs)),
                             f"{name} vs optax")


@pytest.mark.parametrize("name", ["sgd", "rmsprop", "adam", "adamw"])
def test_same_signature_and_defaults_as_optax(name):
  import inspect
  ours, theirs = inspect.signature(getattr(optim, name)), inspect.signature(getattr(optax, name))
  assert [(p.name, p.default, p.kind) for p in ours.parameters.values()] == \
         [(p.name, p.default, p.kind) for p in theirs.parameters.values()]


def test_state_is_one_namedtuple_per_transform():
  params = {"w": jnp.zeros((2, 3))}
  state = optim.adamw(1e-3).init(params)
  assert [type(s).__name__ for s in state] == ["ScaleByAdamState", "EmptyState", "EmptyState"]
  assert state[0].count.shape == () and state[0].count.dtype == jnp.int32
  state = optim.sgd(optax.constant_schedule(0.1), momentum=0.9).init(params)
  assert [type(s).__name__ for s in state] == ["TraceState", "ScaleByScheduleState"]


def test_mixes_with_optax_chain_and_inject_hyperparams(x64):
  clip = optax.clip_by_global_norm(0.5)
  _assert_trajectories_close(_run_jax(optax.chain(clip, optim.adam(0.01))),
                             _run_jax(optax.chain(clip, optax.adam(0.01))), "optax.chain(clip, adam)")
  tx = optax.inject_hyperparams(optim.adamw)(learning_rate=0.01, weight_decay=0.05)
  _assert_trajectories_close(_run_jax(tx), _run_jax(optax.adamw(0.01, weight_decay=0.05)), "inject_hyperparams(adamw)")


def test_mu_dtype_and_accumulator_dtype_set_the_state_dtype():
  params = {"w": jnp.ones((2,), jnp.float32)}
  state = optim.adam(1e-3, mu_dtype=jnp.bfloat16).init(params)
  _, state = optim.adam(1e-3, mu_dtype=jnp.bfloat16).update(params, state, params)
  assert state[0].mu["w"].dtype == jnp.bfloat16 and state[0].nu["w"].dtype == jnp.float32
  tx = optim.sgd(0.1, momentum=0.9, accumulator_dtype=jnp.bfloat16)
  _, state = tx.update(params, tx.init(params), params)
  assert state[0].trace["w"].dtype == jnp.bfloat16


# ------------------------------------------------------------------- Keras 3


def _run_keras(make_opt, steps=STEPS):
  import keras
  leaves, treedef = jax.tree.flatten(_init_params())
  variables = [keras.Variable(x, dtype="float64") for x in leaves]
  opt = make_opt(keras.optimizers)
  out = []
  for _ in range(steps):
    opt.apply([_grad(np.asarray(v.value)) for v in variables], variables)
    out.append(treedef.unflatten([np.asarray(v.value) for v in variables]))
  return out


# Keras keeps the learning rate in a float32 variable, so use one that float32 holds exactly.
LR = 2.0 ** -5
# (id, keras optimizer, dlfunc optimizer): the same trajectory.
KERAS_SAME = [
    ("SGD", lambda k: k.SGD(LR), lambda: optim.sgd(LR)),
    ("SGD-momentum", lambda k: k.SGD(LR, momentum=0.9), lambda: optim.sgd(LR, momentum=0.9)),
    ("SGD-nesterov", lambda k: k.SGD(LR, momentum=0.9, nesterov=True),
     lambda: optim.sgd(LR, momentum=0.9, nesterov=True)),
    ("RMSprop-defaults", lambda k: k.RMSprop(LR), lambda: optim.rmsprop(LR, decay=0.9, eps=1e-7)),
    ("RMSprop-centered-momentum", lambda k: k.RMSprop(LR, rho=0.8, epsilon=0.1, centered=True, momentum=0.9),
     lambda: optim.rmsprop(LR, decay=0.8, eps=0.1, centered=True, momentum=0.9)),
    ("Adam-eps0", lambda k: k.Adam(LR, beta_1=0.8, beta_2=0.99, epsilon=0.0),
     lambda: optim.adam(LR, b1=0.8, b2=0.99, eps=0.0)),
    ("AdamW-eps0", lambda k: k.AdamW(LR, weight_decay=0.004, epsilon=0.0),
     lambda: optim.adamw(LR, eps=0.0, weight_decay=0.004)),
    # Keras' weight_decay is decoupled on every optimizer: Keras Adam(weight_decay) is AdamW.
    ("Adam-weight_decay-is-adamw", lambda k: k.Adam(LR, weight_decay=0.1, epsilon=0.0),
     lambda: optim.adamw(LR, eps=0.0, weight_decay=0.1)),
]


@pytest.mark.parametrize("make_keras,make_ours", [c[1:] for c in KERAS_SAME], ids=[c[0] for c in KERAS_SAME])
def test_matches_keras_where_conventions_coincide(make_keras, make_ours, x64):
  _assert_trajectories_close(_run_jax(make_ours()), _run_keras(make_keras), "vs Keras")


def test_keras_adam_epsilon_is_epsilon_hat(x64):
  """Documented in adam(): Keras' epsilon e equals dlfunc's eps = e / sqrt(1 - b2**t), a per-step value."""
  e, b2 = 0.05, 0.99
  keras_run = _run_keras(lambda k: k.Adam(LR, beta_2=b2, epsilon=e))
  # Same constant eps: clearly different trajectories ...
  plain = _run_jax(optim.adam(LR, b2=b2, eps=e))
  assert np.max(np.abs(plain[-1]["scale"] - keras_run[-1]["scale"])) > 1e-3
  # ... and equal once eps follows e / sqrt(1 - b2**t) (t = count + 1), injected as a hyperparameter schedule.
  eps_t = lambda count: e / jnp.sqrt(1.0 - b2 ** (count + 1.0))  # noqa: E731
  tx = optax.inject_hyperparams(optim.adam)(learning_rate=LR, b2=b2, eps=eps_t)
  _assert_trajectories_close(_run_jax(tx), keras_run, "adam(eps=e/sqrt(1-b2^t)) vs Keras Adam(epsilon=e)")


def test_keras_sgd_momentum_differs_under_a_learning_rate_schedule(x64):
  """Documented in sgd(): Keras folds the learning rate into its velocity, so schedules diverge."""
  import keras
  lr = keras.optimizers.schedules.ExponentialDecay(0.05, decay_steps=1, decay_rate=0.8)
  keras_run = _run_keras(lambda k: k.SGD(lr, momentum=0.9))
  ours = _run_jax(optim.sgd(optax.exponential_decay(0.05, 1, 0.8), momentum=0.9))
  np.testing.assert_allclose(ours[0]["scale"], keras_run[0]["scale"], rtol=RTOL)  # step 1: no history yet
  assert np.max(np.abs(ours[-1]["scale"] - keras_run[-1]["scale"])) > 1e-3


# ------------------------------------------------------------------- PyTorch


def _run_torch(make_opt, steps=STEPS):
  import torch
  leaves, treedef = jax.tree.flatten(_init_params())
  tensors = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in leaves]
  opt = make_opt(torch.optim, tensors)
  out = []
  for _ in range(steps):
    for t in tensors:
      t.grad = torch.from_numpy(_grad(t.detach().numpy().copy()))
    opt.step()
    out.append(treedef.unflatten([t.detach().numpy().copy() for t in tensors]))
  return out


# (id, torch optimizer, dlfunc optimizer): the same trajectory.
TORCH_SAME = [
    ("SGD", lambda o, p: o.SGD(p, lr=0.05), lambda: optim.sgd(0.05)),
    ("SGD-momentum", lambda o, p: o.SGD(p, lr=0.05, momentum=0.9), lambda: optim.sgd(0.05, momentum=0.9)),
    ("SGD-nesterov", lambda o, p: o.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
     lambda: optim.sgd(0.05, momentum=0.9, nesterov=True)),
    # torch's SGD weight_decay is an L2 term added to the gradient before the momentum.
    ("SGD-weight_decay-is-L2", lambda o, p: o.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.1),
     lambda: optim.chain(optim.add_decayed_weights(0.1), optim.sgd(0.05, momentum=0.9))),
    ("RMSprop", lambda o, p: o.RMSprop(p, lr=0.01, alpha=0.99, eps=1e-8),
     lambda: optim.rmsprop(0.01, decay=0.99, eps=1e-8, eps_in_sqrt=False)),
    ("RMSprop-centered-momentum", lambda o, p: o.RMSprop(p, lr=0.01, alpha=0.9, eps=0.1, centered=True, momentum=0.9),
     lambda: optim.rmsprop(0.01, decay=0.9, eps=0.1, eps_in_sqrt=False, centered=True, momentum=0.9)),
    ("Adam", lambda o, p: o.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-3), lambda: optim.adam(0.01, 0.8, 0.99, 1e-3)),
    # torch's Adam weight_decay is coupled L2 (before the moments), not AdamW.
    ("Adam-weight_decay-is-L2", lambda o, p: o.Adam(p, lr=0.01, weight_decay=0.1),
     lambda: optim.chain(optim.add_decayed_weights(0.1), optim.adam(0.01))),
    ("AdamW", lambda o, p: o.AdamW(p, lr=0.01, weight_decay=0.1), lambda: optim.adamw(0.01, weight_decay=0.1)),
]


@pytest.mark.torch
@pytest.mark.parametrize("make_torch,make_ours", [c[1:] for c in TORCH_SAME], ids=[c[0] for c in TORCH_SAME])
def test_matches_torch_where_conventions_coincide(make_torch, make_ours, x64):
  _assert_trajectories_close(_run_jax(make_ours()), _run_torch(make_torch), "vs torch.optim")


# (id, torch optimizer, dlfunc optimizer that a user might wrongly take as its equivalent)
TORCH_DIFFERENT = [
    ("RMSprop-eps-placement", lambda o, p: o.RMSprop(p, lr=0.01, alpha=0.99, eps=0.1),
     lambda: optim.rmsprop(0.01, decay=0.99, eps=0.1)),  # optax default eps_in_sqrt=True
    ("Adam-weight_decay-is-not-adamw", lambda o, p: o.Adam(p, lr=0.01, weight_decay=0.5),
     lambda: optim.adamw(0.01, weight_decay=0.5)),
]


@pytest.mark.torch
@pytest.mark.parametrize("make_torch,make_ours", [c[1:] for c in TORCH_DIFFERENT], ids=[c[0] for c in TORCH_DIFFERENT])
def test_documented_differences_from_torch_are_real(make_torch, make_ours, x64):
  ours, theirs = _run_jax(make_ours()), _run_torch(make_torch)
  gap = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(ours[-1]), jax.tree.leaves(theirs[-1])))
  assert gap > 1e-3, f"expected a visible difference after {STEPS} steps, got max |diff| {gap:.2e}"


def test_rmsprop_eps_placement_on_one_step_by_hand():
  """optax/Keras: g / sqrt(v + eps); PyTorch (eps_in_sqrt=False): g / (sqrt(v) + eps)."""
  g, eps, rho, lr = 0.3, 0.01, 0.9, 1.0
  v = (1 - rho) * g * g
  for in_sqrt, want in [(True, -lr * g / math.sqrt(v + eps)), (False, -lr * g / (math.sqrt(v) + eps))]:
    tx = optim.rmsprop(lr, decay=rho, eps=eps, eps_in_sqrt=in_sqrt)
    params = jnp.zeros(())
    u, _ = tx.update(jnp.asarray(g), tx.init(params), params)
    np.testing.assert_allclose(float(u), want, rtol=1e-6)


# ------------------------------------------------------------- optax's extra-args convention


def _scale_by_value():
  """An optax transform that reads the extra ``value=`` argument (as a line search does)."""
  def update(updates, state, params=None, *, value, **extra):
    del params, extra
    return jax.tree.map(lambda u: u * value, updates), state
  return optax.GradientTransformationExtraArgs(lambda p: optax.EmptyState(), update)


@pytest.mark.parametrize("make", [
    lambda: optim.adam(1e-3), lambda: optim.sgd(0.1, momentum=0.9), lambda: optim.rmsprop(1e-3),
    lambda: optim.adamw(1e-3, mask=lambda p: jax.tree.map(lambda _: True, p)),
    lambda: optim.freeze(optim.adam(1e-3), "^scale"),
], ids=["adam", "sgd", "rmsprop", "adamw-masked", "freeze"])
def test_update_accepts_and_ignores_extra_arguments_under_jit(make):
  tx = make()
  assert isinstance(tx, optax.GradientTransformationExtraArgs)
  params = jax.tree.map(jnp.asarray, _init_params())
  grads = jax.tree.map(_grad, params)
  state = tx.init(params)
  want, _ = tx.update(grads, state, params)
  got, _ = jax.jit(lambda g, s, p: tx.update(g, s, p, some_extra=1))(grads, state, params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), got, want)


def test_extra_arguments_reach_an_optax_transform_inside_chain_and_freeze():
  params = {"a": jnp.ones(2), "b": jnp.ones(3)}
  grads = jax.tree.map(jnp.ones_like, params)
  tx = optim.freeze(optim.chain(_scale_by_value(), optim.sgd(1.0)), "^a")
  updates, _ = tx.update(grads, tx.init(params), params, value=jnp.float32(3.0))
  np.testing.assert_array_equal(updates["b"], -3.0)
  np.testing.assert_array_equal(updates["a"], -0.0)
