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
# # Assignment 10 — moving weights between Keras, PyTorch and JAX
#
# A trained model is just arrays plus a convention for using them. Porting a
# model means translating the convention; if you get one axis wrong the model
# still runs — it just predicts garbage. The conventions that differ:
#
# | | Keras 3 | PyTorch | dlfunc / Flax |
# |---|---|---|---|
# | dense weight | `kernel (in, out)`, $y = xW + b$ | `weight (out, in)`, $y = xW^\top + b$ | `kernel (in, out)` |
# | conv weight | `(kh, kw, in, out)` HWIO | `(out, in, kh, kw)` OIHW | HWIO |
# | images | `(N, H, W, C)` NHWC | `(N, C, H, W)` NCHW | NHWC |
# | flatten order | $(h, w, c)$ | $(c, h, w)$ | $(h, w, c)$ |
#
# The models were trained in their own frameworks and their weights and
# logits recorded once (`assignments/10/record_fixtures.py`): the Keras seed MLP,
# the PyTorch seed MLP and the PyTorch seed CNN
# (`conv1 = Conv2d(1, 32, 3)`, ReLU, `x.flatten(1)`, `fc1 = Linear(32 * 6 * 6, 10)`).
# Your converted weights must reproduce their logits with dlfunc's models
# (`dlfunc.models.MLP`, `dlfunc.models.CNN`, whose variables are
# `{"params": {"Dense_0": {"kernel", "bias"}, ...}}` and
# `{"params": {"Conv_0": ..., "Dense_0": ...}}`).
#
# Inputs arrive as NumPy arrays; use NumPy or `jax.numpy`.

# %% [markdown] tags=["rules"]
# **Rules.** Each is checked by a public test, so a full `autograder check` score means none is broken
# (the hidden tests check the same rules on other inputs):
#
# - Not `dlfunc`, `torch`, `keras`, `tensorflow` or `flax` (a refused call scores that function 0): the
#   weights arrive as NumPy arrays.
# - NumPy is allowed everywhere: these functions convert weights once, outside any `jax.jit`, and no test
#   traces them.


# %%
import jax
import jax.numpy as jnp

# %% [markdown]
# ## 1. One layer at a time
#
# * Keras `Dense.get_weights()` is `[kernel (in, out), bias (out,)]` — already our layout.
# * PyTorch `Linear` stores `weight (out, in)`: transpose it.
# * PyTorch `Conv2d` stores `weight (out, in, kh, kw)`: move the axes to
#   `(kh, kw, in, out)`, i.e. `weight.transpose(2, 3, 1, 0)`. (No flip: both
#   frameworks compute a cross-correlation.)
# * Images: `(N, C, H, W) -> (N, H, W, C)` is `x.transpose(0, 2, 3, 1)`.

