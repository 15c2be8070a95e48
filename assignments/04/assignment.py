# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Assignment 04 — optimizers
#
# SGD steps along $-\nabla\mathcal L$ with one learning rate for every
# parameter. It crawls along shallow valleys and zig-zags across steep ones.
# The optimizers here fix that with **state** carried from step to step:
# a running average of past gradients (*momentum*), of their squares
# (*RMSprop*: a per-parameter step size), or both (*Adam*).
#
# JAX is functional, so an optimizer is a pair of pure functions, as in
# [optax](https://optax.readthedocs.io):
#
# ```python
# state = init(params)                                  # before training
# updates, state = update(grads, state, params)         # every step
# params = jax.tree_util.tree_map(lambda p, u: p + u, params, updates)
# ```
#
# `update` returns the **updates to add** (already multiplied by $-\eta$),
# never the new parameters, and the new state. Everything is a pytree with
# the structure of `params` (nested dicts/lists of arrays): use
# `jax.tree_util.tree_map` for every arithmetic step.
#
# You write the pair for four optimizers, with these **state conventions**
# (the grader builds states this way too):
#
# | optimizer | `init(params)` returns | hyperparameters (defaults) |
# |---|---|---|
# | `sgd` | `()` (no state) | `lr=0.01` |
# | `momentum` | velocity: zeros like `params` | `lr=0.01, beta=0.9` |
# | `rmsprop` | mean square: zeros like `params` | `lr=0.01, decay=0.9, eps=1e-8` |
# | `adam` | `{"count": int32 0, "mu": zeros, "nu": zeros}` | `lr=1e-3, b1=0.9, b2=0.999, eps=1e-8` |
#
# Each `*_update(grads, state, params=None, *, hyperparameters)` must match
# optax (`optax.sgd`, `optax.sgd(lr, momentum=beta)`, `optax.rmsprop`,
# `optax.adam`) step for step in float64, work under `jax.jit`, and drive the
# Rosenbrock function below a bar. Do not use optax or dlfunc inside them.

# %% [markdown] tags=["rules"]
# **Rules.** Each is checked by a public test, so a full `autograder check` score means none is broken
# (the hidden tests check the same rules on other inputs):
#
# - No `optax`, `flax`, `jax.example_libraries` or `dlfunc` inside your functions (a refused call scores that
#   function 0).
# - Every `*_update` returns `(updates, new_state)`, the updates to *add*, matching optax step for step in
#   float64, and works under `jax.jit` (no Python `if` on array values, no NumPy on traced arrays).
# - States follow the table: Adam's `count` is an int32 scalar, 0 after `init`, one more after each update.
# - The `minimize` helper is given: do not edit it (the grader re-computes steps with your update).


# %%
import jax
import jax.numpy as jnp

# %% [markdown]
# ## 0. The test bench: the Rosenbrock valley
#
# $$f(x, y) = (1 - x)^2 + 100\,(y - x^2)^2$$
#
# has its minimum 0 at $(1, 1)$ at the bottom of a long, curved, narrow
# valley: the gradient points mostly across the valley, not along it. The
# grader runs each optimizer 2,000 steps from $(-1.2, 1)$ with the given
# `minimize` helper below (a `jax.lax.scan`, so the loop is compiled once)
# and checks the final loss. The helper is **given — do not edit it** (and
# run this cell before the tests below); the grader re-computes some of its
# steps with your update to make sure.

# %% nbgrader={"grade": false, "grade_id": "given_rosenbrock", "locked": true, "schema_version": 3, "solution": false}
def rosenbrock(p):
  """The Rosenbrock function of p = {"x": ..., "y": ...}; minimum 0 at (1, 1)."""
  return (1.0 - p["x"]) ** 2 + 100.0 * (p["y"] - p["x"] ** 2) ** 2


