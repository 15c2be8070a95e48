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
# # Assignment 02 — losses and a first training loop
#
# A network is trained by choosing a **loss** $\mathcal L(\theta)$ that is small
# when its predictions are good, and following its gradient downhill:
#
# $$\theta \leftarrow \theta - \eta \, \nabla_\theta \mathcal L(\theta)$$
#
# (stochastic gradient descent, SGD, with learning rate $\eta$, on one batch
# at a time). JAX computes $\nabla_\theta \mathcal L$ for you with
# `jax.grad`, or the loss *and* the gradient at once with `jax.value_and_grad`,
# for any pytree of parameters (nested lists/dicts of arrays).
#
# You will write seven pure functions:
#
# | function | returns |
# |---|---|
# | `mse(predictions, targets)` | $\frac1n\sum_i (\hat y_i - y_i)^2$ over every element |
# | `binary_cross_entropy_with_logits(logits, targets)` | mean binary cross-entropy, from logits |
# | `softmax_cross_entropy(logits, labels)` | mean cross-entropy for integer class labels |
# | `l2_penalty(params, scale=1.0)` | $\lambda \sum w^2$ over every leaf of a pytree |
# | `mlp_init(key, sizes)` | a list of `{"w", "b"}` layers |
# | `mlp_apply(params, x)` | the MLP's logits |
# | `sgd_train_step(params, batch, lr)` | the parameters after one SGD step |
#
# Every loss returns the **mean over the batch** as a scalar of the input's
# dtype. Use `jax.numpy` (not `numpy`, not `optax`, not `jax.nn`'s
# log-softmax/log-sigmoid, not `dlfunc`). Run `autograder check 02 YOUR_FILE`
# to see which functions pass the public tests; hidden tests also count.

# %% [markdown] tags=["rules"]
# **Rules.** Each is checked by a public test, so a full `autograder check` score means none is broken
# (the hidden tests check the same rules on other inputs):
#
# - Use `jax.numpy`: not `numpy`, not `optax`, not `jax.nn`'s `log_softmax`/`logsumexp`/`softmax`/`log_sigmoid`/
#   `softplus`/`sigmoid` in the losses, not `dlfunc` (a refused call scores that function 0).
# - Every loss returns the mean over the batch, a scalar of the input's dtype.
# - Every function works under `jax.jit` (no Python `if` on array values, no NumPy on traced arrays);
#   `mlp_apply` also under `jax.vmap`.
# - The cross-entropies are stable: finite and exact values and gradients at logits of magnitude $10^4$.
# - `mlp_init` draws only from its `key` argument, and each layer from its own key (`jax.random.split`).


# %%
import jax
import jax.numpy as jnp

# %% [markdown]
# ## 1. Mean squared error (regression)
#
# $$\mathrm{MSE}(\hat y, y) = \frac1n \sum_{i=1}^n (\hat y_i - y_i)^2,$$
#
# the mean over **every** element (for a `(batch, outputs)` array, $n$ =
# batch $\times$ outputs). Its gradient is $\frac{2}{n}(\hat y - y)$.
# Careful: `optax.l2_loss` carries an extra factor $\tfrac12$; Keras'
# `MeanSquaredError` and PyTorch's `MSELoss` do not, and neither do we.