# %% nbgrader={"grade": false, "grade_id": "keras_dense_to_dlfunc", "locked": false, "schema_version": 3, "solution": true}
def keras_dense_to_dlfunc(weights):
  """Keras Dense.get_weights() = [kernel (in, out), bias (out,)] -> {"kernel": (in, out), "bias": (out,)}."""
  # Hint: Keras already computes x @ kernel + bias; just name the two arrays.
  ### BEGIN SOLUTION
  kernel, bias = weights
  return {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(bias)}
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_keras_dense_to_dlfunc", "locked": true, "points": 2, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("10", "keras_dense_to_dlfunc", globals())
### BEGIN HIDDEN TESTS
score += grade("10", "keras_dense_to_dlfunc", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% nbgrader={"grade": false, "grade_id": "torch_linear_to_dlfunc", "locked": false, "schema_version": 3, "solution": true}
def torch_linear_to_dlfunc(weight, bias):
  """PyTorch Linear weight (out, in), bias (out,) -> {"kernel": (in, out), "bias": (out,)}."""
  # Hint: PyTorch computes x @ weight.T + bias.
  ### BEGIN SOLUTION
  return {"kernel": jnp.asarray(weight).T, "bias": jnp.asarray(bias)}
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_torch_linear_to_dlfunc", "locked": true, "points": 3, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("10", "torch_linear_to_dlfunc", globals())
### BEGIN HIDDEN TESTS
score += grade("10", "torch_linear_to_dlfunc", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% nbgrader={"grade": false, "grade_id": "torch_conv2d_to_dlfunc", "locked": false, "schema_version": 3, "solution": true}
def torch_conv2d_to_dlfunc(weight, bias):
  """PyTorch Conv2d weight (out, in, kh, kw), bias (out,) -> {"kernel": (kh, kw, in, out), "bias": (out,)}."""
  # Hint: PyTorch's (out, in, kh, kw) becomes (kh, kw, in, out): one transpose.
  ### BEGIN SOLUTION
  return {"kernel": jnp.transpose(jnp.asarray(weight), (2, 3, 1, 0)), "bias": jnp.asarray(bias)}
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_torch_conv2d_to_dlfunc", "locked": true, "points": 3, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("10", "torch_conv2d_to_dlfunc", globals())
### BEGIN HIDDEN TESTS
score += grade("10", "torch_conv2d_to_dlfunc", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% nbgrader={"grade": false, "grade_id": "nchw_to_nhwc", "locked": false, "schema_version": 3, "solution": true}
def nchw_to_nhwc(x):
  """Images (N, C, H, W) as PyTorch stores them -> (N, H, W, C)."""
  # Hint: move the channel axis from position 1 to the end.
  ### BEGIN SOLUTION
  return jnp.transpose(jnp.asarray(x), (0, 2, 3, 1))
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_nchw_to_nhwc", "locked": true, "points": 2, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("10", "nchw_to_nhwc", globals())
### BEGIN HIDDEN TESTS
score += grade("10", "nchw_to_nhwc", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 2. Whole models
#
# **Keras MLP.** `model.get_weights()` lists `[kernel0, bias0, kernel1, bias1]`
# in layer order (the `Flatten` layer has no weights). dlfunc's `MLP` names its
# layers `Dense_0`, `Dense_1`.
#
# **PyTorch MLP.** The `state_dict()` maps `"fc1.weight"`, `"fc1.bias"`,
# `"fc2.weight"`, `"fc2.bias"` to arrays. The input is one-channel, so
# flattening `(1, 8, 8)` and `(8, 8, 1)` gives the same 64 numbers.
#
# **PyTorch CNN — the trap.** After `conv1` the activations are `(N, 32, 6, 6)`
# in PyTorch and `(N, 6, 6, 32)` here. `x.flatten(1)` lists them in the order
# $(c, h, w)$; our flatten in the order $(h, w, c)$. So row $r$ of our dense
# kernel must be the column of `fc1.weight` for the same $(h, w, c)$:
#
# $$K^\text{dlfunc}_{(h w c),\,o} = W^\text{torch}_{o,\,(c h w)} .$$
#
# Reshape `fc1.weight.T` (shape `(32*6*6, 10)`) to `(32, 6, 6, 10)`, transpose
# to `(6, 6, 32, 10)`, reshape back. Forget this and the model runs and is wrong.

# %% nbgrader={"grade": false, "grade_id": "port_keras_mlp", "locked": false, "schema_version": 3, "solution": true}
def port_keras_mlp(weights):
  """Keras seed-MLP get_weights() [k0, b0, k1, b1] -> {"params": {"Dense_0": ..., "Dense_1": ...}}."""
  # Hint: keras_dense_to_dlfunc(weights[2 * i : 2 * i + 2]) for layer i.
  ### BEGIN SOLUTION
  layers = {f"Dense_{i}": keras_dense_to_dlfunc(weights[2 * i:2 * i + 2]) for i in range(len(weights) // 2)}
  return {"params": layers}
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_port_keras_mlp", "locked": true, "points": 3, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("10", "port_keras_mlp", globals())
### BEGIN HIDDEN TESTS
score += grade("10", "port_keras_mlp", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% nbgrader={"grade": false, "grade_id": "port_torch_mlp", "locked": false, "schema_version": 3, "solution": true}
def port_torch_mlp(state_dict):
  """PyTorch seed-MLP state_dict (fc1.*, fc2.*) -> {"params": {"Dense_0": ..., "Dense_1": ...}}."""
  # Hint: torch_linear_to_dlfunc(state_dict["fc1.weight"], state_dict["fc1.bias"]) becomes Dense_0.
  ### BEGIN SOLUTION
  return {"params": {f"Dense_{i}": torch_linear_to_dlfunc(state_dict[f"fc{i + 1}.weight"], state_dict[f"fc{i + 1}.bias"])
                     for i in range(2)}}
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_port_torch_mlp", "locked": true, "points": 3, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("10", "port_torch_mlp", globals())
### BEGIN HIDDEN TESTS
score += grade("10", "port_torch_mlp", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% nbgrader={"grade": false, "grade_id": "port_torch_cnn", "locked": false, "schema_version": 3, "solution": true}
def port_torch_cnn(state_dict):
  """PyTorch seed-CNN state_dict (conv1.*, fc1.*) -> {"params": {"Conv_0": ..., "Dense_0": ...}} for NHWC input."""
  # Hint: convert conv1 with torch_conv2d_to_dlfunc; reorder fc1's input rows from (c, h, w) to (h, w, c).
  ### BEGIN SOLUTION
  conv = torch_conv2d_to_dlfunc(state_dict["conv1.weight"], state_dict["conv1.bias"])
  dense = torch_linear_to_dlfunc(state_dict["fc1.weight"], state_dict["fc1.bias"])
  c = conv["kernel"].shape[-1]
  n_in, n_out = dense["kernel"].shape
  side = int(round((n_in // c) ** 0.5))
  k = dense["kernel"].reshape(c, side, side, n_out).transpose(1, 2, 0, 3).reshape(n_in, n_out)
  return {"params": {"Conv_0": conv, "Dense_0": {"kernel": k, "bias": dense["bias"]}}}
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_port_torch_cnn", "locked": true, "points": 5, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("10", "port_torch_cnn", globals())
### BEGIN HIDDEN TESTS
score += grade("10", "port_torch_cnn", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 3. Keep training in JAX, and checkpoint
#
# Once ported, the model is ordinary dlfunc state: put the parameters into a
# `TrainState`, train with dlfunc's jit-compiled `train_step`, and save an
# Orbax checkpoint that a later run (or `dlfunc evaluate`) restores. The cell
# below (not graded; it uses `dlfunc`, which is fine outside your functions)
# fine-tunes the ported PyTorch CNN for two epochs, saves it, restores it and
# checks that the restored parameters are bit-identical.

# %% tags=["skip-grading"]
try:
  import tempfile
  import numpy as np
  from dlfunc import data, models, optim, train
  fx = np.load("fixtures.npz") if __import__("os").path.exists("fixtures.npz") else None
  if fx is None:
    print("fixtures.npz not found next to the notebook; copy assignments/10/fixtures.npz here to run this cell.")
  else:
    sd = {k[len("torch_cnn."):]: fx[k] for k in fx.files if k.startswith("torch_cnn.")}
    ported = port_torch_cnn(sd)
    digits_train, digits_test = data.load("digits", "train"), data.load("digits", "test")
    state = train.create_train_state(models.CNN(), optim.sgd(0.05), digits_train.x[:1], jax.random.key(0))
    state = state.replace(params=ported["params"])
    print("ported accuracy:", train.evaluate(state, digits_test)["accuracy"])
    step = jax.jit(train.train_step)
    for epoch in range(2):
      for xb, yb in data.batches(digits_train.x, digits_train.y, 32, seed=0, epoch=epoch):
        state, metrics = step(state, (xb, yb))
    print("after 2 epochs in JAX:", train.evaluate(state, digits_test)["accuracy"])
    with tempfile.TemporaryDirectory() as workdir:
      ckpt = train.Checkpointer(workdir)
      ckpt.save(2, state, {"source": "torch seed CNN"})
      restored, meta = ckpt.restore_latest(state)
    same = all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(state.params),
                                                  jax.tree_util.tree_leaves(restored.params)))
    print("checkpoint restored bit-identical:", same, meta)
except NotImplementedError:
  print("Finish the converters first.")


# %% [markdown]
# ## Check everything
#
# The cell below runs every public test at once: the same checks and lines as
# `autograder check 10`, then a summary per function. Hidden tests also count
# towards your grade.

# %% tags=["skip-grading"]
from autograder.selfcheck import check_all
report = check_all("10", globals())
