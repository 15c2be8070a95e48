"""Graded tests for assignment 06: convolutions, pooling and the seed CNN.

References are dlfunc's own functions (``dlfunc.nn.conv2d``, ``dlfunc.nn.max_pool``,
``dlfunc.models.CNN``), run here in the trusted process. Strides and paddings are
drawn by hypothesis with ``derandomize=True`` (the same cases on every machine),
and every drawn case is judged against the reference, so nothing depends on a
random trajectory. See autograder/AUTHORING.md.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import dlfunc.data as data
import dlfunc.models as models
import dlfunc.nn as ref
from autograder import checks as C
from autograder import hidden, points

FUNCTIONS = ("conv2d_naive", "conv2d", "max_pool2d", "cnn_init", "cnn_apply", "cnn_train_step")
_CONV = ("jax.lax.conv", "jax.lax.conv_general_dilated", "jax.lax.conv_with_general_padding",
         "jax.numpy.convolve", "jax.scipy.signal", "flax", "jax.lax.conv_transpose")
FORBIDDEN = {
    "conv2d_naive": _CONV,
    "conv2d": ("flax",),
    "max_pool2d": ("flax",),
}
TIMEOUT = 30.0
TOTAL_TIMEOUT = 150.0

# ---------------------------------------------------------------- helpers


def hypothesis_cases(strategy, n):
  """``n`` distinct cases drawn by hypothesis, identical on every machine (derandomized, no database)."""
  cases = []

  @settings(max_examples=n, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
            suppress_health_check=list(HealthCheck))
  @given(strategy)
  def collect(case):
    if case not in cases:
      cases.append(case)
  collect()
  return cases


@st.composite
def conv_cases(draw, explicit=True):
  """(n, h, w, c_in, c_out, kh, kw, strides, padding, seed) with a padded size >= the kernel."""
  kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
  strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
  if explicit:
    padding = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(2))
    extra_h, extra_w = sum(padding[0]), sum(padding[1])
  else:
    padding = draw(st.one_of(st.sampled_from(["VALID", "SAME", "same"]), st.integers(0, 2),
                             st.tuples(st.tuples(st.integers(0, 2), st.integers(0, 2)),
                                       st.tuples(st.integers(0, 2), st.integers(0, 2)))))
    strides = draw(st.one_of(st.just(strides), st.integers(1, 3)))
    extra_h = extra_w = 0
  h = draw(st.integers(max(1, kh - extra_h), 9))
  w = draw(st.integers(max(1, kw - extra_w), 9))
  return (draw(st.integers(1, 2)), h, w, draw(st.integers(1, 3)), draw(st.integers(1, 3)), kh, kw, strides,
          padding, draw(st.integers(0, 10_000)))


def conv_inputs(case, dtype=np.float32):
  n, h, w, cin, cout, kh, kw, strides, padding, seed = case
  params = {"kernel": C.normal(seed, (kh, kw, cin, cout), dtype), "bias": C.normal(seed + 1, (cout,), dtype)}
  return params, C.normal(seed + 2, (n, h, w, cin), dtype), strides, padding


def ref_conv2d(params, x, strides=1, padding="VALID"):
  return ref.conv2d(params, x, strides=strides, padding=padding)


def ref_max_pool2d(x, window=2, strides=None, padding="VALID"):
  return ref.max_pool(x, window, strides, padding)


def describe_case(params, x, strides, padding):
  return (f"kernel {params['kernel'].shape}, x {x.shape}, strides={strides!r}, padding={padding!r}")


def run_cases(sub, name, cases, rtol=1e-5, atol=1e-5):
  """Each case through jax.jit(student, static strides/padding) vs the reference; names the first failing input."""
  for case in cases:
    params, x, strides, padding = conv_inputs(case)
    got = sub.jit(name, params, x, strides, padding, static_argnums=(2, 3))
    expected = np.asarray(ref_conv2d(params, x, strides, padding))
    C.allclose(got, expected, f"{name}(params, x, strides, padding) with {describe_case(params, x, strides, padding)}",
               rtol=rtol, atol=atol)

# ---------------------------------------------------------------- conv2d_naive


@points(1)
def test_conv2d_naive_values(sub):
  """conv2d_naive: a 3x3 kernel over a (2, 6, 6, 2) batch, stride 1, no padding"""
  params, x, _, _ = conv_inputs((2, 6, 6, 2, 3, 3, 3, (1, 1), ((0, 0), (0, 0)), 1))
  got = C.matches(sub, "conv2d_naive", ref_conv2d, params, x, rtol=1e-5, atol=1e-5)
  C.shape_dtype(got, (2, 4, 4, 3), np.float32, "conv2d_naive(params, x) for x (2, 6, 6, 2), kernel 3x3x2x3")


@points(1)
def test_conv2d_naive_stride_padding(sub):
  """conv2d_naive: stride (2, 1) with padding ((1, 2), (0, 1))"""
  params, x, s, p = conv_inputs((1, 7, 6, 2, 2, 3, 2, (2, 1), ((1, 2), (0, 1)), 2))
  C.matches(sub, "conv2d_naive", ref_conv2d, params, x, s, p, rtol=1e-5, atol=1e-5)


@points(2)
def test_conv2d_naive_hypothesis(sub):
  """conv2d_naive: equals jax.lax.conv_general_dilated on 6 stride/padding/shape cases drawn by hypothesis"""
  run_cases(sub, "conv2d_naive", hypothesis_cases(conv_cases(explicit=True), 6))


@points(2)
def test_conv2d_naive_grad(sub):
  """conv2d_naive: gradients with respect to the kernel, bias and input match (float64)"""
  params, x, s, p = conv_inputs((2, 5, 5, 2, 2, 2, 3, (2, 1), ((1, 0), (1, 1)), 3), np.float64)
  C.grad_matches(sub, "conv2d_naive", ref_conv2d, params, x, argnums=(0, 1), strides=s, padding=p)

# ---------------------------------------------------------------- conv2d


@points(1)
def test_conv2d_values(sub):
  """conv2d: VALID, stride 1, matches on a (2, 8, 8, 1) batch with 4 filters"""
  params, x, _, _ = conv_inputs((2, 8, 8, 1, 4, 3, 3, 1, "VALID", 4))
  got = C.matches(sub, "conv2d", ref_conv2d, params, x, rtol=1e-5, atol=1e-5)
  C.shape_dtype(got, (2, 6, 6, 4), np.float32, "conv2d(params, x) for x (2, 8, 8, 1), kernel 3x3x1x4")


@points(1)
def test_conv2d_same_stride2(sub):
  """conv2d: padding='SAME' with stride 2 gives ceil(H / 2) and the extra zero at the bottom/right"""
  params, x, _, _ = conv_inputs((1, 8, 7, 2, 3, 3, 3, 2, "SAME", 5))
  got = C.matches(sub, "conv2d", ref_conv2d, params, x, strides=2, padding="SAME", rtol=1e-5, atol=1e-5)
  C.shape_dtype(got, (1, 4, 4, 3), np.float32, "conv2d(params, x (1, 8, 7, 2), strides=2, padding='SAME')")


@points(2)
def test_conv2d_hypothesis(sub):
  """conv2d: equals jax.lax.conv_general_dilated on 8 cases (int/pair strides; VALID/SAME/int/pair padding)"""
  run_cases(sub, "conv2d", hypothesis_cases(conv_cases(explicit=False), 8))


@points(1)
@hidden
def test_conv2d_grad(sub):
  """conv2d: gradients with respect to the kernel, bias and input match (float64, padding 1, stride 2)"""
  params, x, _, _ = conv_inputs((2, 6, 5, 2, 3, 3, 3, 2, 1, 6), np.float64)
  C.grad_matches(sub, "conv2d", ref_conv2d, params, x, argnums=(0, 1), strides=2, padding=1)


@points(1)
@hidden
def test_conv2d_no_bias(sub):
  """conv2d: a params dict without 'bias' is a convolution without bias"""
  params, x, _, _ = conv_inputs((1, 5, 5, 2, 2, 2, 2, 1, "VALID", 7))
  del params["bias"]
  C.matches(sub, "conv2d", ref_conv2d, params, x, rtol=1e-5, atol=1e-5)

# ---------------------------------------------------------------- max_pool2d


@points(1)
def test_max_pool2d_values(sub):
  """max_pool2d: 2x2 windows, stride 2, on a (2, 6, 6, 3) batch"""
  x = C.normal(10, (2, 6, 6, 3))
  got = C.matches(sub, "max_pool2d", ref_max_pool2d, x)
  C.shape_dtype(got, (2, 3, 3, 3), np.float32, "max_pool2d(x) for x (2, 6, 6, 3)")


@points(1)
def test_max_pool2d_same_negative(sub):
  """max_pool2d: SAME padding on all-negative inputs (padded cells must be -inf, not 0)"""
  x = -np.abs(C.normal(11, (1, 5, 5, 2))) - 1.0
  C.matches(sub, "max_pool2d", ref_max_pool2d, x, 2, 2, "SAME")


@points(1)
@hidden
def test_max_pool2d_window_strides(sub):
  """max_pool2d: overlapping 3x3 windows with stride (1, 2)"""
  C.matches(sub, "max_pool2d", ref_max_pool2d, C.normal(12, (2, 7, 7, 2)), (3, 3), (1, 2))


@points(1)
@hidden
def test_max_pool2d_grad(sub):
  """max_pool2d: the gradient goes to each window's maximum (float64)"""
  C.grad_matches(sub, "max_pool2d", ref_max_pool2d, C.normal(13, (2, 4, 6, 2), np.float64))

