"""Graded tests for assignment 02: losses and a first training loop.

References are dlfunc's own losses and layers, run here in the trusted process.
The training check runs the student's ``sgd_train_step`` in the worker over
batches of the embedded digits (``dlfunc.data``) and judges the returned
parameters here, with the reference MLP, on the held-out test split.

``sgd_train_step`` is built on the student's ``mlp_apply`` and
``softmax_cross_entropy`` (that is the lesson), so mistakes there also cost the
step's points; every other test calls only the function it is named after.
"""
import functools

import jax
import numpy as np

import dlfunc.losses as L
import dlfunc.nn as ref
from autograder import checks as C
from autograder import hidden, points

FUNCTIONS = ("mse", "binary_cross_entropy_with_logits", "softmax_cross_entropy", "l2_penalty",
             "mlp_init", "mlp_apply", "sgd_train_step")
FORBIDDEN = {
    "mse": ("optax",),
    "binary_cross_entropy_with_logits": ("optax", "jax.nn.log_sigmoid", "jax.nn.softplus", "jax.nn.sigmoid"),
    "softmax_cross_entropy": ("optax", "jax.nn.log_softmax", "jax.nn.logsumexp", "jax.scipy.special.logsumexp",
                              "jax.nn.softmax"),
    "l2_penalty": ("optax",),
    "mlp_init": ("jax.nn.initializers", "flax"),
    "mlp_apply": ("flax",),
    "sgd_train_step": ("optax", "flax"),
}

# ---------------------------------------------------------------- references


# References are jitted: one XLA compilation each instead of one per primitive (grading time).
@jax.jit
def ref_mlp_apply(params, x):
  for layer in params[:-1]:
    x = ref.relu(ref.dense({"kernel": layer["w"], "bias": layer["b"]}, x))
  return ref.dense({"kernel": params[-1]["w"], "bias": params[-1]["b"]}, x)


@jax.jit
def ref_sgd_train_step(params, batch, lr):
  x, y = batch
  grads = jax.grad(lambda p: L.sparse_softmax_cross_entropy(ref_mlp_apply(p, x), y))(params)
  return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)


ref_mse = jax.jit(L.mse)
ref_bce = jax.jit(L.binary_cross_entropy_with_logits)
ref_sce = jax.jit(L.sparse_softmax_cross_entropy)
ref_l2 = jax.jit(L.l2_penalty)


# Digits: 8x8 images flattened to 64 features, standardised with the training
# statistics (a data pipeline's job, the same for every student).
TRAIN = dict(sizes=(64, 128, 10), lr=0.5, batch_size=128, epochs=40, bar=0.95)


@functools.lru_cache(maxsize=1)
def digits():
  import dlfunc.data as D
  tr, te = D.load("digits", "train"), D.load("digits", "test")
  x_tr, x_te = C.standardise(tr.x, te.x)
  return x_tr, np.asarray(tr.y), x_te, np.asarray(te.y)


# ---------------------------------------------------------------- mse


@points(1)
def test_mse_values(sub):
  """mse: mean of squared differences over a (4, 3) batch is a float32 scalar"""
  got = C.matches(sub, "mse", ref_mse, C.normal(0, (4, 3)), C.normal(1, (4, 3)))
  C.shape_dtype(got, (), np.float32, "mse(predictions, targets) for (4, 3) inputs")


@points(1)
@hidden
def test_mse_grad(sub):
  """mse: gradient 2 (p - y) / n with respect to the predictions (float64)"""
  C.grad_matches(sub, "mse", ref_mse, C.normal(2, (5, 2), np.float64), C.normal(3, (5, 2), np.float64))


@points(1)
def test_mse_jit(sub):
  """mse: same value under jax.jit on a (2, 3, 4) input"""
  C.jit_matches(sub, "mse", ref_mse, C.normal(4, (2, 3, 4)), C.normal(5, (2, 3, 4)))

# ---------------------------------------------------------------- binary cross-entropy

EXTREME_LOGITS = np.array([-1e4, -1e3, -30.0, -0.5, 0.5, 30.0, 1e3, 1e4], np.float32)
EXTREME_TARGETS = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0], np.float32)


