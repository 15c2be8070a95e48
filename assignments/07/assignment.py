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
# # Assignment 07 — recurrent networks: RNN, LSTM, GRU
#
# A recurrent network reads a sequence one step at a time and carries a state
# $h_t$ from step to step. One step is a pure function
#
# $$(\text{carry}_{t-1}, x_t) \mapsto (\text{carry}_t, y_t),$$
#
# and the whole network is that step *unrolled* over time. You will write the
# three classic steps, the unroll with `jax.lax.scan`, and a classifier that
# reads each 8x8 digit as a sequence of 8 rows.
#
# Parameters use the Keras layout (`x @ W`, not PyTorch's `W @ x`):
#
# | cell | `kernel` | `recurrent_kernel` | biases |
# |---|---|---|---|
# | RNN | `(F, H)` | `(H, H)` | `bias (H,)` |
# | LSTM | `(F, 4H)` | `(H, 4H)` | `bias (4H,)` |
# | GRU | `(F, 3H)` | `(H, 3H)` | `bias (3H,)`, `recurrent_bias (3H,)` |
#
# The tests compare your steps with outputs **recorded from Keras 3 and
# PyTorch** (`assignments/07/record_fixtures.py`, with PyTorch's weights
# converted to this layout). Use `jax.numpy` and `jax.lax`; not `dlfunc`,
# and not `jax.nn.sigmoid` (write $\sigma(z) = \tfrac12(1 + \tanh\tfrac z2)$).

# %% [markdown] tags=["rules"]
# **Rules.** Each is checked by a public test, so a full `autograder check` score means none is broken
# (the hidden tests check the same rules on other inputs):
#
# - Use `jax.numpy` and `jax.lax`: not `dlfunc`, `flax`, `keras` or `torch`; the three steps may not use
#   `jax.nn.sigmoid` or `jax.scipy.special.expit` (a refused call scores that function 0).
# - `unroll` runs the step with `jax.lax.scan`, which traces it once; a Python loop over time fails.
# - The steps work under `jax.jit` (with any leading batch axes) and `jax.vmap`; `classifier_apply` and
#   `classifier_train_step` under `jax.jit` (no Python `if` on array values, no NumPy on traced arrays).
# - `gru_step` is stable: finite and correct when the gates saturate (pre-activations near $\pm 100$).


# %%
import jax
import jax.numpy as jnp


def sigmoid(z):
  """The logistic function, written so that it never overflows."""
  return 0.5 * (jnp.tanh(0.5 * z) + 1.0)

# %% [markdown]
# ## 1. The simple (Elman) RNN step
#
# $$h_t = \tanh(x_t W + h_{t-1} U + b), \qquad y_t = h_t .$$
#
# `h` is `(B, H)` and `x` is `(B, F)` (any leading batch axes). Return the pair
# `(h_t, y_t)` — the new carry and the output, which for this cell are the same array.

