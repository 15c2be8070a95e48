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
# # Assignment 05 — regularization, dropout, batch normalization
#
# A network with enough parameters can memorise its training set, noise
# included: training accuracy 100 %, test accuracy much lower. The
# difference is the **generalisation gap**. *Regularization* trades a little
# training fit for a smaller gap: penalties on the weights (L1, L2), and
# **dropout**, which trains a different random sub-network at every step.
# *Normalization* layers (batch norm, layer norm) keep activations at a
# steady scale so deep nets train quickly, and batch norm regularises a
# little too.
#
# | function | returns |
# |---|---|
# | `dropout(key, x, rate, train=True)` | inverted dropout: zero with probability `rate`, scale the rest by $1/(1-\text{rate})$ |
# | `batch_norm(x, gamma, beta, running_mean, running_var, train, momentum=0.99, eps=1e-5)` | `(y, new_mean, new_var)` |
# | `layer_norm(x, gamma, beta, eps=1e-5)` | normalised over the last axis, scaled and shifted |
# | `l1_penalty(params, scale=1.0)` | $\lambda\sum\lvert w\rvert$ over every leaf |
# | `regularized_train_step(params, batch, lr, l2, rate)` | one SGD step of an MLP with L2 and dropout |
#
# Train-time and test-time behaviour differ for dropout and batch norm: the
# `train` flag is a Python `bool` (static under `jax.jit`). Use `jax.numpy`
# only (no `flax`, `optax` or `dlfunc`).

# %% [markdown] tags=["rules"]
# **Rules.** Each is checked by a public test, so a full `autograder check` score means none is broken
# (the hidden tests check the same rules on other inputs):
#
# - Use `jax.numpy`: no `flax`, `optax`, `jax.nn.standardize` or `dlfunc` (a refused call scores that
#   function 0).
# - `dropout` draws its mask only from its `key` argument: the same key gives the same mask, another key
#   another mask; `regularized_train_step` draws its masks from the batch's key, so the same key gives the
#   same step.
# - `dropout`, `batch_norm` (with `train` static) and `regularized_train_step` work under `jax.jit`; `rate`,
#   `lr` and `l2` may be traced values (no Python `if` on them).
# - `layer_norm` adds `eps` inside the square root (a constant row gives `beta`, finite) and uses no batch
#   statistics (`jax.vmap` over the batch equals the batched call).


# %%
import jax
import jax.numpy as jnp

# %% [markdown]
# ## 1. Dropout
#
# In training, each element is kept with probability $1 - p$ ($p$ = `rate`,
# the **drop** probability, as in Keras and PyTorch) and *divided by*
# $1 - p$:
#
# $$y = \frac{m \odot x}{1 - p}, \qquad m_i \sim \mathrm{Bernoulli}(1 - p),
# \qquad \mathbb E[y] = x.$$
#
# This *inverted* dropout keeps the expected activation unchanged, so at
# test time (`train=False`) dropout is simply the identity. The mask comes
# **only** from `key` (`jax.random.bernoulli(key, 1 - rate, x.shape)`): the
# same key must give the same mask. `rate` may be a traced value inside a
# jitted training step: do not branch on it with Python `if`; `train` is a
# plain bool and you may.