# ---------------------------------------------------------------- the seed CNN


@functools.lru_cache(maxsize=None)
def _ref_shapes():
  """dlfunc's CNN variables as ShapeDtypeStructs (traced, never compiled: compiling Flax's init costs seconds)."""
  return jax.eval_shape(lambda key: models.CNN().init(key, jnp.zeros((1, 8, 8, 1), jnp.float32)), jax.random.key(0))


@functools.lru_cache(maxsize=None)
def _ref_variables(seed):
  """Variables for dlfunc's CNN drawn with NumPy (PCG64: the same on every machine).

  Kernels LeCun-normal like Flax's default (std 1/sqrt(fan_in), not truncated); biases N(0, 0.1^2)
  rather than Flax's zeros, so that the cnn_apply checks see the bias.
  """
  params = {}
  for i, (layer, leaves) in enumerate(sorted(_ref_shapes()["params"].items())):
    k, b = leaves["kernel"], leaves["bias"]
    params[layer] = {"kernel": C.normal(100 * seed + 2 * i, k.shape, k.dtype, scale=np.prod(k.shape[:-1]) ** -0.5),
                     "bias": C.normal(100 * seed + 2 * i + 1, b.shape, b.dtype, scale=0.1)}
  return {"params": params}


def ref_cnn_apply(variables, x):
  return models.CNN().apply(variables, x)