@points(1)
def test_bce_values(sub):
  """binary_cross_entropy_with_logits: matches the mean BCE on random logits and soft targets"""
  targets = np.random.default_rng(6).uniform(size=(6, 3)).astype(np.float32)
  C.matches(sub, "binary_cross_entropy_with_logits", ref_bce,
            C.normal(7, (6, 3), scale=3.0), targets)


@points(1)
def test_bce_extreme(sub):
  """binary_cross_entropy_with_logits: finite and exact for logits of magnitude 1e4"""
  C.matches(sub, "binary_cross_entropy_with_logits", ref_bce,
            EXTREME_LOGITS, EXTREME_TARGETS)


@points(1)
@hidden
def test_bce_grad(sub):
  """binary_cross_entropy_with_logits: gradient (sigmoid(z) - y) / n, finite at |z| = 1e4 (float64)"""
  logits = np.concatenate([C.normal(8, (6,), np.float64, scale=2.0), EXTREME_LOGITS.astype(np.float64)])
  targets = np.concatenate([np.random.default_rng(9).uniform(size=6), EXTREME_TARGETS]).astype(np.float64)
  C.grad_matches(sub, "binary_cross_entropy_with_logits", ref_bce, logits, targets)


@points(1)
def test_bce_jit(sub):
  """binary_cross_entropy_with_logits: same value under jax.jit"""
  targets = (np.random.default_rng(10).uniform(size=(4, 5)) > 0.5).astype(np.float32)
  C.jit_matches(sub, "binary_cross_entropy_with_logits", ref_bce,
                C.normal(11, (4, 5), scale=4.0), targets)

# ---------------------------------------------------------------- softmax cross-entropy


@points(1)
def test_sce_values(sub):
  """softmax_cross_entropy: matches -mean log softmax(z)[y] for a (6, 5) batch and integer labels"""
  got = C.matches(sub, "softmax_cross_entropy", ref_sce,
                  C.normal(12, (6, 5), scale=2.0), C.labels(13, 6, 5))
  C.shape_dtype(got, (), np.float32, "softmax_cross_entropy(logits, labels) for (6, 5) logits")


@points(1)
def test_sce_extreme(sub):
  """softmax_cross_entropy: finite and exact for logits of magnitude 1e4 (use log-sum-exp)"""
  logits = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4], [-1e4, -1e4, 1e3]], np.float32)
  C.matches(sub, "softmax_cross_entropy", ref_sce, logits,
            np.array([0, 0, 2], np.int32))


@points(1)
@hidden
def test_sce_grad(sub):
  """softmax_cross_entropy: gradient (softmax(z) - onehot(y)) / N with respect to the logits (float64)"""
  C.grad_matches(sub, "softmax_cross_entropy", ref_sce,
                 C.normal(14, (7, 4), np.float64, scale=3.0), C.labels(15, 7, 4))


@points(1)
def test_sce_extreme_grad(sub):
  """softmax_cross_entropy: gradient finite and exact at logits of magnitude 1e4 (float64)"""
  # The true classes have probability exp(-1e4) = 0.0: log(softmax) gives -inf and a NaN gradient here.
  logits = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4 - 1.0], [-1e4, -1e4, 1e3]], np.float64)
  C.grad_matches(sub, "softmax_cross_entropy", ref_sce, logits,
                 np.array([1, 0, 0], np.int32))


@points(1)
def test_sce_jit(sub):
  """softmax_cross_entropy: same value under jax.jit"""
  C.jit_matches(sub, "softmax_cross_entropy", ref_sce,
                C.normal(16, (8, 10), scale=3.0), C.labels(17, 8, 10))

# ---------------------------------------------------------------- l2 penalty


@points(1)
def test_l2_values(sub):
  """l2_penalty: sum of squares over every leaf of a list of {"w", "b"} layers"""
  C.matches(sub, "l2_penalty", ref_l2, C.mlp_params(20, (4, 3, 2)))


@points(1)
def test_l2_scale(sub):
  """l2_penalty: scale=0.01 multiplies the sum"""
  C.matches(sub, "l2_penalty", ref_l2, C.mlp_params(21, (5, 2)), scale=0.01)