# %% nbgrader={"grade": false, "grade_id": "rnn_step", "locked": false, "schema_version": 3, "solution": true}
def rnn_step(params, h, x):
  """One Elman RNN step: returns (h_new, h_new) with h_new = tanh(x W + h U + b)."""
  # Hint: x @ params["kernel"] + h @ params["recurrent_kernel"] + params["bias"], then jnp.tanh.
  ### BEGIN SOLUTION
  h = jnp.tanh(x @ params["kernel"] + h @ params["recurrent_kernel"] + params["bias"])
  return h, h
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_rnn_step", "locked": true, "points": 4, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("07", "rnn_step", globals())
### BEGIN HIDDEN TESTS
score += grade("07", "rnn_step", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 2. The LSTM step
#
# Products of many $U$'s make plain-RNN gradients vanish or explode. The LSTM
# keeps a separate *cell* $c_t$ that is updated additively, guarded by gates:
#
# $$[i, f, g, o] = x_t W + h_{t-1} U + b \quad\text{(split the 4H axis into four, in this order)}$$
# $$c_t = \sigma(f) \odot c_{t-1} + \sigma(i) \odot \tanh(g), \qquad h_t = \sigma(o) \odot \tanh(c_t).$$
#
# The carry is the pair `(h, c)`; return `((h_t, c_t), h_t)`. Keras and PyTorch
# agree on the gate order `i, f, g, o`; PyTorch keeps two biases
# (`bias_ih + bias_hh`) that only ever enter as their sum, so here there is one.

# %% nbgrader={"grade": false, "grade_id": "lstm_step", "locked": false, "schema_version": 3, "solution": true}
def lstm_step(params, carry, x):
  """One LSTM step; carry = (h, c); returns ((h_new, c_new), h_new). Gates i, f, g, o."""
  # Hint: compute all four gates in one product, split them in the order i, f, g, o, then update c before h.
  ### BEGIN SOLUTION
  h, c = carry
  z = x @ params["kernel"] + h @ params["recurrent_kernel"] + params["bias"]
  i, f, g, o = jnp.split(z, 4, axis=-1)
  c = sigmoid(f) * c + sigmoid(i) * jnp.tanh(g)
  h = sigmoid(o) * jnp.tanh(c)
  return (h, c), h
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_lstm_step", "locked": true, "points": 5, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("07", "lstm_step", globals())
### BEGIN HIDDEN TESTS
score += grade("07", "lstm_step", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 3. The GRU step
#
# The GRU merges the LSTM's cell into $h$ with two gates, *update* $z$ and
# *reset* $r$. We use the "reset after" variant (Keras 3's default and
# PyTorch's `nn.GRU`): the reset gate multiplies the recurrent projection,
# bias included, which is why the GRU has two biases:
#
# $$[x_z, x_r, x_n] = x_t W + b, \qquad [h_z, h_r, h_n] = h_{t-1} U + b^\text{rec},$$
# $$z = \sigma(x_z + h_z),\quad r = \sigma(x_r + h_r),\quad n = \tanh(x_n + r \odot h_n),\quad
# h_t = z \odot h_{t-1} + (1 - z) \odot n .$$
#
# Gate order `z, r, n` is Keras'; PyTorch stacks `r, z, n` (the fixture script
# reorders PyTorch's weights — read it to see how a port goes wrong).

# %% nbgrader={"grade": false, "grade_id": "gru_step", "locked": false, "schema_version": 3, "solution": true}
def gru_step(params, h, x):
  """One GRU step ("reset after", gates z, r, n); returns (h_new, h_new)."""
  # Hint: split x W + b and h U + b_rec into three each (jnp.split(..., 3, axis=-1)); r multiplies h_n.
  ### BEGIN SOLUTION
  xz, xr, xn = jnp.split(x @ params["kernel"] + params["bias"], 3, axis=-1)
  hz, hr, hn = jnp.split(h @ params["recurrent_kernel"] + params["recurrent_bias"], 3, axis=-1)
  z = sigmoid(xz + hz)
  r = sigmoid(xr + hr)
  n = jnp.tanh(xn + r * hn)
  h = z * h + (1.0 - z) * n
  return h, h
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_gru_step", "locked": true, "points": 5, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("07", "gru_step", globals())
### BEGIN HIDDEN TESTS
score += grade("07", "gru_step", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 4. Unrolling with `jax.lax.scan`
#
# A Python `for` loop over time works, but under `jax.jit` it is *unrolled
# into the program*: 100 steps trace 100 copies of the cell and compile
# slowly. `jax.lax.scan(f, init, xs)` traces `f` once and runs it over the
# leading axis of `xs`:
#
# ```python
# def scan(f, init, xs):          # what jax.lax.scan computes
#   carry, ys = init, []
#   for x in xs:
#     carry, y = f(carry, x)
#     ys.append(y)
#   return carry, jnp.stack(ys)
# ```
#
# Write `unroll(step, params, xs, h0)` for **time-major** `xs` of shape
# `(T, B, F)`: it returns `(final_carry, ys)` with `ys` of shape `(T, B, H)`.
# The carry can be any pytree (the LSTM's is a pair), which `scan` handles.
#
# *Functions cannot travel to the grader's isolated process*, so the grader
# passes `step` by **name** (e.g. `"leaky_step"`, a toy step given below); the
# first line of `unroll`, already written, looks the name up. From your own
# code you can pass the function itself.

# %% nbgrader={"grade": false, "grade_id": "given_steps", "locked": true, "schema_version": 3, "solution": false}
def leaky_step(params, h, x):
  """A toy step for testing unroll: h_t = a * h_{t-1} + x_t @ w, output 2 * h_t."""
  h = params["a"] * h + x @ params["w"]
  return h, 2.0 * h


def pair_step(params, carry, x):
  """A toy step whose carry is a pair (h, total): h_t = tanh(h_{t-1} + x_t @ w), total += h_t; output h_t."""
  h, total = carry
  h = jnp.tanh(h + x @ params["w"])
  return (h, total + h), h


_STEP_RUNS = [0]


def counting_step(params, h, x):
  """leaky_step whose output is how many times Python has run it so far: under jax.lax.scan (traced once)
  every output is the same number; a Python loop over time gives 1, 2, 3, ..."""
  _STEP_RUNS[0] += 1
  h = params["a"] * h + x @ params["w"]
  return h, jnp.full(h.shape, _STEP_RUNS[0], h.dtype)

# %% nbgrader={"grade": false, "grade_id": "unroll", "locked": false, "schema_version": 3, "solution": true}
def unroll(step, params, xs, h0):
  """Run step(params, carry, x_t) over time-major xs (T, B, F) with jax.lax.scan; returns (final_carry, ys)."""
  step = globals()[step] if isinstance(step, str) else step   # the grader sends the step's name
  # Hint: jax.lax.scan wants f(carry, x_t) -> (carry, y_t); step also needs params, so wrap it.
  ### BEGIN SOLUTION
  return jax.lax.scan(lambda carry, x: step(params, carry, x), h0, xs)
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_unroll", "locked": true, "points": 5, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("07", "unroll", globals())
### BEGIN HIDDEN TESTS
score += grade("07", "unroll", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 5. Reading digits row by row
#
# Treat each 8x8 digit as a sequence of $T = 8$ rows with $F = 8$ pixels each.
# A GRU with $H = 32$ reads the rows top to bottom from $h_0 = 0$; its final
# state summarises the image, and a dense layer turns it into 10 logits:
#
# $$\text{logits} = h_8 W_\text{out} + b_\text{out}.$$
#
# `params = {"gru": {kernel (8, 96), recurrent_kernel (32, 96), bias (96,), recurrent_bias (96,)},
# "dense": {"w": (32, 10), "b": (10,)}}`; `images` is `(N, 8, 8)` (batch-major:
# transpose to time-major for `unroll`). Then one SGD step on the mean softmax
# cross-entropy, as in assignment 06. The grader trains your step under `jax.jit`
# for 110 steps (batches of 128, lr 2.0) from its own initial parameters and
# measures the test accuracy of what you return.

# %% nbgrader={"grade": false, "grade_id": "classifier_apply", "locked": false, "schema_version": 3, "solution": true}
def classifier_apply(params, images):
  """Logits (N, 10): a GRU reads the 8 rows of each (8, 8) image; a dense layer reads its final state."""
  # Hint: xs = jnp.swapaxes(images, 0, 1); h0 = zeros (N, H); h, _ = unroll(gru_step, params["gru"], xs, h0).
  ### BEGIN SOLUTION
  images = jnp.asarray(images, jnp.float32)
  hidden = params["gru"]["recurrent_kernel"].shape[0]
  h0 = jnp.zeros((images.shape[0], hidden), images.dtype)
  h, _ = unroll(gru_step, params["gru"], jnp.swapaxes(images, 0, 1), h0)
  return h @ params["dense"]["w"] + params["dense"]["b"]
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_classifier_apply", "locked": true, "points": 3, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("07", "classifier_apply", globals())
### BEGIN HIDDEN TESTS
score += grade("07", "classifier_apply", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% nbgrader={"grade": false, "grade_id": "classifier_train_step", "locked": false, "schema_version": 3, "solution": true}
def classifier_train_step(params, batch, lr):
  """One SGD step on the mean softmax cross-entropy of classifier_apply; batch = (images (B, 8, 8), labels (B,))."""
  # Hint: differentiate the mean cross-entropy of classifier_apply with respect to params, then update every leaf.
  ### BEGIN SOLUTION
  x, y = batch

  def loss(p):
    logp = jax.nn.log_softmax(classifier_apply(p, x))
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
  grads = jax.grad(loss)(params)
  return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_classifier_train_step", "locked": true, "points": 5, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("07", "classifier_train_step", globals())
### BEGIN HIDDEN TESTS
score += grade("07", "classifier_train_step", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 6. Watching the state evolve
#
# After training, plot the 32 components of $h_t$ as the GRU reads one digit
# row by row: most of the decision forms in the last rows, and digits of the
# same class end with similar states. (Needs `dlfunc` for the data only.)

# %% tags=["skip-grading"]
try:
  import matplotlib.pyplot as plt
  from dlfunc.data import load, batches
  train, test = load("digits-seq", "train"), load("digits-seq", "test")
  k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
  lim = lambda a, b: (6.0 / (a + b)) ** 0.5
  params = {"gru": {"kernel": jax.random.uniform(k1, (8, 96), minval=-lim(8, 96), maxval=lim(8, 96)),
                    "recurrent_kernel": jax.random.orthogonal(k2, 96)[:32],
                    "bias": jnp.zeros(96), "recurrent_bias": jnp.zeros(96)},
            "dense": {"w": jax.random.uniform(k3, (32, 10), minval=-lim(32, 10), maxval=lim(32, 10)),
                      "b": jnp.zeros(10)}}
  step = jax.jit(classifier_train_step)
  for epoch in range(10):
    for xb, yb in batches(train.x, train.y, 128, seed=0, epoch=epoch):
      params = step(params, (xb, yb), 2.0)
  acc = float(jnp.mean(jnp.argmax(classifier_apply(params, test.x), -1) == test.y))
  _, hs = unroll(gru_step, params["gru"], jnp.swapaxes(test.x[:1], 0, 1), jnp.zeros((1, 32)))
  fig, (a0, a1) = plt.subplots(1, 2, figsize=(8, 3))
  a0.imshow(test.x[0], cmap="gray_r")
  a0.set_title(f"digit {int(test.y[0])}")
  a1.imshow(hs[:, 0, :].T, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1)
  a1.set_xlabel("row t")
  a1.set_ylabel("unit of h_t")
  a1.set_title(f"GRU state (test accuracy {acc:.3f})")
  plt.show()
except NotImplementedError:
  print("Finish the GRU step, unroll and the classifier first.")


# %% [markdown]
# ## Check everything
#
# The cell below runs every public test at once: the same checks and lines as
# `autograder check 07`, then a summary per function. Hidden tests also count
# towards your grade.

# %% tags=["skip-grading"]
from autograder.selfcheck import check_all
report = check_all("07", globals())
