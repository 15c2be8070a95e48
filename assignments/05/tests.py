"""Graded tests for assignment 05: regularization, dropout, batch and layer normalization.

References are dlfunc's own functions (``dlfunc.nn.dropout``, ``batch_norm``,
``layer_norm``, ``dlfunc.losses.l1_penalty``), run here. Dropout masks are the
student's business (any correct use of the key is fine), so dropout is judged
by statistics with wide bars and by equalities the student's code controls
(same key, same mask; kept values scaled by exactly 1 / (1 - rate)).

The overfitting experiment trains the student's ``regularized_train_step`` twice
in the worker (plain, then with L2 and dropout) on 300 training digits with 25 %
of their labels replaced at random, and judges the returned parameters here on
the clean test split. The step uses the student's ``dropout``, so a broken
dropout also costs the experiment.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

import dlfunc.losses as L
import dlfunc.nn as ref
from autograder import checks as C
from autograder import hidden, points

# Names of the parts of multi-output results, used in feedback (lstm_step(...)[0][0] (`h`)).
OUTPUTS = {"batch_norm": "(y, new_mean, new_var)"}
FUNCTIONS = ("dropout", "batch_norm", "layer_norm", "l1_penalty", "regularized_train_step")
FORBIDDEN = {
    "dropout": ("flax", "optax", "jax.example_libraries"),
    "batch_norm": ("flax", "jax.nn.standardize", "jax.example_libraries"),
    "layer_norm": ("flax", "jax.nn.standardize", "jax.example_libraries"),
    "l1_penalty": ("optax",),
    "regularized_train_step": ("flax", "optax"),
}

# ---------------------------------------------------------------- references


@functools.partial(jax.jit, static_argnames=("train", "momentum", "eps"))   # one compile, not one per primitive
def ref_batch_norm(x, gamma, beta, running_mean, running_var, train, momentum=0.99, eps=1e-5):
  y, stats = ref.batch_norm({"scale": gamma, "bias": beta}, {"mean": running_mean, "var": running_var}, x,
                            train=bool(train), momentum=momentum, eps=eps)
  return y, stats["mean"], stats["var"]


def ref_layer_norm(x, gamma, beta, eps=1e-5):
  return ref.layer_norm({"scale": gamma, "bias": beta}, x, eps=eps)


ref_l1 = jax.jit(L.l1_penalty)


def _mlp(params, x):
  for layer in params[:-1]:
    x = ref.relu(ref.dense({"kernel": layer["w"], "bias": layer["b"]}, x))
  return ref.dense({"kernel": params[-1]["w"], "bias": params[-1]["b"]}, x)


@jax.jit
def ref_step_no_dropout(params, batch, lr, l2, rate):
  """regularized_train_step for rate = 0 only (no mask, so no dependence on how the key is used)."""
  del rate
  x, y, _ = batch

  def loss(p):
    return L.sparse_softmax_cross_entropy(_mlp(p, x), y) + l2 * sum(jnp.sum(jnp.square(l["w"])) for l in p)
  g = jax.grad(loss)(params)
  return jax.tree_util.tree_map(lambda a, b: a - lr * b, params, g)


def bn_args(seed, shape, dtype=np.float32):
  c = shape[-1]
  rng = np.random.default_rng(seed)
  x = (rng.standard_normal(shape) * rng.uniform(0.5, 3.0, c) + rng.uniform(-2, 2, c)).astype(dtype)
  return (x, (1.0 + 0.2 * rng.standard_normal(c)).astype(dtype), (0.3 * rng.standard_normal(c)).astype(dtype),
          (0.5 * rng.standard_normal(c)).astype(dtype), rng.uniform(0.5, 2.0, c).astype(dtype))

# ---------------------------------------------------------------- dropout


def _dropout_out(sub, what, *args, **kw):
  out = sub.dropout(*args, **kw)
  x = np.asarray(args[1])
  C.shape_dtype(out, x.shape, x.dtype, what)
  return np.asarray(out)


@points(1)
def test_dropout_eval_identity(sub):
  """dropout: train=False returns x unchanged"""
  x = C.normal(0, (4, 5))
  C.allclose(sub.dropout(C.key(0), x, 0.5, False), x, "dropout(key, x, rate=0.5, train=False)", rtol=0, atol=0)


@points(1)
def test_dropout_kept_fraction(sub):
  """dropout: rate=0.3 on 100,000 ones keeps 70 % (+-1 %) and scales kept values by exactly 1 / 0.7"""
  x = np.ones(100_000, np.float32)
  out = _dropout_out(sub, "dropout(key, ones(100000), 0.3, True)", C.key(1), x, 0.3, True)
  kept = out != 0
  frac = kept.mean()
  C.check(abs(frac - 0.7) < 0.01, f"dropout(key, ones(100000), rate=0.3): kept {frac:.4f} of the elements, "
          "expected 0.7 (+-0.01). rate is the probability of DROPPING an element.")
  C.allclose(out[kept], np.full(int(kept.sum()), 1 / 0.7, np.float32),
             "dropout(key, ones(100000), 0.3): the kept values (inverted dropout divides them by 1 - rate)")


@points(1)
@hidden
def test_dropout_expectation(sub):
  """dropout: E[dropout(x)] = x: the mean of 200,000 draws of a positive signal is kept within 2 %"""
  x = (2.0 + C.normal(2, (200_000,))).astype(np.float32)
  out = _dropout_out(sub, "dropout(key, x, 0.6, True)", C.key(2), x, 0.6, True)
  ratio = float(out.astype(np.float64).mean() / x.astype(np.float64).mean())
  C.check(abs(ratio - 1.0) < 0.02, f"dropout(key, x, rate=0.6): mean(output) / mean(x) = {ratio:.4f}, expected 1 "
          "(+-0.02): scale the kept values by 1 / (1 - rate) so the expectation is unchanged.")


@points(1)
def test_dropout_same_key_same_mask(sub):
  """dropout: same key same mask, a different key a different mask"""
  x = C.normal(3, (64,))
  _dropout_out(sub, "dropout(key, x, 0.5, True)", C.key(3), x, 0.5, True)   # an array, not None
  C.prng_discipline(sub, "dropout", C.key(3), x, 0.5, True)


@points(1)
@hidden
def test_dropout_grad(sub):
  """dropout: gradient is cotangent * mask / (1 - rate), for a random cotangent (float64)"""
  x = 1.0 + np.abs(C.normal(4, (6, 7), np.float64))
  cot = C.normal(5, (6, 7), np.float64)
  out, g = sub.vjp("dropout", (C.key(4), x, 0.25, True), cot, argnums=1)
  out, g = np.asarray(out), np.asarray(g)
  C.shape_dtype(g, x.shape, np.float64, "the gradient of dropout(key, x, 0.25) with respect to x")
  kept = out != 0
  C.check(0 < kept.sum() < kept.size, f"dropout(key, x, 0.25) on 42 positive values kept {kept.sum()} of them.")
  C.allclose(np.where(kept, out / x, 0.0), np.where(kept, 1 / 0.75, 0.0), "dropout(key, x, 0.25): output / x")
  C.allclose(g, np.where(kept, cot / 0.75, 0.0), "gradient of dropout(key, x, 0.25) (float64, random cotangent)",
             rtol=1e-7, atol=1e-12)


@points(1)
def test_dropout_jit(sub):
  """dropout: works under jax.jit with rate and train static, same mask as eagerly"""
  key, x = C.key(6), C.normal(6, (5, 8))
  eager = _dropout_out(sub, "dropout(key, x, 0.5, True)", key, x, 0.5, True)
  C.finite(eager, "dropout(key, x, 0.5, True)")
  C.jit_matches(sub, "dropout", lambda *a: eager, key, x, 0.5, True, static_argnums=(2, 3))

# ---------------------------------------------------------------- batch_norm


def _bn_check(sub, args, what, **kw):
  got = sub.batch_norm(*args, **kw)
  if not (isinstance(got, (tuple, list)) and len(got) == 3):
    C.fail(f"{what}: expected a triple (y, new_mean, new_var), got {C.describe(got)[:160]}.")
  C.allclose(tuple(got), ref_batch_norm(*args, **kw), what, rtol=1e-4, atol=1e-5)


@points(1)
def test_bn_train(sub):
  """batch_norm: train=True normalises with the batch statistics and updates the running ones, (8, 4)"""
  _bn_check(sub, bn_args(10, (8, 4)) + (True,), "batch_norm(x (8, 4), gamma, beta, mean, var, train=True)")


@points(1)
def test_bn_images(sub):
  """batch_norm: an NHWC batch (4, 3, 3, 2) uses statistics over N, H and W per channel"""
  _bn_check(sub, bn_args(11, (4, 3, 3, 2)) + (True,), "batch_norm(x (4, 3, 3, 2), ..., train=True)")


@points(1)
def test_bn_eval(sub):
  """batch_norm: train=False uses the running statistics and returns them unchanged"""
  _bn_check(sub, bn_args(12, (6, 3)) + (False,), "batch_norm(x (6, 3), ..., train=False)")


@points(1)
@hidden
def test_bn_momentum_eps(sub):
  """batch_norm: momentum=0.5 weights the old running value (Keras/Flax), eps=0.1 is added to the variance"""
  _bn_check(sub, bn_args(13, (5, 3)) + (True,), "batch_norm(..., train=True, momentum=0.5, eps=0.1)",
            momentum=0.5, eps=0.1)


@points(2)
@hidden
def test_bn_grad_train(sub):
  """batch_norm: train-mode gradients with respect to x, gamma and beta match (float64, random cotangent)"""
  # train travels as a keyword: grad_matches traces positional arguments, and train must stay a Python bool.
  C.grad_matches(sub, "batch_norm", ref_batch_norm, *bn_args(14, (6, 3), np.float64), argnums=(0, 1, 2), train=True)


@points(1)
@hidden
def test_bn_grad_eval(sub):
  """batch_norm: eval-mode gradients with respect to x, gamma and beta match (float64)"""
  C.grad_matches(sub, "batch_norm", ref_batch_norm, *bn_args(15, (4, 2), np.float64), argnums=(0, 1, 2),
                 train=False)


@points(1)
def test_bn_jit(sub):
  """batch_norm: works under jax.jit with train static"""
  args = bn_args(16, (7, 3)) + (True,)
  C.jit_matches(sub, "batch_norm", ref_batch_norm, *args, static_argnums=(5,), rtol=1e-4, atol=1e-5)

# ---------------------------------------------------------------- layer_norm


def ln_args(seed, shape, dtype=np.float32):
  d = shape[-1]
  rng = np.random.default_rng(seed)
  return ((rng.standard_normal(shape) * 3 + 1).astype(dtype), (1 + 0.2 * rng.standard_normal(d)).astype(dtype),
          (0.3 * rng.standard_normal(d)).astype(dtype))


@points(1)
def test_ln_values(sub):
  """layer_norm: each row of a (4, 6) batch normalised over its features, then scaled and shifted"""
  C.matches(sub, "layer_norm", ref_layer_norm, *ln_args(20, (4, 6)), rtol=1e-5, atol=1e-5)


@points(1)
def test_ln_sequence(sub):
  """layer_norm: a (2, 3, 5) input is normalised over the last axis only"""
  C.matches(sub, "layer_norm", ref_layer_norm, *ln_args(21, (2, 3, 5)), rtol=1e-5, atol=1e-5)


@points(1)
def test_ln_constant_row(sub):
  """layer_norm: a constant row (variance 0) gives beta, finite (eps inside the square root)"""
  x, gamma, beta = ln_args(22, (2, 4))
  x[0] = 7.0
  C.matches(sub, "layer_norm", ref_layer_norm, x, gamma, beta, rtol=1e-5, atol=1e-5)


@points(1)
@hidden
def test_ln_grad(sub):
  """layer_norm: gradients with respect to x, gamma and beta match (float64, random cotangent)"""
  C.grad_matches(sub, "layer_norm", ref_layer_norm, *ln_args(23, (3, 5), np.float64), argnums=(0, 1, 2))


@points(1)
def test_ln_vmap(sub):
  """layer_norm: jax.vmap over the batch equals the batched call (no batch statistics)"""
  x, gamma, beta = ln_args(24, (5, 4))
  C.vmap_matches(sub, "layer_norm", ref_layer_norm, x, gamma, beta, in_axes=(0, None, None), rtol=1e-5, atol=1e-5)

# ---------------------------------------------------------------- l1_penalty


@points(1)
def test_l1_values(sub):
  """l1_penalty: sum of |w| over every leaf of a list of {"w", "b"} layers"""
  C.matches(sub, "l1_penalty", ref_l1, C.mlp_params(30, (4, 3, 2)))


@points(1)
def test_l1_scale(sub):
  """l1_penalty: scale=0.01 multiplies the sum"""
  C.matches(sub, "l1_penalty", ref_l1, C.mlp_params(31, (5, 2)), scale=0.01)


@points(1)
@hidden
def test_l1_grad(sub):
  """l1_penalty: gradient scale * sign(w) for every leaf (float64)"""
  C.grad_matches(sub, "l1_penalty", ref_l1, C.mlp_params(32, (3, 4, 2), np.float64), scale=0.5)

# ---------------------------------------------------------------- regularized_train_step


def _step_inputs(seed):
  return C.mlp_params(seed, (6, 5, 3)), (C.normal(seed + 1, (8, 6)), C.labels(seed + 2, 8, 3), C.key(seed))


@points(1)
def test_step_l2_no_dropout(sub):
  """regularized_train_step: with rate=0 one step equals SGD on cross-entropy + l2 * sum of squared weights"""
  params, batch = _step_inputs(40)
  C.jit_matches(sub, "regularized_train_step", ref_step_no_dropout, params, batch, 0.1, 0.05, 0.0,
                rtol=1e-5, atol=1e-6)


@points(1)
def test_step_uses_dropout(sub):
  """regularized_train_step: rate=0.5 changes the step, and the same key gives the same step"""
  params, batch = _step_inputs(41)
  plain = sub.jit("regularized_train_step", params, batch, 0.1, 0.0, 0.0)
  a = sub.jit("regularized_train_step", params, batch, 0.1, 0.0, 0.5)
  b = sub.jit("regularized_train_step", params, batch, 0.1, 0.0, 0.5)
  flat = lambda t: np.concatenate([np.ravel(v) for v in jax.tree_util.tree_leaves(t)])  # noqa: E731
  C.check(np.array_equal(flat(a), flat(b)), "regularized_train_step: two steps with the same key and rate=0.5 "
          "differ; draw the dropout masks from the batch's key only.")
  C.check(not np.allclose(flat(a), flat(plain)), "regularized_train_step: rate=0.5 gives the same step as rate=0; "
          "apply dropout(key, h, rate, True) after every hidden relu.")


# Measured with the reference over 3 init seeds: the gap narrows by 0.15-0.18 and test accuracy rises by 0.05-0.09.
EXPERIMENT = dict(n=300, noise=0.25, sizes=(64, 128, 10), steps=400, batch=50, lr=0.2,
                  plain=(0.0, 0.0), regularized=(3e-3, 0.5), min_narrowing=0.05)


@functools.lru_cache(maxsize=1)
def noisy_digits():
  """300 training digits, 25 % of labels redrawn at random (PCG64), standardised; the clean test split."""
  import dlfunc.data as D
  tr, te = D.load("digits", "train"), D.load("digits", "test")
  n = EXPERIMENT["n"]
  x_tr, x_te = C.standardise(tr.x, te.x)       # with the statistics of the whole training split
  rng = np.random.default_rng(0)
  y = np.array(tr.y[:n])
  flip = rng.random(n) < EXPERIMENT["noise"]
  y[flip] = rng.integers(0, 10, int(flip.sum()))
  return x_tr[:n], y.astype(np.int32), x_te, np.asarray(te.y)


@functools.lru_cache(maxsize=1)
def experiment_batches():
  """(x, labels, key) per step: PCG64 draws of 50 of the 300 examples, key fold_in(key(0), step)."""
  x, y, _, _ = noisy_digits()
  cfg = EXPERIMENT
  keys = jax.jit(jax.vmap(lambda s: jax.random.fold_in(jax.random.key(0), s)))(jnp.arange(cfg["steps"]))
  out = []
  for s, k in enumerate(keys):
    idx = np.random.default_rng((0, s)).choice(cfg["n"], cfg["batch"], replace=False)
    out.append((x[idx], y[idx], k))
  return tuple(out)


@points(3, timeout=60)
def test_step_regularization_narrows_the_gap(sub):
  """regularized_train_step: on noisy labels, L2 + dropout narrows the train/test accuracy gap by >= 0.05"""
  cfg = EXPERIMENT
  x, y, x_te, y_te = noisy_digits()
  batches = experiment_batches()
  res = {}
  for kind in ("plain", "regularized"):
    l2, rate = cfg[kind]
    params = sub.iterate("regularized_train_step", C.glorot_mlp(0, cfg["sizes"]), batches, cfg["lr"], l2, rate)
    leaves = jax.tree_util.tree_leaves(params)
    C.check(len(leaves) == 4 and all(np.all(np.isfinite(np.asarray(v, np.float64))) for v in leaves),
            f"regularized_train_step (l2={l2:g}, rate={rate:g}): after {cfg['steps']} steps the parameters are not "
            f"a finite [{{'w', 'b'}}, {{'w', 'b'}}] list: {C.describe(params)[:120]}.")
    res[kind] = (C.mlp_accuracy(params, x, y), C.mlp_accuracy(params, x_te, y_te))
  (tr_p, te_p), (tr_r, te_r) = res["plain"], res["regularized"]
  gap_p, gap_r = tr_p - te_p, tr_r - te_r
  summary = (f"plain: train {tr_p:.3f} / test {te_p:.3f} (gap {gap_p:.3f}); l2={cfg['regularized'][0]:g}, "
             f"rate={cfg['regularized'][1]:g}: train {tr_r:.3f} / test {te_r:.3f} (gap {gap_r:.3f})")
  C.check(tr_p > 0.9, f"regularized_train_step: without regularization the net should fit its 300 noisy training "
          f"digits (train accuracy > 0.9); {summary}. Check the SGD step.")
  C.check(gap_r <= gap_p - cfg["min_narrowing"] and te_r >= te_p,
          f"regularized_train_step: regularization should narrow the gap by >= {cfg['min_narrowing']} without "
          f"hurting test accuracy; {summary}. Check that l2 multiplies the squared weights and dropout follows "
          "each hidden relu.")