@points(1)
@hidden
def test_l2_grad(sub):
  """l2_penalty: gradient 2 * scale * w for every leaf (float64)"""
  C.grad_matches(sub, "l2_penalty", ref_l2, C.mlp_params(22, (3, 4, 2), np.float64), scale=0.5)

# ---------------------------------------------------------------- mlp_init


def _check_init(params, sizes, what):
  if not (isinstance(params, (list, tuple)) and len(params) == len(sizes) - 1):
    C.fail(f"{what}: expected a list of {len(sizes) - 1} layers, got {C.describe(params)[:120]}.")
  for i, (layer, a, b) in enumerate(zip(params, sizes[:-1], sizes[1:])):
    C.keys_are(layer, {"w", "b"}, f"{what}[{i}]")
    C.shape_dtype(layer["w"], (a, b), np.float32, f'{what}[{i}]["w"]')
    C.shape_dtype(layer["b"], (b,), np.float32, f'{what}[{i}]["b"]')


@points(1)
def test_mlp_init_structure(sub):
  """mlp_init: [64, 32, 10] gives two float32 layers {"w": (n_in, n_out), "b": (n_out,)}"""
  _check_init(sub.mlp_init(C.key(0), [64, 32, 10]), (64, 32, 10), "mlp_init(key, [64, 32, 10])")


@points(1)
def test_mlp_init_glorot(sub):
  """mlp_init: weights fill the Glorot limit of each layer, biases are zero"""
  sizes = (64, 32, 10)
  params = sub.mlp_init(C.key(1), list(sizes))
  _check_init(params, sizes, "mlp_init(key, [64, 32, 10])")
  for i, (layer, a, b) in enumerate(zip(params, sizes[:-1], sizes[1:])):
    limit = np.sqrt(6.0 / (a + b))
    big = float(np.abs(layer["w"]).max())
    C.check(big <= limit * (1 + 1e-6) and big > 0.9 * limit,
            f'mlp_init(key, [64, 32, 10])[{i}]["w"]: expected Glorot-uniform values filling '
            f"(-{limit:.4f}, {limit:.4f}) = sqrt(6 / ({a} + {b})); largest |w| is {big:.4f}.")
    C.allclose(layer["b"], np.zeros(b, np.float32), f'mlp_init(key, [64, 32, 10])[{i}]["b"]')


@points(1)
def test_mlp_init_prng(sub):
  """mlp_init: same key same parameters, different keys different parameters"""
  _check_init(sub.mlp_init(C.key(2), [16, 16, 16]), (16, 16, 16), "mlp_init(key, [16, 16, 16])")
  C.prng_discipline(sub, "mlp_init", C.key(2), [16, 16, 16])


@points(1)
def test_mlp_init_layers_differ(sub):
  """mlp_init: each layer draws from its own key (split the key), so equal-shaped layers differ"""
  params = sub.mlp_init(C.key(3), [16, 16, 16])
  _check_init(params, (16, 16, 16), "mlp_init(key, [16, 16, 16])")
  for i in range(1, 2):
    C.check(not np.array_equal(params[0]["w"], params[i]["w"]),
            f'mlp_init(key, [16, 16, 16]): layer 0 and layer {i} have identical "w"; give every '
            "layer its own key: keys = jax.random.split(key, len(sizes) - 1).")
    C.check(not np.array_equal(np.abs(params[0]["w"]) / np.abs(params[0]["w"]).max(),
                               np.abs(params[i]["w"]) / np.abs(params[i]["w"]).max()),
            f'mlp_init(key, [16, 16, 16]): layer {i}\'s "w" is layer 0\'s rescaled; give every '
            "layer its own key.")

# ---------------------------------------------------------------- mlp_apply


@points(1)
def test_mlp_apply_values(sub):
  """mlp_apply: relu hidden layer and linear output for a (5, 6) batch through [6, 4, 3]"""
  got = C.matches(sub, "mlp_apply", ref_mlp_apply, C.mlp_params(30, (6, 4, 3)), C.normal(31, (5, 6)))
  C.shape_dtype(got, (5, 3), np.float32, "mlp_apply(params, x) for x of shape (5, 6)")