_jit_cnn_apply = jax.jit(ref_cnn_apply)


@points(1)
def test_cnn_init_structure(sub):
  """cnn_init: returns {'params': {'Conv_0': {kernel (3,3,1,32), bias}, 'Dense_0': {kernel (1152,10), bias}}}"""
  got = sub.cnn_init(C.key(0))
  want = _ref_shapes()
  C.keys_are(got, {"params"}, "cnn_init(key)")
  C.keys_are(got["params"], set(want["params"]), "cnn_init(key)['params']")
  for layer, leaves in want["params"].items():
    C.keys_are(got["params"][layer], set(leaves), f"cnn_init(key)['params'][{layer!r}]")
    for k, v in leaves.items():
      C.shape_dtype(got["params"][layer][k], v.shape, v.dtype, f"cnn_init(key)['params'][{layer!r}][{k!r}]")


@points(1)
def test_cnn_init_prng(sub):
  """cnn_init: same key same variables, a different key different ones (one jax.vmap call over 3 keys)"""
  # One vmapped call instead of C.prng_discipline's three plain ones: each call compiles Flax's whole init
  # (seconds on a loaded 2-core grader), and the verdicts are the same.
  k = C.key(1)
  keys = jnp.stack([k, k, jax.random.fold_in(k, 12345)])
  got = sub.vmap("cnn_init", keys)
  leaves = jax.tree_util.tree_leaves(got)
  what = "jax.vmap(cnn_init)(keys) for keys [k, k, k2]"
  C.check(leaves and all(isinstance(x, np.ndarray) and x.ndim >= 1 and x.shape[0] == 3 for x in leaves),
          f"{what}: expected a tree of arrays with a leading axis of 3, got {C.describe(got)[:80]}.")
  C.check(all(np.array_equal(x[0], x[1]) for x in leaves),
          f"{what}: the same key gave different variables. Randomness must come only from the key "
          "(no np.random, no global state).")
  C.check(any(not np.array_equal(x[0], x[2]) for x in leaves if x[0].size > 1),
          f"{what}: a different key gave exactly the same variables. Pass the key to CNN().init, not a fixed "
          "jax.random.key(0).")


@points(2)
def test_cnn_apply_values(sub):
  """cnn_apply: with the grader's variables, gives dlfunc's CNN logits on 16 digits"""
  x = data.load("digits", "test").x[:16]
  got = C.matches(sub, "cnn_apply", ref_cnn_apply, _ref_variables(2), x, rtol=1e-4, atol=1e-5)
  C.shape_dtype(got, (16, 10), np.float32, "cnn_apply(variables, x) for x (16, 8, 8, 1)")


