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
# # Assignment 03 — backpropagation by hand versus autodiff
#
# `jax.grad` is not magic: it applies the chain rule backwards through the
# operations your function performed. For a layer $y = f(x)$ inside a network
# whose loss is $\mathcal L$, the **backward pass** of the layer receives the
# *upstream gradient* $g = \partial\mathcal L/\partial y$ (same shape as $y$)
# and returns $\partial\mathcal L/\partial x$ (same shape as $x$) and the
# gradients of its parameters — a vector-Jacobian product, $g^\top J_f$, that
# never builds the Jacobian $J_f$.
#
# You will write the backward passes of a ReLU MLP by hand, check them the
# oldest way there is (finite differences), and match `jax.grad` to 7 digits:
#
# | function | returns |
# |---|---|
# | `numerical_grad(f, x, eps=1e-6)` | $\partial f/\partial x$ by central differences |
# | `relu_backward(x, g)` | $g \odot [x > 0]$ |
# | `dense_backward(params, x, g)` | `({"w": dW, "b": db}, dx)` for $y = xW + b$ |
# | `softmax_cross_entropy_backward(logits, labels, g=1.0)` | $g\,(\mathrm{softmax}(z) - \mathrm{onehot}(y))/N$ |
# | `mlp_backward(params, x, y)` | gradients of the mean cross-entropy, shaped like `params` |
#
# The grader calls your functions in **float64** (`jax.enable_x64`) and
# compares with `jax.vjp` of dlfunc's forward functions. The backward
# functions may not use autodiff: that is the point.

# %% [markdown] tags=["rules"]
# **Rules.** Each is checked by a public test, so a full `autograder check` score means none is broken
# (the hidden tests check the same rules on other inputs):
#
# - No autodiff in any graded function (`jax.grad`, `jax.vjp`, `jax.value_and_grad`, `jax.jacfwd`/`jacrev`,
#   `jax.jvp`, ...), no `jax.nn`, `optax`, `flax` or `dlfunc`: a refused call scores that function 0.
# - In float64 (the grader enables `jax.enable_x64`) results stay float64 and match `jax.vjp` to a relative
#   error below $10^{-7}$. Build arrays from the input (`jnp.zeros_like(x)`, `x.dtype`): `jnp.zeros(x.shape)`
#   takes JAX's default dtype (float32, or float64 only while x64 is on), not the input's.
# - `relu_backward`, `dense_backward`, `softmax_cross_entropy_backward` and `mlp_backward` work under `jax.jit`
#   (no Python `if` on array values, no NumPy on traced arrays).
# - `softmax_cross_entropy_backward` is stable: finite and exact at logits of magnitude $10^4$.


# %%
import jax
import jax.numpy as jnp

# %% [markdown]
# ## 1. Finite differences
#
# $$\frac{\partial f}{\partial x_i} \approx \frac{f(x + \varepsilon e_i) - f(x - \varepsilon e_i)}{2\varepsilon},$$
#
# with $e_i$ the $i$-th unit vector (for a matrix $x$: one entry at a time).
# The *central* difference has error $O(\varepsilon^2)$ (Taylor: the
# $f''$ terms cancel) while the forward difference
# $(f(x+\varepsilon e_i) - f(x))/\varepsilon$ has error $O(\varepsilon)$. Too
# small an $\varepsilon$ loses to rounding instead: about
# $10^{-16}|f|/\varepsilon$ in float64. $\varepsilon = 10^{-6}$ balances the two
# (see the figure at the end). It costs $2n$ evaluations of $f$ for $n$
# inputs — which is why nobody trains with it, and everybody tests with it.
#
# **Functions cannot travel to the grader's worker**, so the grader calls
# `numerical_grad("cubic", x)` with the *name* of one of the `PROBES` below;
# the first line of the function (given) looks it up. In the notebook you can
# pass any function.

# %% nbgrader={"grade": false, "grade_id": "given_probes", "locked": true, "schema_version": 3, "solution": false}
# Probe functions numerical_grad is graded on (do not edit: the grader keeps its own copy).
PROBES = {
    "cubic": lambda x: jnp.sum(x ** 3 - 2.0 * x),
    "coupled": lambda x: jnp.sum(jnp.sin(x) * jnp.roll(x, 1) ** 2),
    "logsumexp": lambda x: jnp.log(jnp.sum(jnp.exp(x))),
}