@points(1)
def test_mlp_apply_deep(sub):
  """mlp_apply: three layers [8, 7, 6, 4], no activation after the last"""
  C.matches(sub, "mlp_apply", ref_mlp_apply, C.mlp_params(32, (8, 7, 6, 4)), C.normal(33, (3, 8), scale=2.0))


@points(1)
@hidden
def test_mlp_apply_grad(sub):
  """mlp_apply: gradients with respect to params and x match (float64)"""
  C.grad_matches(sub, "mlp_apply", ref_mlp_apply, C.mlp_params(34, (5, 4, 3), np.float64),
                 C.normal(35, (4, 5), np.float64), argnums=(0, 1))


@points(1)
def test_mlp_apply_transforms(sub):
  """mlp_apply: same values under jax.jit and under jax.vmap over the batch"""
  p, x = C.mlp_params(36, (6, 5, 2)), C.normal(37, (7, 6))
  return C.each(lambda: C.jit_matches(sub, "mlp_apply", ref_mlp_apply, p, x),
                lambda: C.vmap_matches(sub, "mlp_apply", ref_mlp_apply, p, x, in_axes=(None, 0)))

# ---------------------------------------------------------------- sgd_train_step


def _step_inputs(seed):
  return C.mlp_params(seed, (6, 5, 3)), (C.normal(seed + 1, (8, 6)), C.labels(seed + 2, 8, 3))


@points(2)
def test_sgd_step_values(sub):
  """sgd_train_step: one step (under jax.jit) equals params - lr * grad of the mean cross-entropy"""
  params, batch = _step_inputs(40)
  C.jit_matches(sub, "sgd_train_step", ref_sgd_train_step, params, batch, 0.1, rtol=1e-5, atol=1e-6)


@points(3, timeout=60)
def test_sgd_step_learns_digits(sub):
  """sgd_train_step: 440 steps from a fixed init reach >= 95% test accuracy on the digits"""
  cfg = TRAIN
  x_tr, y_tr, x_te, y_te = digits()
  import dlfunc.data as D
  batches = [b for e in range(cfg["epochs"]) for b in D.batches(x_tr, y_tr, cfg["batch_size"], seed=0, epoch=e)]
  params = C.glorot_mlp(0, cfg["sizes"])
  start = C.mlp_accuracy(params, x_te, y_te)
  got = sub.iterate("sgd_train_step", params, batches, cfg["lr"])
  what = (f"sgd_train_step: after {len(batches)} jitted steps (batch {cfg['batch_size']}, lr {cfg['lr']}, "
          f"MLP {list(cfg['sizes'])})")
  _check_init(got, cfg["sizes"], what + ", the returned parameters")
  flat = np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in jax.tree_util.tree_leaves(got)])
  C.check(np.all(np.isfinite(flat)), f"{what}: the parameters contain NaN/Inf, so training diverged. Check the "
          "sign of the update (params - lr * grad) and that the loss is the mean, not the sum, over the batch.")
  acc = C.mlp_accuracy(got, x_te, y_te)
  C.check(acc >= cfg["bar"], f"{what}: test accuracy {acc:.3f} < {cfg['bar']} (it was {start:.3f} "
          "before training). Check the sign of the update (params - lr * grad) and that the loss is the "
          "batch mean.")


@points(1)
@hidden
def test_sgd_step_deeper(sub):
  """sgd_train_step: a step on a three-layer net with lr 0.5 matches too (under jax.jit)"""
  params, batch = C.mlp_params(43, (6, 5, 4, 3)), (C.normal(44, (8, 6)), C.labels(45, 8, 3))
  C.jit_matches(sub, "sgd_train_step", ref_sgd_train_step, params, batch, 0.5, rtol=1e-5, atol=1e-6)


@points(1)
def test_sgd_step_compiles_once(sub):
  """sgd_train_step: jax.jit traces it once for three batches of the same shape"""
  params = C.mlp_params(46, (6, 5, 3))
  arg_lists = [(params, (C.normal(47 + i, (8, 6)), C.labels(50 + i, 8, 3)), np.float32(0.1)) for i in range(3)]
  C.compiles_once(sub, "sgd_train_step", arg_lists)