def minimize(name, params, state, steps, hyper):
  """Given (used by the grader): `steps` steps of <name>_update on rosenbrock; returns (path, (params, state)).

  ``path`` is (params, state) before each step, stacked along a leading axis of length ``steps``.
  """
  update = globals()[name + "_update"]

  def body(carry, _):
    p, s = carry
    u, s_new = update(jax.grad(rosenbrock)(p), s, p, **hyper)
    return (jax.tree_util.tree_map(lambda a, b: a + b, p, u), s_new), (p, s)

  params = jax.tree_util.tree_map(jnp.asarray, params)
  state = jax.tree_util.tree_map(jnp.asarray, state)
  final, path = jax.lax.scan(body, (params, state), None, length=steps)
  return path, final


# %% [markdown]
# ## 1. SGD
#
# $$u_t = -\eta\, g_t.$$
#
# No state: `sgd_init` returns the empty tuple `()` and `sgd_update` passes
# it through.

# %% nbgrader={"grade": false, "grade_id": "sgd_init", "locked": false, "schema_version": 3, "solution": true}
def sgd_init(params):
  """Plain SGD keeps no state: ()."""
  # Hint: return ().
  ### BEGIN SOLUTION
  del params
  return ()
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_sgd_init", "locked": true, "points": 1, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("04", "sgd_init", globals())
score