# %% nbgrader={"grade": false, "grade_id": "dropout", "locked": false, "schema_version": 3, "solution": true}
def dropout(key, x, rate, train=True):
  """Inverted dropout: zero each element with probability rate, scale the rest by 1/(1-rate); identity if not train."""
  # Hint: draw a keep-mask from key with probability 1 - rate, and rescale what you keep so the mean stays x.
  ### BEGIN SOLUTION
  x = jnp.asarray(x)
  if not train:
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), jnp.zeros((), x.dtype)).astype(x.dtype)
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_dropout", "locked": true, "points": 6, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("05", "dropout", globals())
### BEGIN HIDDEN TESTS
score += grade("05", "dropout", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 2. Batch normalization
#
# For features on the last axis, with statistics over every other axis
# (the batch, and height and width for images):
#
# $$\mu_B = \mathrm{mean}(x), \quad \sigma_B^2 = \mathrm{mean}\bigl((x - \mu_B)^2\bigr), \quad
# y = \gamma\,\frac{x - \mu_B}{\sqrt{\sigma_B^2 + \epsilon}} + \beta.$$
#
# **Training** (`train=True`) normalises with the batch's own $\mu_B, \sigma_B^2$
# and updates the running statistics the network will use later:
#
# $$\text{new\_mean} = m\cdot\text{running\_mean} + (1 - m)\,\mu_B, \qquad
# \text{new\_var} = m\cdot\text{running\_var} + (1 - m)\,\sigma_B^2.$$
#
# **Inference** (`train=False`) uses `running_mean` and `running_var` in
# place of $\mu_B, \sigma_B^2$ (one example at a time must work) and returns
# them unchanged. **Conventions** (Keras and Flax): `momentum` $m$ = 0.99 is
# the weight of the *old* value, and $\sigma_B^2$ is the biased variance (divide
# by $n$). PyTorch's `momentum=0.1` is the weight of the *new* value (0.9 here)
# and it stores the unbiased variance. Gradients flow through $\mu_B$ and
# $\sigma_B^2$ too — `jax.grad` handles that for you.

# %% nbgrader={"grade": false, "grade_id": "batch_norm", "locked": false, "schema_version": 3, "solution": true}
def batch_norm(x, gamma, beta, running_mean, running_var, train, momentum=0.99, eps=1e-5):
  """(y, new_mean, new_var): batch statistics when training, running statistics otherwise."""
  # Hint: statistics per channel (the last axis) over every other axis; the running values move by momentum.
  ### BEGIN SOLUTION
  x = jnp.asarray(x)
  if train:
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axis=axes)
    var = jnp.mean(jnp.square(x - mean), axis=axes)
    new_mean = momentum * running_mean + (1.0 - momentum) * mean
    new_var = momentum * running_var + (1.0 - momentum) * var
  else:
    mean, var = jnp.asarray(running_mean), jnp.asarray(running_var)
    new_mean, new_var = mean, var
  y = gamma * (x - mean) * jax.lax.rsqrt(var + eps) + beta
  return y, new_mean, new_var
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_batch_norm", "locked": true, "points": 8, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("05", "batch_norm", globals())
### BEGIN HIDDEN TESTS
score += grade("05", "batch_norm", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 3. Layer normalization
#
# The same formula, but statistics over the **features of each example**
# (the last axis), so nothing depends on the rest of the batch: train and
# test behave alike, batches of one work, and sequence models (and
# transformers) use it everywhere.
#
# $$\mu = \frac1D\sum_d x_d, \qquad \sigma^2 = \frac1D\sum_d (x_d - \mu)^2, \qquad
# y = \gamma\,\frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta.$$
#
# Reduce with `keepdims=True` so the statistics broadcast back. A constant
# row has $\sigma^2 = 0$: $\epsilon$ inside the root keeps it finite.

# %% nbgrader={"grade": false, "grade_id": "layer_norm", "locked": false, "schema_version": 3, "solution": true}
def layer_norm(x, gamma, beta, eps=1e-5):
  """Normalise each example over the last axis, then y * gamma + beta (gamma, beta of shape (D,))."""
  # Hint: mean = x.mean(-1, keepdims=True); var = ((x - mean) ** 2).mean(-1, keepdims=True).
  ### BEGIN SOLUTION
  x = jnp.asarray(x)
  mean = jnp.mean(x, axis=-1, keepdims=True)
  var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
  return gamma * (x - mean) * jax.lax.rsqrt(var + eps) + beta
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_layer_norm", "locked": true, "points": 5, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("05", "layer_norm", globals())
### BEGIN HIDDEN TESTS
score += grade("05", "layer_norm", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 4. L1 penalty
#
# $$\mathrm{L1}(\theta) = \lambda\sum_{\text{leaves } W}\sum_{ij}\lvert W_{ij}\rvert.$$
#
# Where L2 ($\lambda\sum w^2$, assignment 02) shrinks every weight in
# proportion to its size, L1's gradient $\lambda\,\mathrm{sign}(w)$ pushes
# every weight towards 0 by the same amount: small weights reach exactly 0,
# and the model becomes **sparse**.

# %% nbgrader={"grade": false, "grade_id": "l1_penalty", "locked": false, "schema_version": 3, "solution": true}
def l1_penalty(params, scale=1.0):
  """scale * (sum of |w| over every array in the pytree params); a scalar."""
  # Hint: sum(jnp.sum(jnp.abs(w)) for w in jax.tree_util.tree_leaves(params)), times scale.
  ### BEGIN SOLUTION
  leaves = [jnp.asarray(w) for w in jax.tree_util.tree_leaves(params)]
  return scale * sum((jnp.sum(jnp.abs(w)) for w in leaves[1:]), jnp.sum(jnp.abs(leaves[0])))
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_l1_penalty", "locked": true, "points": 3, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("05", "l1_penalty", globals())
### BEGIN HIDDEN TESTS
score += grade("05", "l1_penalty", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 5. Regularization against memorisation
#
# `regularized_train_step(params, batch, lr, l2, rate)` is one SGD step of
# the ReLU MLP of assignment 02 (`params` a list of `{"w", "b"}`) with
#
# * **dropout** after every hidden ReLU, in training mode, each layer with
#   its own key: `keys = jax.random.split(key, len(params) - 1)`;
# * the loss: mean cross-entropy (the given `cross_entropy` below) plus
#   `l2` times the sum of squared **weights** (`"w"` only, not the biases).
#
# `batch` is `(x, labels, key)`: a fresh dropout key every step. Return the
# new parameters. `lr`, `l2` and `rate` are traced under `jax.jit`.
#
# The grader runs your step twice, 400 steps each (lr 0.2, sizes
# `[64, 128, 10]`), on 300 training digits of which **25 % have random
# labels**: plain (`l2=0, rate=0`) the net memorises the noise; with
# `l2=3e-3, rate=0.5` it should not. It measures train and test accuracy of
# the parameters you return: regularization must narrow the train/test gap
# by at least 0.05 without lowering test accuracy (the reference narrows it
# by about 0.15 and gains about 0.06 in test accuracy).

# %% nbgrader={"grade": false, "grade_id": "given_cross_entropy", "locked": true, "schema_version": 3, "solution": false}
def cross_entropy(logits, labels):
  """Given: mean softmax cross-entropy with integer labels (assignment 02)."""
  logp = logits - jax.scipy.special.logsumexp(logits, axis=-1, keepdims=True)
  return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))


# %% nbgrader={"grade": false, "grade_id": "regularized_train_step", "locked": false, "schema_version": 3, "solution": true}
def regularized_train_step(params, batch, lr, l2, rate):
  """One SGD step on cross_entropy + l2 * sum(w**2), with dropout(rate) after every hidden relu."""
  # Hint: in loss_fn(p): h = relu(h @ w + b) then h = dropout(k, h, rate, True) per hidden layer; add l2 * sum(w**2).
  ### BEGIN SOLUTION
  x, labels, key = batch
  keys = jax.random.split(key, len(params) - 1)

  def loss_fn(p):
    h = x
    for k, layer in zip(keys, p[:-1]):
      h = dropout(k, jnp.maximum(h @ layer["w"] + layer["b"], 0.0), rate, True)
    logits = h @ p[-1]["w"] + p[-1]["b"]
    return cross_entropy(logits, labels) + l2 * sum(jnp.sum(jnp.square(layer["w"])) for layer in p)

  grads = jax.grad(loss_fn)(params)
  return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_regularized_train_step", "locked": true, "points": 5, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("05", "regularized_train_step", globals())
### BEGIN HIDDEN TESTS
score += grade("05", "regularized_train_step", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 6. See the gap
#
# The cell below repeats the grader's experiment and plots train and test
# accuracy during training, plain and regularised. Try L2 alone, dropout
# alone, a larger `l2` (the gap closes, but both accuracies fall: under-fitting),
# and `noise = 0` (little to regularise on clean digits).

# %% tags=["skip-grading"]
try:
  import matplotlib.pyplot as plt
  import numpy as np
  import dlfunc.data  # only for the data: the same digits the grader uses

  train, test = dlfunc.data.load("digits", "train"), dlfunc.data.load("digits", "test")
  n, noise = 300, 0.25
  x_all, x_te = train.x.reshape(len(train.x), -1), test.x.reshape(len(test.x), -1)
  mu, sd = x_all.mean(0), x_all.std(0) + 0.1
  x_tr, x_te = (x_all[:n] - mu) / sd, (x_te - mu) / sd
  rng = np.random.default_rng(0)
  y_tr = np.array(train.y[:n])
  flip = rng.random(n) < noise
  y_tr[flip] = rng.integers(0, 10, int(flip.sum()))

  def accuracy(p, x, y):
    h = x
    for layer in p[:-1]:
      h = jnp.maximum(h @ layer["w"] + layer["b"], 0.0)
    return float(jnp.mean(jnp.argmax(h @ p[-1]["w"] + p[-1]["b"], -1) == y))

  step = jax.jit(regularized_train_step)
  fig, ax = plt.subplots(figsize=(7, 3.5))
  for (l2, rate), color in (((0.0, 0.0), "C0"), ((3e-3, 0.5), "C1")):
    rng_init = np.random.default_rng(0)
    params = [{"w": jnp.asarray(rng_init.uniform(-np.sqrt(6 / (a + b)), np.sqrt(6 / (a + b)), (a, b)), jnp.float32),
               "b": jnp.zeros(b)} for a, b in ((64, 128), (128, 10))]
    history = []
    for s in range(400):
      idx = np.random.default_rng((0, s)).choice(n, 50, replace=False)
      params = step(params, (x_tr[idx], y_tr[idx], jax.random.fold_in(jax.random.key(0), s)), 0.2, l2, rate)
      if s % 25 == 24:
        history.append((s + 1, accuracy(params, x_tr, y_tr), accuracy(params, x_te, test.y)))
    h = np.array(history)
    ax.plot(h[:, 0], h[:, 1], "--", c=color, label=f"train (l2={l2:g}, rate={rate:g})")
    ax.plot(h[:, 0], h[:, 2], "-", c=color, label=f"test (l2={l2:g}, rate={rate:g})")
  ax.set(xlabel="step", ylabel="accuracy", title="300 digits, 25 % random labels")
  ax.legend(fontsize=8)
  plt.show()
except NotImplementedError as e:
  print(f"Finish the functions above first ({e}).")


# %% [markdown]
# ## Check everything
#
# The cell below runs every public test at once: the same checks and lines as
# `autograder check 05`, then a summary per function. Hidden tests also count
# towards your grade.

# %% tags=["skip-grading"]
from autograder.selfcheck import check_all
report = check_all("05", globals())