@points(1)
def test_cnn_apply_jit(sub):
  """cnn_apply: same logits under jax.jit"""
  C.jit_matches(sub, "cnn_apply", ref_cnn_apply, _ref_variables(3), C.normal(14, (4, 8, 8, 1)),
                rtol=1e-4, atol=1e-5)


def ref_train_step(variables, batch, lr):
  x, y = batch

  def loss(v):
    from dlfunc.losses import sparse_softmax_cross_entropy
    return sparse_softmax_cross_entropy(ref_cnn_apply(v, x), y)
  grads = jax.grad(loss)(variables)
  return jax.tree_util.tree_map(lambda p, g: p - lr * g, variables, grads)


@points(2)
def test_cnn_train_step_one_step(sub):
  """cnn_train_step: one step with lr 0.5 equals variables - 0.5 * grad of the mean cross-entropy"""
  train = data.load("digits", "train")
  batch = (np.asarray(train.x[:32]), np.asarray(train.y[:32]))
  C.matches(sub, "cnn_train_step", ref_train_step, _ref_variables(4), batch, 0.5, rtol=1e-4, atol=1e-5)


# The training protocol (all of it on the grader's side; the student writes one plain SGD step).
# Without augmentation the seed CNN (a linear read-out of 32 conv features) trained with lr 0.5 for
# 10-30 epochs (with or without a decay) lands at 346-353 of the 360 test digits (96.1-98.1%) over
# 8 seeds; other lrs, batch sizes and standardised inputs did not get clear of a 97% bar (350).
# With half of each batch shifted by up to one pixel and the learning rate cut tenfold for the last
# 5 epochs, the reference step reached 355-360 (98.6-100%, mean 358) in 80 runs, 16 seeds for each
# of: init = shuffle seed, the init seed alone, the shuffle seed alone, and lr 0.45 / 0.55 (the
# grader's own run: 359). So a correct step clears the bar by 5+ digits and float differences across
# machines cannot move it across; tests/test_assignment_06.py re-measures a few seeds (slow).
EPOCHS, DECAY_EPOCH, BATCH = 20, 15, 32
LR, LR_LATE = 0.5, 0.05
SHIFT_P = 0.5
ACC_BAR = 0.97


def shift_augment(x, rng, p=SHIFT_P):
  """Each image, with probability ``p``, shifted by (dy, dx) in {-1, 0, 1}^2 with zero fill (NumPy only)."""
  n, h, w = x.shape[:3]
  shift = rng.integers(-1, 2, size=(n, 2))
  shift[rng.random(n) >= p] = 0
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  rows = 1 - shift[:, :1] + np.arange(h)          # out[i, r, c] = x[i, r - dy, c - dx]
  cols = 1 - shift[:, 1:] + np.arange(w)
  return xp[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def training_batches(seed=0, epochs=EPOCHS, batch=BATCH):
  """One list of (x, y) batches per epoch: data.batches' shuffle, then shift_augment (PCG64: same everywhere)."""
  train = data.load("digits", "train")
  rng = np.random.default_rng(seed)
  return [[(shift_augment(np.asarray(xb), rng), np.asarray(yb))
           for xb, yb in data.batches(train.x, train.y, batch, seed=seed, epoch=e)] for e in range(epochs)]


def heldout_accuracy(variables):
  """Test accuracy of the reference CNN with these variables; raises if the tree does not fit the CNN."""
  test = data.load("digits", "test")
  return float(np.mean(np.asarray(_jit_cnn_apply(variables, test.x)).argmax(-1) == test.y))


@points(3, timeout=90)
@hidden
def test_cnn_train_step_learns(sub):
  """cnn_train_step: 20 epochs of SGD on shift-augmented digits (lr 0.5, then 0.05) reach >= 97% test accuracy"""
  epochs = training_batches()
  early = [b for e in epochs[:DECAY_EPOCH] for b in e]
  late = [b for e in epochs[DECAY_EPOCH:] for b in e]
  v = sub.iterate("cnn_train_step", _ref_variables(5), early, LR)
  v = sub.iterate("cnn_train_step", v, late, LR_LATE)
  C.finite(v, "the variables after training")
  acc = C.use_returned(heldout_accuracy, v, what="cnn_train_step returned variables the CNN cannot use")
  C.check(acc >= ACC_BAR, f"cnn_train_step: test accuracy {acc:.3f} < {ACC_BAR} after {len(early) + len(late)} "
          f"steps (lr {LR}, then {LR_LATE}); a correct step reaches about 0.99. Check the loss (mean over the "
          "batch, log-softmax of the logits) and that you subtract lr * grad.")