# %% nbgrader={"grade": false, "grade_id": "sgd_update", "locked": false, "schema_version": 3, "solution": true}
def sgd_update(grads, state, params=None, *, lr=0.01):
  """(updates, state) with updates = -lr * grads, leaf by leaf."""
  # Hint: jax.tree_util.tree_map(lambda g: -lr * g, grads), and the state unchanged.
  ### BEGIN SOLUTION
  del params
  return jax.tree_util.tree_map(lambda g: -lr * g, grads), state
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_sgd_update", "locked": true, "points": 3, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("04", "sgd_update", globals())
### BEGIN HIDDEN TESTS
score += grade("04", "sgd_update", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 2. Momentum (heavy ball)
#
# $$v_t = g_t + \beta\, v_{t-1}, \qquad u_t = -\eta\, v_t, \qquad v_0 = 0.$$
#
# The velocity $v$ accumulates gradients that keep pointing the same way
# (up to $1/(1-\beta)$ times a single step: 10× for $\beta = 0.9$) and cancels
# those that flip sign. This is optax's `sgd(lr, momentum=beta)` and
# PyTorch's `SGD(momentum=beta)`. Careful: some texts write
# $v_t = \beta v_{t-1} + (1-\beta) g_t$ — a different (10× smaller) step.

# %% nbgrader={"grade": false, "grade_id": "momentum_init", "locked": false, "schema_version": 3, "solution": true}
def momentum_init(params):
  """The velocity: zeros with the structure, shapes and dtypes of params."""
  # Hint: one zero array per leaf of params, same structure, shapes and dtypes.
  ### BEGIN SOLUTION
  return jax.tree_util.tree_map(jnp.zeros_like, params)
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_momentum_init", "locked": true, "points": 1, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("04", "momentum_init", globals())
score

# %% nbgrader={"grade": false, "grade_id": "momentum_update", "locked": false, "schema_version": 3, "solution": true}
def momentum_update(grads, state, params=None, *, lr=0.01, beta=0.9):
  """(updates, velocity) with velocity = grads + beta * velocity and updates = -lr * velocity."""
  # Hint: v = tree_map(lambda g, v: g + beta * v, grads, state); return tree_map(lambda v: -lr * v, v), v.
  ### BEGIN SOLUTION
  del params
  velocity = jax.tree_util.tree_map(lambda g, v: g + beta * v, grads, state)
  return jax.tree_util.tree_map(lambda v: -lr * v, velocity), velocity
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_momentum_update", "locked": true, "points": 5, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("04", "momentum_update", globals())
### BEGIN HIDDEN TESTS
score += grade("04", "momentum_update", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 3. RMSprop
#
# $$\nu_t = \rho\,\nu_{t-1} + (1-\rho)\, g_t^2, \qquad u_t = -\eta\,\frac{g_t}{\sqrt{\nu_t + \epsilon}}.$$
#
# Each parameter's step is divided by the root-mean-square of its recent
# gradients: steep directions get small steps, flat ones large steps.
# **Conventions** (as `optax.rmsprop`): $\rho$ = `decay` = 0.9, $\nu_0 = 0$, and
# $\epsilon$ goes *inside* the square root. PyTorch (`alpha=0.99`) and Keras
# (`rho=0.9`, `epsilon=1e-7`) add $\epsilon$ *outside* it — same idea,
# different numbers.

# %% nbgrader={"grade": false, "grade_id": "rmsprop_init", "locked": false, "schema_version": 3, "solution": true}
def rmsprop_init(params):
  """The running mean of squared gradients: zeros like params."""
  # Hint: one zero array per leaf of params, same structure, shapes and dtypes.
  ### BEGIN SOLUTION
  return jax.tree_util.tree_map(jnp.zeros_like, params)
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_rmsprop_init", "locked": true, "points": 1, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("04", "rmsprop_init", globals())
score

# %% nbgrader={"grade": false, "grade_id": "rmsprop_update", "locked": false, "schema_version": 3, "solution": true}
def rmsprop_update(grads, state, params=None, *, lr=0.01, decay=0.9, eps=1e-8):
  """(updates, nu) with nu = decay * nu + (1 - decay) * g**2 and updates = -lr * g / sqrt(nu + eps)."""
  # Hint: first the new nu with tree_map over (grads, state), then the updates from grads and the new nu.
  ### BEGIN SOLUTION
  del params
  nu = jax.tree_util.tree_map(lambda g, n: decay * n + (1.0 - decay) * g * g, grads, state)
  updates = jax.tree_util.tree_map(lambda g, n: -lr * g / jnp.sqrt(n + eps), grads, nu)
  return updates, nu
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_rmsprop_update", "locked": true, "points": 5, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("04", "rmsprop_update", globals())
### BEGIN HIDDEN TESTS
score += grade("04", "rmsprop_update", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 4. Adam
#
# Momentum and RMSprop together, with **bias correction**: $\mu_0 = \nu_0 = 0$
# make the early averages too small, so divide by $1 - \beta^t$:
#
# $$\mu_t = \beta_1\mu_{t-1} + (1-\beta_1)g_t,\quad \nu_t = \beta_2\nu_{t-1} + (1-\beta_2)g_t^2,\quad
# \hat\mu_t = \frac{\mu_t}{1-\beta_1^t},\quad \hat\nu_t = \frac{\nu_t}{1-\beta_2^t},\quad
# u_t = -\eta\,\frac{\hat\mu_t}{\sqrt{\hat\nu_t} + \epsilon}.$$
#
# $t$ counts the steps taken, **including this one** (1 on the first call):
# the state stores `count` (int32) and the *uncorrected* `mu` and `nu`. On
# the first step $\hat\mu_1 = g$ and $\hat\nu_1 = g^2$, so $u_1 \approx -\eta\,\mathrm{sign}(g)$:
# Adam's step size is about $\eta$ whatever the scale of the gradient.
# **Conventions** (as `optax.adam`, PyTorch and Keras): $\epsilon$ *outside*
# the square root; defaults $\beta_1 = 0.9$, $\beta_2 = 0.999$, $\epsilon = 10^{-8}$.

# %% nbgrader={"grade": false, "grade_id": "adam_init", "locked": false, "schema_version": 3, "solution": true}
def adam_init(params):
  """{"count": int32 scalar 0, "mu": zeros like params, "nu": zeros like params}."""
  # Hint: the table above gives the three entries; the count is an int32 scalar array, not a Python int.
  ### BEGIN SOLUTION
  zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
  return {"count": jnp.zeros((), jnp.int32), "mu": zeros, "nu": jax.tree_util.tree_map(jnp.zeros_like, params)}
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_adam_init", "locked": true, "points": 1, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("04", "adam_init", globals())
score

# %% nbgrader={"grade": false, "grade_id": "adam_update", "locked": false, "schema_version": 3, "solution": true}
def adam_update(grads, state, params=None, *, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
  """(updates, new_state) of Adam with bias correction; state = {"count", "mu", "nu"}."""
  # Hint: advance the count first: the bias corrections 1 - b**t use the step number t of this update.
  ### BEGIN SOLUTION
  del params
  count = state["count"] + 1
  mu = jax.tree_util.tree_map(lambda g, m: b1 * m + (1.0 - b1) * g, grads, state["mu"])
  nu = jax.tree_util.tree_map(lambda g, n: b2 * n + (1.0 - b2) * g * g, grads, state["nu"])
  c1, c2 = 1.0 - b1 ** count, 1.0 - b2 ** count   # bias corrections, t = count (this step included)

  def step(m, n):
    m_hat = m / c1.astype(m.dtype)
    n_hat = n / c2.astype(n.dtype)
    return -lr * m_hat / (jnp.sqrt(n_hat) + eps)
  return jax.tree_util.tree_map(step, mu, nu), {"count": count, "mu": mu, "nu": nu}
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_adam_update", "locked": true, "points": 6, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("04", "adam_update", globals())
### BEGIN HIDDEN TESTS
score += grade("04", "adam_update", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 5. Four paths through the valley
#
# Plot the four paths on the valley's contours (after everything passes).
# Momentum overshoots and swings back along the curve; RMSprop and Adam take
# steps of about $\eta$ per coordinate whatever the gradient's size, which is
# why their learning rates are 10× larger here than SGD's.

# %% tags=["skip-grading"]
try:
  import matplotlib.pyplot as plt
  import numpy as np
  settings = {"sgd": {"lr": 2e-3}, "momentum": {"lr": 1e-3, "beta": 0.9}, "rmsprop": {"lr": 3e-3},
              "adam": {"lr": 3e-2}}
  start = {"x": jnp.float32(-1.2), "y": jnp.float32(1.0)}
  xx, yy = np.meshgrid(np.linspace(-1.6, 1.6, 300), np.linspace(-0.5, 2.2, 300))
  fig, ax = plt.subplots(figsize=(7, 4.5))
  ax.contour(xx, yy, np.log10(rosenbrock({"x": xx, "y": yy}) + 1e-3), levels=25, cmap="Greys", alpha=0.6)
  for name, hyper in settings.items():
    path, (p, _) = minimize(name, start, globals()[name + "_init"](start), 2000, hyper)
    ax.plot(path[0]["x"], path[0]["y"], lw=1.2, label=f"{name}: loss {float(rosenbrock(p)):.1e}")
  ax.plot([1], [1], "k*", ms=12)
  ax.legend(fontsize=8)
  ax.set_title("2,000 steps from (-1.2, 1)")
  plt.show()

  # Your pair is an optax GradientTransformation: it composes with optax's own pieces.
  import optax
  tx = optax.chain(optax.clip_by_global_norm(1.0),
                   optax.GradientTransformation(adam_init, lambda g, s, p=None: adam_update(g, s, p, lr=3e-2)))
  p, s = start, tx.init(start)
  for _ in range(200):
    u, s = tx.update(jax.grad(rosenbrock)(p), s, p)
    p = optax.apply_updates(p, u)
  print("clipped Adam, 200 steps: loss", float(rosenbrock(p)))
except NotImplementedError as e:
  print(f"Finish the optimizers first ({e}).")


# %% [markdown]
# ## Check everything
#
# The cell below runs every public test at once: the same checks and lines as
# `autograder check 04`, then a summary per function. Hidden tests also count
# towards your grade.

# %% tags=["skip-grading"]
from autograder.selfcheck import check_all
report = check_all("04", globals())
