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
# # Assignment 09 — transfer learning: ResNet blocks, BERT layers, pretrained weights
#
# Nobody trains ResNet-50 or BERT for a small task: you load weights someone
# trained on a large data set and adapt them. That needs three skills, one per
# part of this assignment:
#
# 1. **know the building blocks** well enough to run them from raw arrays — a
#    ResNet residual block and a BERT encoder layer;
# 2. **convert** a checkpoint from another framework's layout (PyTorch's
#    `state_dict`) into yours;
# 3. **fine-tune** only part of the network, leaving the pretrained part
#    frozen — bit for bit.
#
# References are dlfunc's `BasicBlock` (ResNet-18/34, torchvision variant) and
# `BertLayer` (Hugging Face `BertModel`'s layer). Use `jax.numpy`, `jax.lax`,
# `jax.nn`; not `dlfunc`, `flax`, `torch` or `transformers`.

# %% [markdown] tags=["rules"]
# **Rules.** Each is checked by a public test, so a full `autograder check` score means none is broken
# (the hidden tests check the same rules on other inputs):
#
# - Use `jax.numpy`, `jax.lax`, `jax.nn`: not `dlfunc`, `flax`, `torch`, `transformers` or `keras` (a refused
#   call scores that function 0).
# - `residual_block` and `self_attention` (with `num_heads` static) work under `jax.jit` (no Python `if` on
#   array values, no NumPy on traced arrays).
# - `encoder_layer` uses the exact GELU (`jax.nn.gelu(x, approximate=False)`), which differs from the tanh
#   approximation at large pre-activations.
# - `self_attention`: padded tokens never change the real tokens' outputs; `fine_tune_head` returns the
#   backbone bit-identical.


# %%
import math

import jax
import jax.numpy as jnp

# %% [markdown]
# ## 1. A residual block (ResNet-18, inference mode)
#
# $$y = \mathrm{relu}\big(\mathrm{BN}_2(\mathrm{conv}_2(\mathrm{relu}(\mathrm{BN}_1(\mathrm{conv}_1(x))))) + x\big)$$
#
# Both convolutions are 3x3, stride 1, padding 1 on each side, **no bias** (the
# batch norm's shift makes it redundant). In inference mode batch norm uses the
# stored running statistics:
# $\mathrm{BN}(u) = \gamma \frac{u - \mu}{\sqrt{\sigma^2 + 10^{-5}}} + \beta$.
# The identity shortcut `+ x` lets the gradient skip the block, which is what
# lets 100+ layers train.
#
# `variables = {"params": {"conv1": {"kernel": (3, 3, C, C)}, "bn1": {"scale", "bias"}, "conv2": ..., "bn2": ...},
# "batch_stats": {"bn1": {"mean", "var"}, "bn2": {"mean", "var"}}}`; `x` is `(N, H, W, C)`.

