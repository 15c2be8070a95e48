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
# # Assignment 06 — convolutional networks
#
# A dense layer connects every input pixel to every unit: it ignores that
# images have *neighbourhoods* and that a stroke means the same thing wherever
# it appears. A **convolution** slides one small kernel over the image, so the
# same weights look at every position (weight sharing) and each output only
# sees a small window (locality).
#
# Layouts (the same as Keras and `jax.lax`; PyTorch uses NCHW / OIHW):
#
# * images `x`: `(N, H, W, C_in)` (NHWC),
# * kernel `params["kernel"]`: `(kh, kw, C_in, C_out)` (HWIO), bias `(C_out,)`.
#
# For stride $(s_h, s_w)$ and an input already padded with zeros,
#
# $$y_{n,i,j,o} = b_o + \sum_{a=0}^{k_h-1}\sum_{c=0}^{k_w-1}\sum_{m} x_{n,\; i s_h + a,\; j s_w + c,\; m}\, K_{a,c,m,o},
# \qquad H_\text{out} = \left\lfloor \frac{H_\text{pad} - k_h}{s_h} \right\rfloor + 1 .$$
#
# (Strictly this is a *cross-correlation* — the kernel is not flipped — and every
# deep-learning library calls it convolution.)
#
# You will write:
#
# | function | what it does |
# |---|---|
# | `conv2d_naive(params, x, strides, padding)` | the formula above with Python loops (or im2col) |
# | `conv2d(params, x, strides=1, padding="VALID")` | the same through `jax.lax.conv_general_dilated` |
# | `max_pool2d(x, window=2, strides=None, padding="VALID")` | max over windows, via `jax.lax.reduce_window` |
# | `CNN`, `cnn_init`, `cnn_apply` | the seed CNN as a Flax module |
# | `cnn_train_step(variables, batch, lr)` | one SGD step on the softmax cross-entropy |
#
# Use `jax.numpy`, `jax.lax` and `flax.linen`; not `dlfunc`. Run
# `autograder check 06 YOUR_FILE` to see which functions pass the public tests;
# hidden tests also count.

# %% [markdown] tags=["rules"]
# **Rules.** Each is checked by a public test, so a full `autograder check` score means none is broken
# (the hidden tests check the same rules on other inputs):
#
# - Not `dlfunc`; `conv2d_naive` may not call `jax.lax.conv*`, `jnp.convolve`, `jax.scipy.signal` or `flax`
#   (a refused call scores that function 0).
# - `conv2d_naive` works under `jax.grad` (its gradients match, float64).
# - `max_pool2d` pads with $-\infty$: padded cells never win.
# - `cnn_init` draws only from its `key` argument: the same key gives the same variables, another key others.
# - `cnn_apply` and `cnn_train_step` work under `jax.jit` (no Python `if` on array values, no NumPy on
#   traced arrays).


# %%
import jax
import jax.numpy as jnp
from flax import linen as nn

# %% [markdown]
# ## 1. Convolution by hand
#
# `strides` is a pair $(s_h, s_w)$; `padding` is a pair of pairs
# `((top, bottom), (left, right))`: that many rows/columns of zeros are added
# before sliding the kernel (`jnp.pad` with `((0, 0), (top, bottom), (left, right), (0, 0))`).
#
# You can loop over output positions, but there is a shorter loop: over the
# $k_h k_w$ kernel taps. For tap $(a, c)$ the inputs that meet $K_{a,c}$ are
# the strided slice `xp[:, a : a + s_h*(H_out-1) + 1 : s_h, c : c + s_w*(W_out-1) + 1 : s_w, :]`,
# of shape `(N, H_out, W_out, C_in)`; multiply it by `K[a, c]` (`(C_in, C_out)`)
# and add everything up. The loops run in Python over static sizes, so the
# function still works under `jax.jit` and `jax.grad`.

