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
# # Assignment 08 — autoencoders: dimensionality reduction and anomaly detection
#
# An **autoencoder** squeezes each input through a narrow code and back:
#
# $$z = \mathrm{enc}_\theta(x) \in \mathbb{R}^k, \qquad \hat x = \mathrm{dec}_\phi(z), \qquad
# L = \frac1{N d}\sum_n \lVert \hat x_n - x_n \rVert^2 .$$
#
# With $k = 16 < d = 64$ it must keep what matters about a digit and drop the
# rest: that is dimensionality reduction. Trained only on *normal* data, it
# reconstructs unfamiliar inputs badly, so the reconstruction error is an
# **anomaly score**. A linear autoencoder can do no better than **PCA**, which
# has a closed form — the baseline every autoencoder must be compared with.
#
# Our autoencoder (dlfunc's `Autoencoder(16, hidden=(64,))`), parameters
# `params = {"enc_0": {"kernel": (64, 64), "bias"}, "enc_1": {(64, 16)}, "dec_0": {(16, 64)}, "dec_1": {(64, 64)}}`:
#
# $$\mathrm{enc}(x) = \mathrm{relu}(x W_{e0} + b_{e0}) W_{e1} + b_{e1}, \qquad
# \mathrm{dec}(z) = \sigma\big(\mathrm{relu}(z W_{d0} + b_{d0}) W_{d1} + b_{d1}\big)$$
#
# with $x$ the flattened image (pixels in $[0, 1]$, hence the sigmoid output).
# Use `jax.numpy` (`jax.nn.relu`/`jax.nn.sigmoid` are fine); not `dlfunc`, not `sklearn`.

# %% [markdown] tags=["rules"]
# **Rules.** Each is checked by a public test, so a full `autograder check` score means none is broken
# (the hidden tests check the same rules on other inputs):
#
# - Use `jax.numpy` (`jax.nn.relu`/`jax.nn.sigmoid` are fine): not `dlfunc`, `sklearn`, `flax`, `torch` or
#   `keras` (a refused call scores that function 0).
# - `anomaly_scores` and `ae_train_step` work under `jax.jit` (no Python `if` on array values, no NumPy on
#   traced arrays); `threshold` and `pca_reconstruct` may use NumPy.


# %%
import jax
import jax.numpy as jnp

# %% [markdown]
# ## 1. Encoder and decoder
#
# `encode(params, x)`: images `(N, 8, 8, 1)` -> codes `(N, 16)` (flatten first).
# `decode(params, z)`: codes `(N, 16)` -> images `(N, 8, 8, 1)`.