# %% nbgrader={"grade": false, "grade_id": "numerical_grad", "locked": false, "schema_version": 3, "solution": true}
def numerical_grad(f, x, eps=1e-6):
  """Central-difference gradient of the scalar function ``f`` at ``x``; same shape and dtype as ``x``."""
  f = PROBES[f] if isinstance(f, str) else f
  x = jnp.asarray(x)
  # Hint: perturb one entry at a time (a flat index and .at[].set on a zeros_like(x) array keep x's shape and dtype).
  ### BEGIN SOLUTION
  flat = []
  for i in range(x.size):
    e = jnp.zeros_like(x).reshape(-1).at[i].set(eps).reshape(x.shape)
    flat.append((f(x + e) - f(x - e)) / (2 * eps))
  return jnp.stack(flat).reshape(x.shape).astype(x.dtype)
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_numerical_grad", "locked": true, "points": 4, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("03", "numerical_grad", globals())
### BEGIN HIDDEN TESTS
score += grade("03", "numerical_grad", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 2. ReLU, backwards
#
# $y = \max(x, 0)$ elementwise, so $\partial y_i/\partial x_i$ is 1 where
# $x_i > 0$ and 0 where $x_i < 0$; at exactly 0 we take 0 (as JAX, PyTorch and
# Keras do). The Jacobian is diagonal, so the vector-Jacobian product is just
#
# $$\frac{\partial\mathcal L}{\partial x} = g \odot [x > 0].$$
#
# Use `jnp.where` (no Python `if` on array values: it must work under `jax.jit`).

# %% nbgrader={"grade": false, "grade_id": "relu_backward", "locked": false, "schema_version": 3, "solution": true}
def relu_backward(x, g):
  """dL/dx of relu at x, given the upstream gradient g = dL/dy (same shape as x)."""
  # Hint: jnp.where chooses elementwise between two arrays, without a Python if.
  ### BEGIN SOLUTION
  x, g = jnp.asarray(x), jnp.asarray(g)
  return jnp.where(x > 0, g, jnp.zeros((), g.dtype))
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_relu_backward", "locked": true, "points": 3, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("03", "relu_backward", globals())
### BEGIN HIDDEN TESTS
score += grade("03", "relu_backward", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 3. A dense layer, backwards
#
# For a batch $X$ `(B, n_in)`, $Y = XW + b$ with $W$ `(n_in, n_out)`. Write
# $y_{nj} = \sum_i x_{ni} W_{ij} + b_j$ and differentiate:
#
# $$\frac{\partial\mathcal L}{\partial W} = X^\top G, \qquad
# \frac{\partial\mathcal L}{\partial b} = \sum_{n} G_{n,:}, \qquad
# \frac{\partial\mathcal L}{\partial X} = G\,W^\top,$$
#
# with $G = \partial\mathcal L/\partial Y$ `(B, n_out)`. A shape check
# recovers each formula: $\partial\mathcal L/\partial W$ must be `(n_in, n_out)`,
# and $X^\top G$ is the only product of $X$ and $G$ with that shape. The bias is
# broadcast over the batch in the forward pass, so its gradient **sums** over
# the batch. Return `({"w": dW, "b": db}, dx)`.

# %% nbgrader={"grade": false, "grade_id": "dense_backward", "locked": false, "schema_version": 3, "solution": true}
def dense_backward(params, x, g):
  """Backward pass of y = x @ w + b: returns ({"w": dL/dw, "b": dL/db}, dL/dx) for upstream g = dL/dy."""
  # Hint: let the shapes guide you: dW is (n_in, n_out), db is (n_out,), dx is (B, n_in).
  ### BEGIN SOLUTION
  x, g = jnp.asarray(x), jnp.asarray(g)
  grads = {"w": x.T @ g, "b": jnp.sum(g, axis=0)}
  return grads, g @ params["w"].T
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_dense_backward", "locked": true, "points": 4, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("03", "dense_backward", globals())
### BEGIN HIDDEN TESTS
score += grade("03", "dense_backward", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 4. Softmax cross-entropy, backwards
#
# The loss is $\mathcal L = \frac1N \sum_n \bigl(-z_{n,y_n} + \log\sum_k e^{z_{nk}}\bigr)$.
# Differentiating one term by $z_{nk}$:
#
# $$\frac{\partial\mathcal L}{\partial z_{nk}} = \frac1N\Bigl(\mathrm{softmax}(z_n)_k - [k = y_n]\Bigr),$$
#
# "predicted minus true" — the reason softmax and cross-entropy are always
# fused. The loss is the last node of the graph, so its upstream gradient is
# a scalar `g` (1 when the loss is the output; something else when it is
# weighted, e.g. `0.5 * loss`): multiply by it. Compute the softmax stably
# (subtract each row's max) so logits of magnitude $10^4$ stay finite.

# %% nbgrader={"grade": false, "grade_id": "softmax_cross_entropy_backward", "locked": false, "schema_version": 3, "solution": true}
def softmax_cross_entropy_backward(logits, labels, g=1.0):
  """dL/dlogits of the mean softmax cross-entropy with integer labels, times the scalar upstream g."""
  # Hint: predicted minus true: a stable softmax minus the one-hot labels, scaled by g and by 1/N.
  ### BEGIN SOLUTION
  z = jnp.asarray(logits)
  e = jnp.exp(z - jnp.max(z, axis=-1, keepdims=True))
  p = e / jnp.sum(e, axis=-1, keepdims=True)
  onehot = (jnp.asarray(labels)[:, None] == jnp.arange(z.shape[-1])).astype(z.dtype)
  return g * (p - onehot) / z.shape[0]
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_softmax_cross_entropy_backward", "locked": true, "points": 4, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("03", "softmax_cross_entropy_backward", globals())
### BEGIN HIDDEN TESTS
score += grade("03", "softmax_cross_entropy_backward", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 5. Backpropagation through the whole MLP
#
# The MLP of assignment 02 (`params` a list of `{"w", "b"}`, ReLU after every
# layer but the last, mean softmax cross-entropy on the logits). Backprop is
# two sweeps:
#
# 1. **forward**, keeping what the backward pass needs: each layer's input
#    $h_{\ell-1}$ and pre-activation $a_\ell = h_{\ell-1}W_\ell + b_\ell$;
# 2. **backward**, from $g = \partial\mathcal L/\partial z$
#    (`softmax_cross_entropy_backward`) down through the layers: `dense_backward`
#    gives the layer's gradients and $\partial\mathcal L/\partial h_{\ell-1}$,
#    and `relu_backward(a_{\ell-1}, ·)` carries it through the activation below.
#
# Return the gradients as a list shaped exactly like `params`. Memory is the
# price of speed here: the forward sweep stores every activation, so backprop
# costs about two forward passes instead of the $2n$ of finite differences.

# %% nbgrader={"grade": false, "grade_id": "mlp_backward", "locked": false, "schema_version": 3, "solution": true}
def mlp_backward(params, x, y):
  """Gradients of the mean softmax cross-entropy of the relu MLP, as a list of {"w", "b"} like params."""
  # Hint: forward: keep inputs[l] and pre[l]; backward: g = softmax_cross_entropy_backward(z, y), then loop reversed.
  ### BEGIN SOLUTION
  inputs, pre = [], []
  h = jnp.asarray(x)
  for i, layer in enumerate(params):
    inputs.append(h)
    a = h @ layer["w"] + layer["b"]
    pre.append(a)
    h = jnp.maximum(a, 0) if i < len(params) - 1 else a
  g = softmax_cross_entropy_backward(h, y)
  grads = [None] * len(params)
  for i in reversed(range(len(params))):
    grads[i], g = dense_backward(params[i], inputs[i], g)
    if i > 0:
      g = relu_backward(pre[i - 1], g)
  return grads
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_mlp_backward", "locked": true, "points": 6, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("03", "mlp_backward", globals())
### BEGIN HIDDEN TESTS
score += grade("03", "mlp_backward", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 6. How small should $\varepsilon$ be?
#
# The cell below compares your `numerical_grad` with `jax.grad` over
# $\varepsilon$ from $10^{-12}$ to $10^{-1}$ (float64). The V shape is the
# lesson: to the right the truncation error falls like $\varepsilon^2$ (slope 2);
# to the left rounding grows like $1/\varepsilon$. A forward difference
# would have slope 1 on the right. In float32 (try it) the bottom of the V
# sits near $\varepsilon \approx 10^{-2}$ with only ~4 correct digits — one
# reason the grader uses float64.

# %% tags=["skip-grading"]
try:
  import matplotlib.pyplot as plt
  import numpy as np
  with jax.enable_x64(True):
    x0 = jnp.linspace(-1.0, 1.0, 5, dtype=jnp.float64)
    exact = jax.grad(PROBES["coupled"])(x0)
    epss = np.logspace(-12, -1, 23)
    errs = [float(jnp.linalg.norm(numerical_grad("coupled", x0, e) - exact) / jnp.linalg.norm(exact)) for e in epss]
  fig, ax = plt.subplots(figsize=(5.5, 3.5))
  ax.loglog(epss, errs, "o-")
  ax.axhline(1e-7, ls="--", c="gray", label="the grader's bar")
  ax.set(xlabel="eps", ylabel="relative error vs jax.grad", title="central differences, float64")
  ax.legend()
  plt.show()
except NotImplementedError as e:
  print(f"Finish numerical_grad first ({e}).")


# %% [markdown]
# ## Check everything
#
# The cell below runs every public test at once: the same checks and lines as
# `autograder check 03`, then a summary per function. Hidden tests also count
# towards your grade.

# %% tags=["skip-grading"]
from autograder.selfcheck import check_all
report = check_all("03", globals())