# %% nbgrader={"grade": false, "grade_id": "conv2d_naive", "locked": false, "schema_version": 3, "solution": true}
def conv2d_naive(params, x, strides=(1, 1), padding=((0, 0), (0, 0))):
  """2-D convolution (NHWC, HWIO) with explicit zero padding, written with loops; returns (N, H_out, W_out, C_out)."""
  # Hint: pad with jnp.pad, then for each kernel tap (a, c) add xp[:, a::sh, c::sw, :][:, :H_out, :W_out] @ K[a, c].
  ### BEGIN SOLUTION
  k = jnp.asarray(params["kernel"])
  x = jnp.asarray(x)
  (sh, sw), ((pt, pb), (pl, pr)) = strides, padding
  xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  kh, kw = k.shape[0], k.shape[1]
  h_out = (xp.shape[1] - kh) // sh + 1
  w_out = (xp.shape[2] - kw) // sw + 1
  y = jnp.zeros((x.shape[0], h_out, w_out, k.shape[3]), jnp.result_type(x, k))
  for a in range(kh):
    for c in range(kw):
      patch = xp[:, a:a + sh * (h_out - 1) + 1:sh, c:c + sw * (w_out - 1) + 1:sw, :]
      y = y + patch @ k[a, c]
  return y + params["bias"]
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_conv2d_naive", "locked": true, "points": 6, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("06", "conv2d_naive", globals())
### BEGIN HIDDEN TESTS
score += grade("06", "conv2d_naive", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 2. Convolution through XLA
#
# Loops are fine for learning; XLA's convolution is what you train with.
# `jax.lax.conv_general_dilated(x, kernel, window_strides, padding, dimension_numbers=...)`
# takes `padding` as `"VALID"`, `"SAME"` or a list of `(low, high)` pairs, and
# `dimension_numbers=("NHWC", "HWIO", "NHWC")` tells it our layouts. Accept
# what Keras and PyTorch users pass:
#
# * `strides`: an int or a pair;
# * `padding`: `"VALID"`/`"SAME"` (any case), an int $p$ (that many zeros on
#   every side, PyTorch's `padding=p`), or `((top, bottom), (left, right))`.
#
# `"SAME"` gives $H_\text{out} = \lceil H / s \rceil$, putting the odd extra
# zero at the bottom/right — PyTorch's symmetric `padding=1` with stride 2 on
# an even size is *not* the same thing, which is why porting needs explicit pairs.

# %% nbgrader={"grade": false, "grade_id": "conv2d", "locked": false, "schema_version": 3, "solution": true}
def conv2d(params, x, strides=1, padding="VALID"):
  """2-D convolution via jax.lax.conv_general_dilated; NHWC input, HWIO kernel, optional bias."""
  # Hint: normalise strides to a pair and an int padding p to [(p, p), (p, p)]; strings go through unchanged.
  ### BEGIN SOLUTION
  k = jnp.asarray(params["kernel"])
  x = jnp.asarray(x)
  if isinstance(strides, int):
    strides = (strides, strides)
  if isinstance(padding, str):
    padding = padding.upper()
  elif isinstance(padding, int):
    padding = [(padding, padding)] * 2
  else:
    padding = [tuple(p) for p in padding]
  y = jax.lax.conv_general_dilated(x, k, window_strides=tuple(strides), padding=padding,
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  bias = params.get("bias")
  return y if bias is None else y + bias
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_conv2d", "locked": true, "points": 6, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("06", "conv2d", globals())
### BEGIN HIDDEN TESTS
score += grade("06", "conv2d", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 3. Max pooling
#
# $$y_{n,i,j,c} = \max_{0 \le a < w_h,\ 0 \le b < w_w} x_{n,\; i s_h + a,\; j s_w + b,\; c}$$
#
# — a per-channel max over each window, which makes features a little
# translation-invariant and halves the resolution with `window=2`. `strides`
# defaults to `window` (Keras and PyTorch agree). With `"SAME"` padding the
# padded cells must never win, so pad with $-\infty$, not 0: use
# `jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, wh, ww, 1), (1, sh, sw, 1), padding)`.
# Its gradient sends the upstream gradient to the arg-max of each window.
#
# Pass the initial value as the plain Python float `-jnp.inf`, not as
# `jnp.array(-jnp.inf)`: under `jax.jit` a jnp constant is traced, and
# `reduce_window` then falls back to a generic reduction that `jax.grad` cannot
# differentiate ("Linearization failed ...").

# %% nbgrader={"grade": false, "grade_id": "max_pool2d", "locked": false, "schema_version": 3, "solution": true}
def max_pool2d(x, window=2, strides=None, padding="VALID"):
  """Max over (wh, ww) windows of an (N, H, W, C) input; strides default to the window."""
  # Hint: jax.lax.reduce_window with init -jnp.inf (a Python float), jax.lax.max, and 4-d window/strides (1, wh, ww, 1).
  ### BEGIN SOLUTION
  x = jnp.asarray(x)
  window = (window, window) if isinstance(window, int) else tuple(window)
  strides = window if strides is None else ((strides, strides) if isinstance(strides, int) else tuple(strides))
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, *window, 1), (1, *strides, 1), padding.upper())
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_max_pool2d", "locked": true, "points": 4, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("06", "max_pool2d", globals())
### BEGIN HIDDEN TESTS
score += grade("06", "max_pool2d", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 4. The seed CNN as a Flax module
#
# The course's seed CNN (PyTorch version on the left; note that `Conv2d` has no
# `activation=` argument — the ReLU goes in `forward`):
#
# ```python
# class CNN(torch.nn.Module):                      # class CNN(nn.Module):   (Flax)
#   def __init__(self):                            #   @nn.compact
#     super().__init__()                           #   def __call__(self, x):
#     self.conv1 = nn.Conv2d(1, 32, 3)             #     x = nn.Conv(32, (3, 3), padding="VALID")(x)
#     self.fc1 = nn.Linear(32 * 26 * 26, 10)       #     x = nn.relu(x)
#   def forward(self, x):                          #     x = x.reshape((x.shape[0], -1))
#     x = F.relu(self.conv1(x))                    #     return nn.Dense(10)(x)
#     return self.fc1(x.flatten(1))
# ```
#
# A Flax module is a *description*; `CNN().init(key, example_x)` creates the
# parameters (`{"params": {"Conv_0": {"kernel", "bias"}, "Dense_0": {...}}}`)
# and `CNN().apply(variables, x)` runs it — the parameters stay outside, as
# plain arrays you can `jit`, `grad` and save. On the 8x8 digits the conv gives
# `(N, 6, 6, 32)`, flattened to 1152 features. Use `nn.Conv` and `nn.Dense`
# (the default names `Conv_0`/`Dense_0` matter: the grader loads its own weights
# into your module).

# %% nbgrader={"grade": false, "grade_id": "CNN", "locked": false, "schema_version": 3, "solution": true}
class CNN(nn.Module):
  """Conv(32, 3x3, VALID) + ReLU -> flatten -> Dense(10); returns logits."""

  @nn.compact
  def __call__(self, x):
    # Hint: nn.Conv(32, (3, 3), padding="VALID"), nn.relu, reshape to (N, -1), nn.Dense(10).
    ### BEGIN SOLUTION
    x = nn.relu(nn.Conv(32, (3, 3), padding="VALID")(jnp.asarray(x, jnp.float32)))
    return nn.Dense(10)(x.reshape((x.shape[0], -1)))
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "cnn_init", "locked": false, "schema_version": 3, "solution": true}
def cnn_init(key):
  """Variables of CNN for 8x8x1 images: CNN().init(key, a (1, 8, 8, 1) array)."""
  # Hint: a Flax module's init needs a key and an example input of the right shape (its values do not matter).
  ### BEGIN SOLUTION
  return CNN().init(key, jnp.zeros((1, 8, 8, 1), jnp.float32))
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_cnn_init", "locked": true, "points": 2, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("06", "cnn_init", globals())
### BEGIN HIDDEN TESTS
score += grade("06", "cnn_init", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% nbgrader={"grade": false, "grade_id": "cnn_apply", "locked": false, "schema_version": 3, "solution": true}
def cnn_apply(variables, x):
  """Logits (N, 10) of CNN for images x of shape (N, 8, 8, 1)."""
  # Hint: a Flax module is applied to the variables that init returned.
  ### BEGIN SOLUTION
  return CNN().apply(variables, x)
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_cnn_apply", "locked": true, "points": 3, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("06", "cnn_apply", globals())
### BEGIN HIDDEN TESTS
score += grade("06", "cnn_apply", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 5. Training
#
# One SGD step on the mean softmax cross-entropy with integer labels,
#
# $$L(\theta) = -\frac1N \sum_n \log \mathrm{softmax}(f_\theta(x_n))_{y_n}, \qquad
# \theta \leftarrow \theta - \eta\, \nabla_\theta L .$$
#
# `batch` is a pair `(x, y)`: `x` of shape `(B, 8, 8, 1)` float32, `y` of shape
# `(B,)` int32. Return the new variables (same tree as the input).
#
# **How the grader trains your step.** It calls your step under `jax.jit` for
# 880 steps: 20 epochs of batches of 32, $\eta = 0.5$ for 15 epochs and then
# $\eta = 0.05$ for the last 5 (a tenfold *learning-rate decay* lets the
# weights settle instead of bouncing around the minimum). Half of the images in
# each batch are shifted by one pixel in a random direction (up/down, left/right
# or diagonal, zero fill): this **data augmentation** tells the model that a
# digit moved by a pixel is still the same digit. The seed CNN has only one
# convolution followed by a dense layer that gives every position its own
# weights, so nothing in it makes a shifted digit look like the original one;
# trained on the plain digits it
# plateaus at 96-98% on the 360 test digits, with the shifts it reaches about
# 99%. The test accuracy of the parameters you return must be at least 97%.
# Compute the log-softmax stably (`jax.nn.log_softmax` is fine here).

# %% nbgrader={"grade": false, "grade_id": "cnn_train_step", "locked": false, "schema_version": 3, "solution": true}
def cnn_train_step(variables, batch, lr):
  """One SGD step on the mean softmax cross-entropy of cnn_apply; returns the new variables."""
  # Hint: differentiate a loss of the variables alone, then update every leaf.
  ### BEGIN SOLUTION
  x, y = batch

  def loss(v):
    logp = jax.nn.log_softmax(cnn_apply(v, x))
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
  grads = jax.grad(loss)(variables)
  return jax.tree_util.tree_map(lambda p, g: p - lr * g, variables, grads)
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_cnn_train_step", "locked": true, "points": 5, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("06", "cnn_train_step", globals())
### BEGIN HIDDEN TESTS
score += grade("06", "cnn_train_step", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 6. What did the filters learn?
#
# Train the way the grader does (section 5) and look at the 32 learned 3x3
# filters and at what one of them responds to. Many become small stroke
# detectors (edges at different angles); the feature maps light up where a
# digit has that stroke. (This cell needs `dlfunc` for the data only; it is not
# graded. Set `shift_p = 0.0` to see what the shifts are worth.)

# %% tags=["skip-grading"]
try:
  import matplotlib.pyplot as plt
  import numpy as np
  from dlfunc.data import load, batches
  train, test = load("digits", "train"), load("digits", "test")
  shift_p = 0.5
  rng = np.random.default_rng(0)

  def shift_some(x):
    """Each image, with probability shift_p, moved by (dy, dx) in {-1, 0, 1}^2 (zeros come in at the edge)."""
    out = x.copy()
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    for i in np.flatnonzero(rng.random(len(x)) < shift_p):
      dy, dx = rng.integers(-1, 2, size=2)
      out[i] = xp[i, 1 - dy:9 - dy, 1 - dx:9 - dx]
    return out
  v = cnn_init(jax.random.key(0))
  step = jax.jit(cnn_train_step)
  for epoch in range(20):
    for xb, yb in batches(train.x, train.y, 32, seed=0, epoch=epoch):
      v = step(v, (shift_some(xb), yb), 0.5 if epoch < 15 else 0.05)
  acc = float(jnp.mean(jnp.argmax(cnn_apply(v, test.x), -1) == test.y))
  k = np.asarray(v["params"]["Conv_0"]["kernel"])[:, :, 0, :]
  fig, axes = plt.subplots(4, 9, figsize=(9, 4.2))
  for i, ax in enumerate(axes.flat):
    ax.axis("off")
    if i < 32:
      ax.imshow(k[:, :, i], cmap="RdBu_r")
    elif i == 33:
      ax.imshow(test.x[0, :, :, 0], cmap="gray_r")
      ax.set_title("input", fontsize=8)
    elif i == 34:
      fmap = jax.nn.relu(conv2d(v["params"]["Conv_0"], test.x[:1]))[0, :, :, 0]
      ax.imshow(fmap, cmap="viridis")
      ax.set_title("filter 0", fontsize=8)
  fig.suptitle(f"learned 3x3 filters (test accuracy {acc:.3f})")
  plt.show()
except NotImplementedError:
  print("Finish conv2d, cnn_init, cnn_apply and cnn_train_step first to see the filters.")


# %% [markdown]
# ## Check everything
#
# The cell below runs every public test at once: the same checks and lines as
# `autograder check 06`, then a summary per function. Hidden tests also count
# towards your grade.

# %% tags=["skip-grading"]
from autograder.selfcheck import check_all
report = check_all("06", globals())