# %% nbgrader={"grade": false, "grade_id": "mse", "locked": false, "schema_version": 3, "solution": true}
def mse(predictions, targets):
  """Mean of (predictions - targets) ** 2 over every element; a scalar."""
  # Hint: the mean runs over every element, not only the batch axis.
  ### BEGIN SOLUTION
  predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
  return jnp.mean(jnp.square(predictions - targets))
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_mse", "locked": true, "points": 3, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("02", "mse", globals())
### BEGIN HIDDEN TESTS
score += grade("02", "mse", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 2. Binary cross-entropy, from logits
#
# For a binary target $y \in [0, 1]$ and a predicted probability
# $p = \sigma(z)$ of the logit $z$:
#
# $$\ell(z, y) = -\,y \log \sigma(z) - (1 - y) \log\bigl(1 - \sigma(z)\bigr).$$
#
# Computed literally this breaks: for $z = 40$, $\sigma(z)$ rounds to exactly
# 1 in float32 and $\log(1 - 1) = -\infty$. Using
# $\log\sigma(z) = -\log(1 + e^{-z})$ and $\log(1-\sigma(z)) = -z - \log(1+e^{-z})$
# and folding the two cases $z \ge 0$ and $z < 0$ into one gives a form with no
# overflow anywhere:
#
# $$\ell(z, y) = \max(z, 0) - z\,y + \log\bigl(1 + e^{-|z|}\bigr).$$
#
# Use `jnp.log1p(x)` for $\log(1 + x)$ (exact for tiny $x$). Its gradient is
# $\sigma(z) - y$: finite for every $z$. Return the mean over all elements.

# %% nbgrader={"grade": false, "grade_id": "binary_cross_entropy_with_logits", "locked": false, "schema_version": 3, "solution": true}
def binary_cross_entropy_with_logits(logits, targets):
  """Mean of max(z, 0) - z * y + log(1 + exp(-|z|)); finite for any finite logit."""
  # Hint: rewrite log(1 + exp(-z)) so that exp only ever sees -|z| (jnp.log1p keeps small values exact).
  ### BEGIN SOLUTION
  z, y = jnp.asarray(logits), jnp.asarray(targets)
  return jnp.mean(jnp.maximum(z, 0) - z * y + jnp.log1p(jnp.exp(-jnp.abs(z))))
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_binary_cross_entropy_with_logits", "locked": true, "points": 4, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("02", "binary_cross_entropy_with_logits", globals())
### BEGIN HIDDEN TESTS
score += grade("02", "binary_cross_entropy_with_logits", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 3. Softmax cross-entropy with integer labels (classification)
#
# A classifier outputs $K$ logits $z$ per example; softmax turns them into
# probabilities, and the loss is minus the log-probability of the true class $y$:
#
# $$\ell(z, y) = -\log \mathrm{softmax}(z)_y = -z_y + \log\sum_{k} e^{z_k}
# = -z_y + m + \log\sum_k e^{z_k - m}, \quad m = \max_k z_k.$$
#
# The last form (**log-sum-exp** with the max subtracted) is finite for logits
# of magnitude $10^4$; `jnp.log(softmax(z))` is not (the softmax underflows
# to 0 and its log is $-\infty$). `labels` are integers of shape `(batch,)`;
# pick each row's entry with `jnp.take_along_axis(logp, labels[:, None], axis=-1)`.
# The gradient with respect to $z$ is $\mathrm{softmax}(z) - \mathrm{onehot}(y)$
# (divided by the batch size, for the mean): a one-line derivation worth doing.
#
# Treat the max as a constant (`jax.lax.stop_gradient`): the result does not
# depend on $m$, and this keeps the gradient exact.

# %% nbgrader={"grade": false, "grade_id": "softmax_cross_entropy", "locked": false, "schema_version": 3, "solution": true}
def softmax_cross_entropy(logits, labels):
  """Mean over the batch of -log softmax(logits)[label]; logits (..., K), integer labels (...)."""
  # Hint: log softmax(z) = z - logsumexp(z); subtract each row's max first so exp stays finite; pick the label's entry.
  ### BEGIN SOLUTION
  z, labels = jnp.asarray(logits), jnp.asarray(labels)
  m = jax.lax.stop_gradient(jnp.max(z, axis=-1, keepdims=True))
  logp = z - m - jnp.log(jnp.sum(jnp.exp(z - m), axis=-1, keepdims=True))
  picked = jnp.take_along_axis(logp, labels[..., None], axis=-1)
  return -jnp.mean(picked)
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_softmax_cross_entropy", "locked": true, "points": 5, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("02", "softmax_cross_entropy", globals())
### BEGIN HIDDEN TESTS
score += grade("02", "softmax_cross_entropy", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 4. An L2 penalty on a pytree
#
# Adding $\lambda \sum_j w_j^2$ to the loss pulls every weight towards 0
# ("weight decay"). Parameters are a **pytree**: here a list of
# `{"w", "b"}` dicts. `jax.tree_util.tree_leaves(params)` lists its arrays,
# whatever the nesting, so one function works for any model:
#
# $$\mathrm{L2}(\theta) = \lambda \sum_{\text{leaves } W} \sum_{ij} W_{ij}^2.$$
#
# No factor $\tfrac12$ (as Keras' `L2(l2=scale)`); note that PyTorch's SGD
# `weight_decay=wd` equals `scale = wd / 2` here. (This penalises biases too;
# many practitioners exclude them — the test gives you the whole tree.)

# %% nbgrader={"grade": false, "grade_id": "l2_penalty", "locked": false, "schema_version": 3, "solution": true}
def l2_penalty(params, scale=1.0):
  """scale * (sum of squares of every array in the pytree ``params``); a scalar."""
  # Hint: jax.tree_util.tree_leaves lists every array of the pytree, whatever its nesting.
  ### BEGIN SOLUTION
  leaves = [jnp.asarray(w) for w in jax.tree_util.tree_leaves(params)]
  total = sum((jnp.sum(jnp.square(w)) for w in leaves[1:]), jnp.sum(jnp.square(leaves[0])))
  return scale * total
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_l2_penalty", "locked": true, "points": 3, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("02", "l2_penalty", globals())
### BEGIN HIDDEN TESTS
score += grade("02", "l2_penalty", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 5. A multi-layer perceptron
#
# An MLP with `sizes = [n_0, n_1, ..., n_L]` is $L$ dense layers; every layer
# but the last is followed by ReLU, and the last returns **logits** (no
# softmax: the loss applies it, stably):
#
# $$h_0 = x, \qquad h_\ell = \mathrm{relu}(h_{\ell-1} W_\ell + b_\ell)\ (\ell < L), \qquad
# \text{logits} = h_{L-1} W_L + b_L.$$
#
# **`mlp_init(key, sizes)`** returns `[{"w": (n_0, n_1), "b": (n_1,)}, ...,
# {"w": (n_{L-1}, n_L), "b": (n_L,)}]`, float32, with Glorot-uniform weights
# $U(-l, l)$, $l = \sqrt{6/(n_\text{in} + n_\text{out})}$ (assignment 01) and
# zero biases. Every layer needs its **own** key: `jax.random.split(key, L)`.
# Reusing one key would give equal-shaped layers the same weights.
#
# **`mlp_apply(params, x)`** takes `x` of shape `(..., n_0)` (any leading
# batch axes) and returns `(..., n_L)` logits.

# %% nbgrader={"grade": false, "grade_id": "mlp_init", "locked": false, "schema_version": 3, "solution": true}
def mlp_init(key, sizes):
  """[{"w": (n_in, n_out) Glorot-uniform float32, "b": (n_out,) zeros}, ...] for consecutive sizes."""
  # Hint: split the key into one key per layer, and draw each layer's weights from its own key.
  ### BEGIN SOLUTION
  keys = jax.random.split(key, len(sizes) - 1)
  params = []
  for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:]):
    limit = (6.0 / (n_in + n_out)) ** 0.5
    params.append({"w": jax.random.uniform(k, (n_in, n_out), jnp.float32, -limit, limit),
                   "b": jnp.zeros((n_out,), jnp.float32)})
  return params
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_mlp_init", "locked": true, "points": 4, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("02", "mlp_init", globals())
### BEGIN HIDDEN TESTS
score += grade("02", "mlp_init", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% nbgrader={"grade": false, "grade_id": "mlp_apply", "locked": false, "schema_version": 3, "solution": true}
def mlp_apply(params, x):
  """Logits of the MLP: relu after every layer but the last; x (..., n_0) -> (..., n_L)."""
  # Hint: the hidden layers are dense + relu; the last layer is dense only (the loss applies the softmax).
  ### BEGIN SOLUTION
  x = jnp.asarray(x)
  for layer in params[:-1]:
    x = jnp.maximum(x @ layer["w"] + layer["b"], 0.0)
  return x @ params[-1]["w"] + params[-1]["b"]
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_mlp_apply", "locked": true, "points": 4, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("02", "mlp_apply", globals())
### BEGIN HIDDEN TESTS
score += grade("02", "mlp_apply", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 6. One step of SGD
#
# `sgd_train_step(params, batch, lr)` takes a batch `(x, labels)`, computes the
# mean cross-entropy of `mlp_apply(params, x)` and its gradient with
# `jax.value_and_grad`, and returns the updated parameters
#
# $$\theta \leftarrow \theta - \eta\,\nabla_\theta\,
# \frac1B\sum_{n=1}^{B} \ell\bigl(\mathrm{mlp}(\theta, x_n), y_n\bigr)$$
#
# with the same structure as `params`. `jax.tree_util.tree_map(f, params, grads)`
# applies `f` leaf by leaf. Keep it pure (no printing, no globals): the grader
# runs it under `jax.jit`, 1,100 times, on the 8×8 handwritten digits
# (64 standardised pixels, 10 classes) from a fixed initialisation, and then
# measures the accuracy of the parameters you return on digits your step never
# saw. It must reach **95 %**. (The step uses your `mlp_apply` and
# `softmax_cross_entropy`: make those pass first.)

# %% nbgrader={"grade": false, "grade_id": "sgd_train_step", "locked": false, "schema_version": 3, "solution": true}
def sgd_train_step(params, batch, lr):
  """One SGD step on the mean softmax cross-entropy of mlp_apply; returns the new params."""
  # Hint: differentiate a loss of the parameters alone, then update every leaf with jax.tree_util.tree_map.
  ### BEGIN SOLUTION
  x, labels = batch

  def loss_fn(p):
    return softmax_cross_entropy(mlp_apply(p, x), labels)

  loss, grads = jax.value_and_grad(loss_fn)(params)
  return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_sgd_train_step", "locked": true, "points": 7, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("02", "sgd_train_step", globals())
### BEGIN HIDDEN TESTS
score += grade("02", "sgd_train_step", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 7. Watch it learn
#
# The cell below trains your MLP on the digits with your step and plots the
# training loss and the test accuracy after every epoch. Things to try: a
# learning rate 10× larger or smaller; `sizes=[64, 10]` (no hidden layer: a
# linear classifier); adding `l2_penalty(p, 1e-3)` to the loss.

# %% tags=["skip-grading"]
try:
  import matplotlib.pyplot as plt
  import numpy as np
  import dlfunc.data  # only for the data: the same digits the grader uses

  train, test = dlfunc.data.load("digits", "train"), dlfunc.data.load("digits", "test")
  x_tr, x_te = train.x.reshape(len(train.x), -1), test.x.reshape(len(test.x), -1)
  mu, sd = x_tr.mean(0), x_tr.std(0) + 0.1
  x_tr, x_te = (x_tr - mu) / sd, (x_te - mu) / sd
  params = mlp_init(jax.random.key(0), [64, 128, 10])
  step = jax.jit(sgd_train_step)
  losses, accs = [], []
  for epoch in range(40):
    for xb, yb in dlfunc.data.batches(x_tr, train.y, 128, seed=0, epoch=epoch):
      params = step(params, (xb, yb), 0.2)
    losses.append(float(softmax_cross_entropy(mlp_apply(params, x_tr), train.y)))
    accs.append(float(jnp.mean(jnp.argmax(mlp_apply(params, x_te), -1) == test.y)))
  fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
  a1.plot(losses)
  a1.set(xlabel="epoch", ylabel="training cross-entropy", yscale="log")
  a2.plot(accs)
  a2.axhline(0.95, ls="--", c="gray")
  a2.set(xlabel="epoch", ylabel="test accuracy", ylim=(0.8, 1.0))
  fig.tight_layout()
  plt.show()
except NotImplementedError as e:
  print(f"Finish the functions above first ({e}).")


# %% [markdown]
# ## Check everything
#
# The cell below runs every public test at once: the same checks and lines as
# `autograder check 02`, then a summary per function. Hidden tests also count
# towards your grade.

# %% tags=["skip-grading"]
from autograder.selfcheck import check_all
report = check_all("02", globals())