# %% nbgrader={"grade": false, "grade_id": "residual_block", "locked": false, "schema_version": 3, "solution": true}
def residual_block(variables, x):
  """ResNet BasicBlock in inference mode: relu(bn2(conv2(relu(bn1(conv1(x))))) + x)."""
  # Hint: jax.lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")).
  ### BEGIN SOLUTION
  p, s = variables["params"], variables["batch_stats"]

  def conv(u, k):
    return jax.lax.conv_general_dilated(u, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))

  def bn(u, name):
    inv = jax.lax.rsqrt(s[name]["var"] + 1e-5)
    return (u - s[name]["mean"]) * inv * p[name]["scale"] + p[name]["bias"]
  x = jnp.asarray(x)
  out = jax.nn.relu(bn(conv(x, p["conv1"]["kernel"]), "bn1"))
  out = bn(conv(out, p["conv2"]["kernel"]), "bn2")
  return jax.nn.relu(out + x)
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_residual_block", "locked": true, "points": 4, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("09", "residual_block", globals())
### BEGIN HIDDEN TESTS
score += grade("09", "residual_block", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 2. BERT's self-attention and encoder layer
#
# For hidden states $H$ `(B, T, D)` and `num_heads` heads of size $d = D / \text{heads}$:
#
# $$Q = H W_q + b_q,\; K = H W_k + b_k,\; V = H W_v + b_v \quad\text{(reshape each to (B, T, heads, d))}$$
# $$A = \mathrm{softmax}\Big(\frac{Q K^\top}{\sqrt d} + M\Big),\qquad
# \mathrm{attn}(H) = \mathrm{concat}_\text{heads}(A V)\, W_o + b_o .$$
#
# `mask` is `(B, T)`, 1 for real tokens and 0 for padding; padded *keys* get
# the most negative float (`jnp.finfo(dtype).min`, as Hugging Face) so they receive
# ~0 weight. `jnp.einsum("bqhd,bkhd->bhqk", q, k)` gives the scores.
#
# BERT's encoder layer is **post-norm**: residual first, then LayerNorm (with
# BERT's $\varepsilon = 10^{-12}$), and an MLP with the **exact** GELU,
# $\mathrm{gelu}(x) = \tfrac12 x (1 + \mathrm{erf}(x/\sqrt2))$ (`jax.nn.gelu`
# defaults to a tanh approximation that differs by up to $10^{-3}$):
#
# $$H_1 = \mathrm{LN}_a(H + \mathrm{attn}(H)),\qquad
# \mathrm{out} = \mathrm{LN}_o\big(H_1 + \mathrm{gelu}(H_1 W_i + b_i) W_{out} + b_{out}\big).$$
#
# `params` has Dense layers `query`, `key`, `value`, `attention_output`,
# `intermediate`, `output` (`{"kernel": (in, out), "bias"}`) and LayerNorms
# `attention_norm`, `output_norm` (`{"scale", "bias"}`, normalised over the last axis).

# %% nbgrader={"grade": false, "grade_id": "self_attention", "locked": false, "schema_version": 3, "solution": true}
def self_attention(params, h, mask, num_heads):
  """Multi-head self-attention with BERT's padding mask, including the output projection; (B, T, D) -> (B, T, D)."""
  # Hint: project, reshape to (B, T, heads, d), einsum scores / sqrt(d), mask keys, softmax over keys, einsum with V.
  ### BEGIN SOLUTION
  b, t, dim = h.shape
  hd = dim // num_heads

  def dense(name, u):
    return u @ params[name]["kernel"] + params[name]["bias"]
  q, k, v = (dense(n, h).reshape(b, t, num_heads, hd) for n in ("query", "key", "value"))
  scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(hd)
  scores = jnp.where(jnp.asarray(mask)[:, None, None, :] > 0, scores, jnp.finfo(scores.dtype).min)
  scores = scores - jax.lax.stop_gradient(scores.max(axis=-1, keepdims=True))
  probs = jnp.exp(scores)
  probs = probs / probs.sum(axis=-1, keepdims=True)
  ctx = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, t, dim)
  return dense("attention_output", ctx)
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_self_attention", "locked": true, "points": 5, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("09", "self_attention", globals())
### BEGIN HIDDEN TESTS
score += grade("09", "self_attention", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% nbgrader={"grade": false, "grade_id": "encoder_layer", "locked": false, "schema_version": 3, "solution": true}
def encoder_layer(params, h, mask, num_heads):
  """One post-norm BERT encoder layer: LN(h + attn(h)), then LN(h1 + W_out gelu_exact(W_i h1))."""
  # Hint: layer norm = (u - mean) / sqrt(var + 1e-12) * scale + bias over the last axis; gelu via jax.scipy.special.erf.
  ### BEGIN SOLUTION
  def layer_norm(name, u):
    mean = u.mean(axis=-1, keepdims=True)
    var = ((u - mean) ** 2).mean(axis=-1, keepdims=True)
    return (u - mean) * jax.lax.rsqrt(var + 1e-12) * params[name]["scale"] + params[name]["bias"]

  def gelu(u):
    return 0.5 * u * (1.0 + jax.scipy.special.erf(u / math.sqrt(2.0)))
  h = jnp.asarray(h)
  h1 = layer_norm("attention_norm", h + self_attention(params, h, mask, num_heads))
  inter = gelu(h1 @ params["intermediate"]["kernel"] + params["intermediate"]["bias"])
  return layer_norm("output_norm", h1 + inter @ params["output"]["kernel"] + params["output"]["bias"])
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_encoder_layer", "locked": true, "points": 5, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("09", "encoder_layer", globals())
### BEGIN HIDDEN TESTS
score += grade("09", "encoder_layer", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 3. Converting a PyTorch checkpoint
#
# torchvision's `BasicBlock.state_dict()` names its arrays
# `conv1.weight` `(C_out, C_in, 3, 3)` (OIHW), `bn1.weight` ($\gamma$), `bn1.bias`
# ($\beta$), `bn1.running_mean`, `bn1.running_var`, `bn1.num_batches_tracked`
# (a step counter — not a parameter; drop it), and the same for `conv2`/`bn2`.
# Produce the `variables` tree of part 1: kernels moved to HWIO
# (`w.transpose(2, 3, 1, 0)`), $\gamma \to$ `scale`, $\beta \to$ `bias`, running
# statistics into `batch_stats` as `mean`/`var`. (`dlfunc.pretrained.load_torchvision`
# does this for whole ResNets with a table of such rules.)

# %% nbgrader={"grade": false, "grade_id": "convert_state_dict", "locked": false, "schema_version": 3, "solution": true}
def convert_state_dict(state_dict):
  """torchvision BasicBlock state_dict -> {"params": {conv1, bn1, conv2, bn2}, "batch_stats": {bn1, bn2}}."""
  # Hint: kernels (out, in, kh, kw) -> (kh, kw, in, out); bn weights go to params, running stats to batch_stats.
  ### BEGIN SOLUTION
  params, stats = {}, {}
  for i in (1, 2):
    params[f"conv{i}"] = {"kernel": jnp.transpose(jnp.asarray(state_dict[f"conv{i}.weight"]), (2, 3, 1, 0))}
    params[f"bn{i}"] = {"scale": jnp.asarray(state_dict[f"bn{i}.weight"]), "bias": jnp.asarray(state_dict[f"bn{i}.bias"])}
    stats[f"bn{i}"] = {"mean": jnp.asarray(state_dict[f"bn{i}.running_mean"]),
                       "var": jnp.asarray(state_dict[f"bn{i}.running_var"])}
  return {"params": params, "batch_stats": stats}
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_convert_state_dict", "locked": true, "points": 4, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("09", "convert_state_dict", globals())
### BEGIN HIDDEN TESTS
score += grade("09", "convert_state_dict", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 4. Which leaves train?
#
# A *mask* is a pytree of booleans with the same structure as the parameters.
# A leaf is trainable when its path, joined with `/` (e.g.
# `"backbone/conv2/kernel"`), equals one of the `trainable` prefixes or starts
# with one followed by `/` (so `"head"` matches `"head/w"` but not `"header/w"`).
# Optimizers take such masks (`optax.masked`, `dlfunc.optim.freeze`).
# `jax.tree_util.tree_map_with_path` gives each leaf's path; a dict key entry
# `k` has the name `k.key`.

# %% nbgrader={"grade": false, "grade_id": "freeze_mask", "locked": false, "schema_version": 3, "solution": true}
def freeze_mask(params, trainable):
  """Pytree of bools like params: True where the leaf's '/'-joined path is under one of the `trainable` prefixes."""
  # Hint: jax.tree_util.tree_map_with_path(lambda path, leaf: ..., params); name = "/".join(str(k.key) for k in path).
  ### BEGIN SOLUTION
  def under(path, _):
    name = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
    return any(name == p or name.startswith(p + "/") for p in trainable)
  return jax.tree_util.tree_map_with_path(under, params)
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_freeze_mask", "locked": true, "points": 3, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("09", "freeze_mask", globals())
### BEGIN HIDDEN TESTS
score += grade("09", "freeze_mask", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 5. Fine-tuning a pretrained backbone
#
# `backbone.npz` (made by `assignments/09/make_backbone.py`) is a small CNN
# pretrained on images of the digits **0-4** only. Its feature extractor is
# given below; it ends with an L2 normalisation (times 10), so the head sees
# features of equal length — with few labels this makes a linear head behave
# like a nearest-class-mean classifier, a standard trick in few-shot learning.
# Your job: learn a new head for the digits **5-9** from only **3 labelled
# examples per class**, keeping the backbone frozen. One SGD step on the mean
# softmax cross-entropy of `features(params["backbone"], x) @ head["w"] + head["b"]`
# that updates `params["head"]` only and returns `params["backbone"]`
# **unchanged** — the grader checks that every backbone leaf is bit-identical.
#
# **What the grader measures.** On 8 fixed draws of 3 labelled images per class
# it runs 50 full-batch steps of your `fine_tune_head` at lr 1.0 from its own
# head, and trains *the same network* (this `features` function and a head, every
# leaf trainable) from a random start on the same images for the same 50 steps of
# plain SGD, at the better of lr 0.1 and 0.3. Your head must beat it: mean test
# accuracy on the digits 5-9 at least 0.02 higher. Measured with the reference
# solution: about 0.87 fine-tuned vs 0.83 from scratch on those 8 draws (over 16
# draws, 0.87 vs 0.84).
#
# **An honest note on the size of that gap.** 8x8 digits are easy: a small CNN
# trained from scratch on 15 images already gets ~0.84, so transfer from 0-4 can
# only add a few points here. How the backbone was pretrained decides even that:
# a plain 5-way classifier on 0-4 gave features no better than training from
# scratch (we measured it); what transferred was pretraining on *more classes* —
# every image of 0-4 in its 8 orientations (flips and rotations), each (digit,
# orientation) its own class, 40 in all. Transfer pays off much more when the
# pretraining data is large and general (ImageNet, Wikipedia) and the new task
# small.

# %% nbgrader={"grade": false, "grade_id": "given_backbone", "locked": true, "schema_version": 3, "solution": false}
def features(backbone, x):
  """The pretrained backbone (given): two 3x3 SAME convs + ReLU, a 2x2 max-pool, L2 normalisation x 10; -> (N, 512)."""
  def conv(p, u):
    y = jax.lax.conv_general_dilated(u, p["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + p["bias"]
  x = jax.lax.reduce_window(jax.nn.relu(conv(backbone["conv1"], x)), -jnp.inf, jax.lax.max, (1, 2, 2, 1),
                            (1, 2, 2, 1), "VALID")
  x = jax.nn.relu(conv(backbone["conv2"], x))
  f = x.reshape(x.shape[0], -1)
  return 10.0 * f / (jnp.linalg.norm(f, axis=-1, keepdims=True) + 1e-6)

# %% nbgrader={"grade": false, "grade_id": "fine_tune_head", "locked": false, "schema_version": 3, "solution": true}
def fine_tune_head(params, batch, lr):
  """One SGD step on the head only; params = {"backbone": ..., "head": {"w", "b"}}; the backbone comes back unchanged."""
  # Hint: differentiate a loss(head) closure that calls features(params["backbone"], x); return {"backbone": params["backbone"], "head": new_head}.
  ### BEGIN SOLUTION
  x, y = batch
  feats = jax.lax.stop_gradient(features(params["backbone"], x))

  def loss(head):
    logp = jax.nn.log_softmax(feats @ head["w"] + head["b"])
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
  grads = jax.grad(loss)(params["head"])
  head = jax.tree_util.tree_map(lambda p, g: p - lr * g, params["head"], grads)
  return {"backbone": params["backbone"], "head": head}
  ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_fine_tune_head", "locked": true, "points": 5, "schema_version": 3, "solution": false}
from autograder.notebook import grade
score = grade("09", "fine_tune_head", globals())
### BEGIN HIDDEN TESTS
score += grade("09", "fine_tune_head", globals(), hidden=True)
### END HIDDEN TESTS
score

# %% [markdown]
# ## 6. Try it: frozen features vs from scratch
#
# Vary the number of labels per class and compare the frozen backbone with
# training the whole network from a random start, as the grader does (not
# graded; needs `backbone.npz` next to the notebook and `dlfunc` for the data).

# %% tags=["skip-grading"]
try:
  import os
  import numpy as np
  from dlfunc.data import load
  if not os.path.exists("backbone.npz"):
    print("copy assignments/09/backbone.npz next to this notebook to run this cell.")
  else:
    f = np.load("backbone.npz")
    backbone = {layer: {"kernel": f[f"{layer}/kernel"], "bias": f[f"{layer}/bias"]} for layer in ("conv1", "conv2")}
    tr, te = load("digits", "train"), load("digits", "test")
    test = te.y >= 5

    def accuracy(bb, head):
      logits = features(bb, te.x[test]) @ head["w"] + head["b"]
      return float(np.mean(np.argmax(logits, -1) == te.y[test]))

    def loss(p, x, y):
      logp = jax.nn.log_softmax(features(p["backbone"], x) @ p["head"]["w"] + p["head"]["b"])
      return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    @jax.jit
    def scratch_step(p, x, y):   # every leaf trains, lr 0.1
      return jax.tree_util.tree_map(lambda a, g: a - 0.1 * g, p, jax.grad(loss)(p, x, y))

    step = jax.jit(fine_tune_head)
    he = jax.nn.initializers.he_normal()
    for n in (1, 2, 3, 5, 10):
      ft, sc = [], []
      for draw in range(4):
        rng = np.random.default_rng(draw)
        idx = np.concatenate([rng.choice(np.flatnonzero(tr.y == c), n, replace=False) for c in range(5, 10)])
        x, y = tr.x[idx], tr.y[idx]
        params = {"backbone": backbone, "head": {"w": jnp.zeros((512, 10)), "b": jnp.zeros(10)}}
        k = jax.random.split(jax.random.key(draw), 3)
        scratch = {"backbone": {"conv1": {"kernel": he(k[0], (3, 3, 1, 16)), "bias": jnp.zeros(16)},
                                "conv2": {"kernel": he(k[1], (3, 3, 16, 32)), "bias": jnp.zeros(32)}},
                   "head": {"w": jax.nn.initializers.glorot_uniform()(k[2], (512, 10)), "b": jnp.zeros(10)}}
        for _ in range(50):
          params, scratch = step(params, (x, y), 1.0), scratch_step(scratch, x, y)
        ft.append(accuracy(backbone, params["head"]))
        sc.append(accuracy(scratch["backbone"], scratch["head"]))
      print(f"{n:2d} labels per class (mean of 4 draws): frozen backbone {np.mean(ft):.3f}, "
            f"from scratch {np.mean(sc):.3f}")
except NotImplementedError:
  print("Finish fine_tune_head first.")


# %% [markdown]
# ## Check everything
#
# The cell below runs every public test at once: the same checks and lines as
# `autograder check 09`, then a summary per function. Hidden tests also count
# towards your grade.

# %% tags=["skip-grading"]
from autograder.selfcheck import check_all
report = check_all("09", globals())