# %% nbgrader={"grade": false, "grade_id": "encode", "locked": false, "schema_version": 3, "solution": true}
def encode(params, x):
  """(N, 8, 8, 1) images -> (N, k) codes: relu(x W_e0 + b_e0) W_e1 + b_e1 on the flattened images."""
  # Hint: x.reshape(x.shape[0], -1), then the two dense layers enc_0 (with relu) and enc_1 (linear).
  ### BEGIN SOLUTION
  x = jnp.asarray(x).reshape(x.shape[0], -1)
  h = jax.nn.relu(x @ params["enc_0"]["kernel"] + params["enc_0"]["bias"])
  return h @ params["enc_1"]["kernel"] + params["enc_1"]["bias"]
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_encode", "locked": true, "points": 3, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("08", "encode", globals())
### BEGIN HIDDEN TESTS
score += grade("08", "encode", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% nbgrader={"grade": false, "grade_id": "decode", "locked": false, "schema_version": 3, "solution": true}
def decode(params, z):
  """(N, k) codes -> (N, 8, 8, 1) images in (0, 1): sigmoid(relu(z W_d0 + b_d0) W_d1 + b_d1)."""
  # Hint: the two dense layers dec_0 (relu) and dec_1 (sigmoid), then reshape to (N, 8, 8, 1).
  ### BEGIN SOLUTION
  z = jnp.asarray(z)
  h = jax.nn.relu(z @ params["dec_0"]["kernel"] + params["dec_0"]["bias"])
  y = jax.nn.sigmoid(h @ params["dec_1"]["kernel"] + params["dec_1"]["bias"])
  return y.reshape(z.shape[0], 8, 8, 1)
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_decode", "locked": true, "points": 3, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("08", "decode", globals())
### BEGIN HIDDEN TESTS
score += grade("08", "decode", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 2. Loss and scores
#
# `reconstruction_loss(params, x)` is the mean over *all* pixels and examples of
# $(\hat x - x)^2$ — what you minimise. `anomaly_scores(params, x)` is the same
# error averaged per example only, shape `(N,)` — what you rank.

# %% nbgrader={"grade": false, "grade_id": "reconstruction_loss", "locked": false, "schema_version": 3, "solution": true}
def reconstruction_loss(params, x):
  """Scalar mean squared error between decode(encode(x)) and x."""
  # Hint: encode then decode, and average the squared error over every pixel of every example.
  ### BEGIN SOLUTION
  x = jnp.asarray(x)
  return jnp.mean((decode(params, encode(params, x)) - x) ** 2)
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_reconstruction_loss", "locked": true, "points": 3, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("08", "reconstruction_loss", globals())
### BEGIN HIDDEN TESTS
score += grade("08", "reconstruction_loss", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% nbgrader={"grade": false, "grade_id": "anomaly_scores", "locked": false, "schema_version": 3, "solution": true}
def anomaly_scores(params, x):
  """Per-example mean squared reconstruction error, shape (N,)."""
  # Hint: square the difference, reshape to (N, -1) and average over axis 1.
  ### BEGIN SOLUTION
  x = jnp.asarray(x)
  err = (decode(params, encode(params, x)) - x) ** 2
  return err.reshape(x.shape[0], -1).mean(axis=1)
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_anomaly_scores", "locked": true, "points": 3, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("08", "anomaly_scores", globals())
### BEGIN HIDDEN TESTS
score += grade("08", "anomaly_scores", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 3. A threshold
#
# Flag an example when its score exceeds the `percentile`-th percentile of the
# scores of *normal* (training) data: at the 95th, about 5% of normal examples
# are flagged — the false-positive rate you choose to pay. Use linear
# interpolation between order statistics (NumPy's default): with the scores
# sorted, $s_{(0)} \le \dots \le s_{(n-1)}$, the position is $q = \frac{p}{100}(n - 1)$
# and the threshold $s_{(\lfloor q \rfloor)} + (q - \lfloor q \rfloor)(s_{(\lfloor q \rfloor + 1)} - s_{(\lfloor q \rfloor)})$.

# %% nbgrader={"grade": false, "grade_id": "threshold", "locked": false, "schema_version": 3, "solution": true}
def threshold(scores, percentile):
  """The percentile-th percentile of scores (linear interpolation, as np.percentile)."""
  # Hint: jnp.percentile(scores, percentile), or sort and interpolate as above.
  ### BEGIN SOLUTION
  return jnp.percentile(jnp.asarray(scores), percentile)
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_threshold", "locked": true, "points": 2, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("08", "threshold", globals())
### BEGIN HIDDEN TESTS
score += grade("08", "threshold", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 4. The PCA baseline
#
# Center the training data, $A = X_\text{train} - \mu$, take its SVD
# $A = U S V^\top$ and keep the first `rank` right-singular vectors $V_r$
# (columns of $V$; `jnp.linalg.svd(A, full_matrices=False)` returns $V^\top$).
# Projecting onto them and back is the best rank-$r$ linear reconstruction:
#
# $$\hat x = \mu + (x - \mu) V_r V_r^\top .$$
#
# (Each column of $V_r$ has an arbitrary sign; $V_r V_r^\top$ does not.)
# Return $\hat x$ in the shape of `x`.

# %% nbgrader={"grade": false, "grade_id": "pca_reconstruct", "locked": false, "schema_version": 3, "solution": true}
def pca_reconstruct(x_train, x, rank):
  """Reconstruct x from the top-`rank` principal components of x_train; same shape as x."""
  # Hint: centre with the training mean, project on the top right-singular vectors, add the mean back.
  ### BEGIN SOLUTION
  a = jnp.asarray(x_train).reshape(x_train.shape[0], -1)
  b = jnp.asarray(x).reshape(x.shape[0], -1)
  mu = a.mean(axis=0)
  _, _, vt = jnp.linalg.svd(a - mu, full_matrices=False)
  v = vt[:rank].T
  return ((b - mu) @ v @ v.T + mu).reshape(x.shape)
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_pca_reconstruct", "locked": true, "points": 4, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("08", "pca_reconstruct", globals())
### BEGIN HIDDEN TESTS
score += grade("08", "pca_reconstruct", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 5. Training, and finding the nines
#
# One SGD step on `reconstruction_loss`. The grader holds out the digit **9**:
# it trains your step on the other nine classes only (20 epochs of batches of
# 32, lr 4.0, under `jax.jit`), then, with the parameters you return,
#
# * measures the test MSE on normal digits (bar: 0.025; PCA with 16 components
#   gets about 0.011, an untrained autoencoder about 0.1), and
# * ranks all test digits by anomaly score and computes the AUROC of "is a 9",
#   next to PCA's AUROC from the same run (about 0.78): yours must be within
#   0.1 of it. Plain SGD for 800 steps lands near PCA; with Adam and 60 epochs
#   the same autoencoder beats it (0.88, `dlfunc`'s tests measure it).

# %% nbgrader={"grade": false, "grade_id": "ae_train_step", "locked": false, "schema_version": 3, "solution": true}
def ae_train_step(params, x, lr):
  """One SGD step on reconstruction_loss(params, x); returns the new params."""
  # Hint: differentiate your reconstruction_loss with respect to params, then update every leaf.
  ### BEGIN SOLUTION
  grads = jax.grad(reconstruction_loss)(params, x)
  return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_ae_train_step", "locked": true, "points": 6, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("08", "ae_train_step", globals())
### BEGIN HIDDEN TESTS
score += grade("08", "ae_train_step", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 6. Look at it
#
# Top: test digits; middle: your autoencoder's reconstructions; bottom: PCA's.
# Then the score histograms: the held-out nines (never seen in training) sit
# to the right of the normal digits, and the threshold line cuts off ~5% of
# the normal *training* scores.

# %% tags=["skip-grading"]
try:
  import matplotlib.pyplot as plt
  import numpy as np
  from dlfunc.data import load, batches
  tr, te = load("digits", "train"), load("digits", "test")
  keep = np.asarray(tr.y) != 9
  x_normal = np.asarray(tr.x)[keep]
  k = jax.random.split(jax.random.key(0), 4)
  glorot = lambda key, a, b: jax.random.uniform(key, (a, b), minval=-(6 / (a + b)) ** 0.5, maxval=(6 / (a + b)) ** 0.5)
  params = {name: {"kernel": glorot(kk, a, b), "bias": jnp.zeros(b)}
            for name, kk, (a, b) in zip(["enc_0", "enc_1", "dec_0", "dec_1"], k, [(64, 64), (64, 16), (16, 64), (64, 64)])}
  step = jax.jit(ae_train_step)
  for epoch in range(20):
    for xb, _ in batches(x_normal, np.zeros(len(x_normal)), 32, seed=0, epoch=epoch):
      params = step(params, xb, 4.0)
  fig, axes = plt.subplots(3, 8, figsize=(8, 3.2))
  rec = decode(params, encode(params, te.x[:8]))
  pca = pca_reconstruct(x_normal, te.x[:8], 16)
  for j in range(8):
    for i, img in enumerate((te.x[j], rec[j], pca[j])):
      axes[i, j].imshow(np.asarray(img)[:, :, 0], cmap="gray_r", vmin=0, vmax=1)
      axes[i, j].axis("off")
  plt.show()
  s_train = anomaly_scores(params, x_normal)
  s_test = anomaly_scores(params, te.x)
  t = threshold(s_train, 95.0)
  plt.hist(np.asarray(s_test)[te.y != 9], 40, alpha=0.6, density=True, label="normal test digits")
  plt.hist(np.asarray(s_test)[te.y == 9], 40, alpha=0.6, density=True, label="held-out nines")
  plt.axvline(float(t), color="k", ls="--", label="95th percentile of training scores")
  plt.xlabel("reconstruction MSE")
  plt.legend()
  plt.show()
except NotImplementedError:
  print("Finish the functions above first.")


# %% [markdown]
# ## Check everything
#
# The cell below runs every public test at once: the same checks and lines as
# `autograder check 08`, then a summary per function. Hidden tests also count
# towards your grade.

# %% tags=["skip-grading"]
from autograder.selfcheck import check_all
report = check_all("08", globals())
