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
# # Assignment 01 — neurons, dense layers and activations
#
# A neuron computes a weighted sum of its inputs plus a bias and passes it
# through a non-linear *activation*: $y = \phi(x \cdot w + b)$. A **dense
# layer** is many neurons side by side, so for a batch $X$ of shape
# `(batch, n_in)` it is one matrix product, $Y = X W + b$, with $W$ of shape
# `(n_in, n_out)` and $b$ of shape `(n_out,)` (broadcast over the batch).
#
# You will write six pure JAX functions — arrays in, arrays out, no globals,
# randomness only through an explicit key — that must also work under
# `jax.jit`, `jax.grad` and `jax.vmap`:
#
# | function | what it returns |
# |---|---|
# | `relu(x)` | $\max(x, 0)$ |
# | `sigmoid(x)` | $\sigma(x) = 1/(1+e^{-x})$ |
# | `tanh(x)` | $\tanh x$ |
# | `softmax(x, axis=-1)` | $e^{x_i}/\sum_j e^{x_j}$ along `axis` |
# | `init_dense(key, n_in, n_out)` | `{"w": (n_in, n_out) Glorot-uniform float32, "b": (n_out,) zeros}` |
# | `dense(params, x)` | `x @ params["w"] + params["b"]` |
#
# Use `jax.numpy` (not `numpy`, not `jax.nn`, not `dlfunc`). Run
# `autograder check 01 YOUR_FILE` to see which functions pass the public
# tests; hidden tests also count towards your grade.

# %% [markdown] tags=["rules"]
# **Rules.** Each is checked by a public test, so a full `autograder check` score means none is broken
# (the hidden tests check the same rules on other inputs):
#
# - Use `jax.numpy`: not `numpy` (it fails under `jax.jit`), not `jax.nn`'s or `jax.scipy`'s versions of the
#   functions you write, not `dlfunc` (a refused call scores that function 0).
# - Every function works under `jax.jit` (no Python `if` on array values, no NumPy on traced arrays) and keeps
#   its input's dtype; `tanh`, `softmax` and `dense` also work under `jax.vmap`.
# - `sigmoid` and `softmax` are stable: finite values (and, for `sigmoid`, gradients) at $|x| = 10^4$.
# - `init_dense` draws only from its `key` argument: the same key gives the same weights, another key others.


# %%
import jax
import jax.numpy as jnp

# %% [markdown]
# ## 1. ReLU
#
# $$\mathrm{relu}(x) = \max(x, 0)$$
#
# applied elementwise. Its gradient is 1 for $x > 0$ and 0 for $x < 0$; at
# exactly 0 we take 0 (as JAX, PyTorch and Keras do).

# %% nbgrader={"grade": false, "grade_id": "relu", "locked": false, "schema_version": 3, "solution": true}
def relu(x):
  """Elementwise max(x, 0); same shape and dtype as ``x``."""
  # Hint: jnp.maximum compares two arrays (or an array and a number) elementwise.
  ### BEGIN SOLUTION
  x = jnp.asarray(x)
  return jnp.maximum(x, jnp.zeros((), x.dtype))
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_relu", "locked": true, "points": 4, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("01", "relu", globals())
### BEGIN HIDDEN TESTS
score += grade("01", "relu", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 2. Sigmoid and tanh
#
# $$\sigma(x) = \frac{1}{1 + e^{-x}} = \tfrac12\left(1 + \tanh\tfrac{x}{2}\right), \qquad
# \tanh x = \frac{e^{x} - e^{-x}}{e^{x} + e^{-x}}.$$
#
# The textbook formula overflows: for $x = -10^4$, $e^{-x}$ is `inf` in
# float32. Your sigmoid must stay finite — value *and* gradient — at
# $|x| = 10^4$. The $\tanh$ form above never overflows.

# %% nbgrader={"grade": false, "grade_id": "sigmoid", "locked": false, "schema_version": 3, "solution": true}
def sigmoid(x):
  """Logistic sigmoid 1 / (1 + exp(-x)), finite for any finite x."""
  # Hint: 0.5 * (1 + tanh(x / 2)) equals the sigmoid and never overflows.
  ### BEGIN SOLUTION
  x = jnp.asarray(x)
  return 0.5 * (jnp.tanh(0.5 * x) + 1.0)
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_sigmoid", "locked": true, "points": 4, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("01", "sigmoid", globals())
### BEGIN HIDDEN TESTS
score += grade("01", "sigmoid", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% nbgrader={"grade": false, "grade_id": "tanh", "locked": false, "schema_version": 3, "solution": true}
def tanh(x):
  """Hyperbolic tangent, elementwise, in (-1, 1)."""
  # Hint: jnp.tanh is allowed here; the point is the shape/dtype/jit contract.
  ### BEGIN SOLUTION
  return jnp.tanh(jnp.asarray(x))
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_tanh", "locked": true, "points": 2, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("01", "tanh", globals())
### BEGIN HIDDEN TESTS
score += grade("01", "tanh", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 3. Softmax
#
# $$\mathrm{softmax}(x)_i = \frac{e^{x_i}}{\sum_j e^{x_j}} = \frac{e^{x_i - m}}{\sum_j e^{x_j - m}},
# \quad m = \max_j x_j.$$
#
# Subtracting the maximum changes nothing mathematically but keeps `exp`
# from overflowing: `exp(1000.)` is `inf`, so the naive formula returns
# `nan` for logits like `[1000, 1000]`. Reduce along `axis` only (use
# `keepdims=True`), so a batch `(batch, classes)` gives one distribution per row.

# %% nbgrader={"grade": false, "grade_id": "softmax", "locked": false, "schema_version": 3, "solution": true}
def softmax(x, axis=-1):
  """Softmax along ``axis``; every slice along ``axis`` sums to 1."""
  # Hint: subtract jnp.max(x, axis=axis, keepdims=True) before jnp.exp.
  ### BEGIN SOLUTION
  x = jnp.asarray(x)
  shifted = x - jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
  e = jnp.exp(shifted)
  return e / jnp.sum(e, axis=axis, keepdims=True)
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_softmax", "locked": true, "points": 6, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("01", "softmax", globals())
### BEGIN HIDDEN TESTS
score += grade("01", "softmax", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 4. A dense layer
#
# **Initialisation.** If the weights are too large, activations explode
# layer after layer; too small, they vanish. Glorot (Xavier) uniform keeps
# the variance roughly constant forward and backward:
#
# $$W_{ij} \sim U(-l, l), \qquad l = \sqrt{\frac{6}{n_\text{in} + n_\text{out}}},$$
#
# and the bias starts at zero. Randomness comes only from the `key` you are
# given: the same key must give the same weights, different keys different
# weights (use `jax.random.uniform(key, shape, jnp.float32, -l, l)`).
#
# **Forward pass.** $Y = XW + b$ for `x` of shape `(..., n_in)`.

# %% nbgrader={"grade": false, "grade_id": "init_dense", "locked": false, "schema_version": 3, "solution": true}
def init_dense(key, n_in, n_out):
  """{"w": (n_in, n_out) Glorot-uniform float32, "b": (n_out,) float32 zeros}."""
  # Hint: limit = sqrt(6 / (n_in + n_out)); jax.random.uniform(key, shape, jnp.float32, -limit, limit).
  ### BEGIN SOLUTION
  limit = (6.0 / (n_in + n_out)) ** 0.5
  w = jax.random.uniform(key, (n_in, n_out), jnp.float32, -limit, limit)
  return {"w": w, "b": jnp.zeros((n_out,), jnp.float32)}
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_init_dense", "locked": true, "points": 5, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("01", "init_dense", globals())
### BEGIN HIDDEN TESTS
score += grade("01", "init_dense", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% nbgrader={"grade": false, "grade_id": "dense", "locked": false, "schema_version": 3, "solution": true}
def dense(params, x):
  """x @ params["w"] + params["b"] for x of shape (..., n_in); returns (..., n_out)."""
  # Hint: jnp.matmul (or @) handles any leading batch axes; the bias broadcasts.
  ### BEGIN SOLUTION
  return jnp.asarray(x) @ params["w"] + params["b"]
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_dense", "locked": true, "points": 4, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("01", "dense", globals())
### BEGIN HIDDEN TESTS
score += grade("01", "dense", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 5. Look at your activations
#
# Run the cell below once everything passes: the curves should be flat
# where the gradient vanishes (sigmoid and tanh saturate; relu is dead
# for $x < 0$) — that is why deep nets prefer relu.

# %% tags=["skip-grading"]
try:
  import matplotlib.pyplot as plt
  xs = jnp.linspace(-5.0, 5.0, 201)
  fig, ax = plt.subplots(figsize=(6, 3.5))
  for f in (relu, sigmoid, tanh):
    ax.plot(xs, f(xs), label=f.__name__)
  ax.set_ylim(-1.2, 2.0)
  ax.legend()
  ax.grid(alpha=0.3)
  ax.set_title("activations")
  plt.show()
except NotImplementedError:
  print("Finish relu, sigmoid and tanh first to see the plot.")


# %% [markdown]
# ## Check everything
#
# The cell below runs every public test at once: the same checks and lines as
# `autograder check 01`, then a summary per function. Hidden tests also count
# towards your grade.

# %% tags=["skip-grading"]
from autograder.selfcheck import check_all
report = check_all("01", globals())
