"""dlfunc.nn layers against flax.linen (and so jax.lax), under jit, grad and vmap; gradient checks in float64.

One table drives the parity tests: each row builds random parameters in Flax's
layout, a dlfunc function ``ours(params, x)`` and the Flax reference
``theirs(params, x)``, both returning ``{"y": output, ...}`` (batch norm also
returns its updated running statistics), and a tolerance.
"""
import functools
from typing import Callable, NamedTuple

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from dlfunc import nn


class Case(NamedTuple):
  params: dict
  x: np.ndarray
  ours: Callable
  theirs: Callable
  rtol: float = 1e-5
  atol: float = 1e-5


def _rand(seed, *shape, scale=1.0):
  return (scale * np.random.RandomState(seed).randn(*shape)).astype(np.float32)


def _dense(shape_x=(4, 3)):
  m = linen.Dense(5)
  p = {"kernel": _rand(1, shape_x[-1], 5), "bias": _rand(2, 5)}
  return Case(p, _rand(3, *shape_x), lambda p, x: {"y": nn.dense(p, x)},
              lambda p, x: {"y": m.apply({"params": p}, x)})


def _conv(strides=1, padding="VALID", dilation=1, groups=1, use_bias=True, cin=4, hw=(9, 8)):
  m = linen.Conv(6, (3, 3), strides=strides, padding=padding, kernel_dilation=dilation,
                 feature_group_count=groups, use_bias=use_bias)
  p = {"kernel": _rand(1, 3, 3, cin // groups, 6)}
  if use_bias:
    p["bias"] = _rand(2, 6)
  return Case(p, _rand(3, 2, *hw, cin),
              lambda p, x: {"y": nn.conv2d(p, x, strides=strides, padding=padding, dilation=dilation, groups=groups)},
              lambda p, x: {"y": m.apply({"params": p}, x)})


def _pool(kind, window=(2, 2), strides=None, padding="VALID", count_include_pad=None, hw=(7, 6)):
  # Flax's strides default to 1, dlfunc's (like Keras and PyTorch) to the window: pass them to Flax.
  flax_strides = window if strides is None else strides
  if kind == "max":
    ours = functools.partial(nn.max_pool, window=window, strides=strides, padding=padding)
    theirs = functools.partial(linen.max_pool, window_shape=window, strides=flax_strides, padding=padding)
  else:
    ours = functools.partial(nn.avg_pool, window=window, strides=strides, padding=padding,
                             count_include_pad=count_include_pad)
    theirs = functools.partial(linen.avg_pool, window_shape=window, strides=flax_strides, padding=padding,
                               count_include_pad=count_include_pad)
  return Case({}, _rand(3, 2, *hw, 3), lambda p, x: {"y": ours(x)}, lambda p, x: {"y": theirs(x)})


def _batch_norm(train, x_shape=(8, 5, 5, 3)):
  c = x_shape[-1]
  m = linen.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)
  p = {"scale": 1.0 + _rand(1, c, scale=0.1), "bias": _rand(2, c)}
  stats = {"mean": _rand(4, c), "var": 1.0 + np.abs(_rand(5, c))}

  def ours(p, x):
    y, new = nn.batch_norm(p, stats, x, train=train, momentum=0.9, eps=1e-5)
    return {"y": y, "stats": new}

  def theirs(p, x):
    y, new = m.apply({"params": p, "batch_stats": stats}, x, mutable=["batch_stats"])
    return {"y": y, "stats": dict(new["batch_stats"])}
  # Flax computes the batch variance as E[x^2] - E[x]^2: a few ulps from dlfunc's E[(x - mean)^2].
  return Case(p, 2.0 + _rand(3, *x_shape, scale=3.0), ours, theirs, rtol=1e-4, atol=1e-5)


def _layer_norm(x_shape=(4, 6, 10)):
  m = linen.LayerNorm(epsilon=1e-5)  # Flax's default is 1e-6; dlfunc's is PyTorch's 1e-5
  p = {"scale": 1.0 + _rand(1, x_shape[-1], scale=0.1), "bias": _rand(2, x_shape[-1])}
  return Case(p, _rand(3, *x_shape, scale=2.0), lambda p, x: {"y": nn.layer_norm(p, x, eps=1e-5)},
              lambda p, x: {"y": m.apply({"params": p}, x)}, rtol=1e-4, atol=1e-5)


def _embed():
  m = linen.Embed(11, 4)
  ids = np.random.RandomState(0).randint(0, 11, size=(3, 5)).astype(np.int32)
  return Case({"embedding": _rand(1, 11, 4)}, ids, lambda p, x: {"y": nn.embedding(p, x)},
              lambda p, x: {"y": m.apply({"params": p}, x)}, rtol=0, atol=0)


def _dropout_eval():
  m = linen.Dropout(0.5, deterministic=True)
  return Case({}, _rand(3, 4, 6), lambda p, x: {"y": nn.dropout(x, 0.5, train=False)},
              lambda p, x: {"y": m.apply({}, x)}, rtol=0, atol=0)


def _flatten():
  return Case({}, _rand(3, 2, 3, 4, 5), lambda p, x: {"y": nn.flatten(x)},
              lambda p, x: {"y": x.reshape((x.shape[0], -1))}, rtol=0, atol=0)


# (id, builder)
LAYERS = [
    ("dense", _dense),
    ("dense_3d_input", functools.partial(_dense, (2, 4, 3))),
    ("conv_valid", _conv),
    ("conv_same_stride2", functools.partial(_conv, strides=2, padding="SAME")),
    ("conv_explicit_pairs", functools.partial(_conv, padding=((1, 2), (0, 1)))),
    ("conv_int_padding", functools.partial(_conv, padding=1)),
    ("conv_dilation2_same", functools.partial(_conv, dilation=2, padding="SAME", hw=(10, 9))),
    ("conv_dilation_2x1_valid", functools.partial(_conv, dilation=(2, 1))),
    ("conv_groups2_nobias", functools.partial(_conv, groups=2, use_bias=False)),
    ("max_pool_valid", functools.partial(_pool, "max")),
    ("max_pool_same_3x3_s2", functools.partial(_pool, "max", window=(3, 3), strides=(2, 2), padding="SAME")),
    ("max_pool_explicit", functools.partial(_pool, "max", padding=((0, 1), (1, 1)))),
    ("avg_pool_valid", functools.partial(_pool, "avg", count_include_pad=True)),
    ("avg_pool_same_exclude_pad", functools.partial(_pool, "avg", window=(3, 3), strides=(2, 2), padding="SAME",
                                                    count_include_pad=False)),
    ("avg_pool_same_include_pad", functools.partial(_pool, "avg", window=(3, 3), strides=(2, 2), padding="SAME",
                                                    count_include_pad=True)),
    ("avg_pool_explicit_exclude_pad", functools.partial(_pool, "avg", padding=((1, 0), (0, 1)),
                                                        count_include_pad=False)),
    ("batch_norm_train", functools.partial(_batch_norm, True)),
    ("batch_norm_train_2d", functools.partial(_batch_norm, True, (16, 7))),
    ("batch_norm_eval", functools.partial(_batch_norm, False)),
    ("layer_norm", _layer_norm),
    ("embedding", _embed),
    ("dropout_eval", _dropout_eval),
    ("flatten", _flatten),
]
IDS = [row[0] for row in LAYERS]
CASES = {name: build() for name, build in LAYERS}
DIFFERENTIABLE_X = [n for n in IDS if n != "embedding"]


def _cotangent(y, seed=9):
  return jnp.asarray(np.random.RandomState(seed).randn(*y.shape).astype(np.float32))


@functools.lru_cache(maxsize=None)
def _results(name):
  """Values, vmap, gradients and the 1e4 check of one row, from one compilation."""
  c = CASES[name]

  @jax.jit
  def run(p, x):
    out = {"ours": c.ours(p, x), "theirs": c.theirs(p, x)}
    xs = jnp.stack([x, x[::-1]])  # a second example: the batch reversed
    out["vmap"] = jax.vmap(lambda x: c.ours(p, x)["y"])(xs)
    out["vmap_ref"] = jnp.stack([c.theirs(p, x)["y"], c.theirs(p, x[::-1])["y"]])
    if jnp.issubdtype(x.dtype, jnp.floating):
      arg = (p, x)
      big = x * 1e4
      out["extreme"] = c.ours(p, big)["y"]
      _, pull = jax.vjp(lambda p, x: c.ours(p, x)["y"], p, big)
      out["extreme_grad"] = pull(jnp.ones_like(out["extreme"]))
    else:
      arg = (p,)
    w = _cotangent(out["ours"]["y"])
    for key, f in (("grad", c.ours), ("grad_ref", c.theirs)):
      _, pull = jax.vjp(lambda *a: f(*a, *([] if len(arg) == 2 else [x]))["y"], *arg)
      out[key] = pull(w)
    return out
  return jax.tree_util.tree_map(np.asarray, run(c.params, c.x))


@pytest.mark.parametrize("name", IDS)
def test_matches_flax_under_jit(name):
  c, r = CASES[name], _results(name)
  jax.tree_util.tree_map(functools.partial(np.testing.assert_allclose, rtol=c.rtol, atol=c.atol),
                         r["ours"], r["theirs"])
  assert r["ours"]["y"].dtype == r["theirs"]["y"].dtype


@pytest.mark.parametrize("name", ["dense", "conv_same_stride2", "max_pool_same_3x3_s2", "avg_pool_same_exclude_pad",
                                  "batch_norm_train", "layer_norm", "embedding"])
def test_matches_flax_eagerly(name):
  c = CASES[name]
  np.testing.assert_allclose(c.ours(c.params, c.x)["y"], _results(name)["theirs"]["y"], rtol=c.rtol, atol=c.atol)


@pytest.mark.parametrize("name", IDS)
def test_under_vmap(name):
  c, r = CASES[name], _results(name)
  np.testing.assert_allclose(r["vmap"], r["vmap_ref"], rtol=c.rtol, atol=c.atol)


@pytest.mark.parametrize("name", IDS)
def test_gradients_match_flax(name):
  """Gradients with respect to the parameters and the input (a random cotangent: the whole Jacobian)."""
  c, r = CASES[name], _results(name)
  jax.tree_util.tree_map(functools.partial(np.testing.assert_allclose, rtol=max(c.rtol, 1e-5), atol=1e-4),
                         r["grad"], r["grad_ref"])


@pytest.mark.parametrize("name", DIFFERENTIABLE_X)
def test_finite_value_and_gradient_at_1e4(name):
  r = _results(name)
  assert np.all(np.isfinite(r["extreme"])), f"{name}: non-finite output for inputs of magnitude 1e4"
  for g in jax.tree_util.tree_leaves(r["extreme_grad"]):
    assert np.all(np.isfinite(g)), f"{name}: non-finite gradient for inputs of magnitude 1e4"


def _small(build, **shapes):
  """A row rebuilt on small inputs: float64 compilation is slow on the CPU, and finite differences don't need size."""
  c = build()
  return c._replace(x=_rand(7, *shapes["x"]), params={k: _rand(8 + i, *np.shape(v)) if k != "scale" else 1 + 0.1 * v
                                                       for i, (k, v) in enumerate(c.params.items())})


# Rows whose float64 gradients are checked numerically, w.r.t. parameters and input.
GRAD_CHECKS = {
    "dense": CASES["dense_3d_input"],
    # Stride, explicit asymmetric padding and dilation at once.
    "conv2d_stride_pad_dilation": Case(
        {"kernel": _rand(1, 2, 2, 2, 3), "bias": _rand(2, 3)}, _rand(3, 1, 5, 6, 2),
        lambda p, x: {"y": nn.conv2d(p, x, strides=(2, 1), padding=((1, 2), (0, 1)), dilation=(1, 2))}, None),
    "max_pool_same_3x3_s2": _small(LAYERS[IDS.index("max_pool_same_3x3_s2")][1], x=(1, 5, 4, 2)),  # no ties
    "avg_pool_same_exclude_pad": _small(LAYERS[IDS.index("avg_pool_same_exclude_pad")][1], x=(1, 5, 4, 2)),
    "batch_norm_train": _small(LAYERS[IDS.index("batch_norm_train_2d")][1], x=(6, 7)),
    "layer_norm": _small(LAYERS[IDS.index("layer_norm")][1], x=(2, 10)),
}


@pytest.mark.parametrize("name", list(GRAD_CHECKS))
def test_check_grads_float64(x64, name):
  """Analytic vs numerical derivatives (forward and reverse mode) in float64."""
  c = GRAD_CHECKS[name]
  p, x = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), (c.params, c.x))
  assert x.dtype == jnp.float64
  f = jax.jit(lambda p, x: c.ours(p, x)["y"])
  check_grads(f, (p, x), order=1, modes=("fwd", "rev"), atol=1e-5, rtol=1e-5)


def test_check_grads_embedding_table(x64):
  table = jnp.asarray(_rand(1, 11, 4), jnp.float64)
  ids = jnp.array([[0, 3, 3], [10, 1, 0]])
  check_grads(lambda t: nn.embedding({"embedding": t}, ids), (table,), order=1, modes=("rev",))


# ------------------------------------------------------------------ dropout


def test_dropout_rate_is_the_drop_probability_and_preserves_the_mean():
  rates = (0.1, 0.5, 0.8)
  x = jnp.ones((100, 400))
  ys = jax.jit(lambda x, key: [nn.dropout(x, r, key=key) for r in rates])(x, jax.random.key(0))
  for rate, y in zip(rates, ys):
    kept = float(jnp.mean(y != 0))  # 40k draws: sd of the kept fraction <= 0.0025
    assert abs(kept - (1 - rate)) < 0.012, f"rate={rate}: kept {kept:.3f}, expected {1 - rate}"
    np.testing.assert_allclose(np.unique(np.asarray(y)), [0.0, 1 / (1 - rate)], rtol=1e-6)
    # Inverted dropout keeps E[y] = x: sd of the mean is sqrt(rate / (1 - rate) / 40k) <= 0.01.
    assert abs(float(jnp.mean(y)) - 1.0) < 0.05


def test_dropout_same_key_same_mask_different_keys_differ_and_matches_flax():
  x = _rand(0, 8, 16)
  a = nn.dropout(x, 0.3, key=jax.random.key(1))
  np.testing.assert_array_equal(a, nn.dropout(x, 0.3, key=jax.random.key(1)))
  assert not np.array_equal(a, nn.dropout(x, 0.3, key=jax.random.key(2)))
  # Flax's Dropout with the same explicit key draws the same mask.
  flax_y = linen.Dropout(0.3).apply({}, x, deterministic=False, rng=jax.random.key(1))
  np.testing.assert_allclose(a, flax_y, rtol=1e-6)


def test_dropout_identity_when_not_training_and_under_jit_vmap_grad():
  x = jnp.asarray(_rand(0, 4, 5))
  np.testing.assert_array_equal(nn.dropout(x, 0.9, train=False), x)
  np.testing.assert_array_equal(nn.dropout(x, 0.0, key=None), x)
  keys = jax.random.split(jax.random.key(3), 4)

  @jax.jit
  def run(x, keys):
    ys = jax.vmap(lambda k: nn.dropout(x, 0.5, key=k))(keys)
    one = nn.dropout(x, 0.5, key=keys[2])
    g = jax.grad(lambda x: jnp.sum(nn.dropout(x, 0.5, key=keys[0])))(x)
    return ys, one, g
  ys, one, g = run(x, keys)
  assert ys.shape == (4, 4, 5) and not np.array_equal(ys[0], ys[1])
  np.testing.assert_array_equal(ys[2], one)  # vmap over keys == one call per key
  np.testing.assert_allclose(g, np.where(np.asarray(ys[0]) != 0, 2.0, 0.0))  # grad flows through kept units


def test_dropout_errors():
  with pytest.raises(ValueError, match=r"needs a key; pass key=jax.random.key"):
    nn.dropout(jnp.ones(3), 0.5)
  with pytest.raises(ValueError, match=r"drop probability and must be in \[0, 1\), got 1.0"):
    nn.dropout(jnp.ones(3), 1.0, key=jax.random.key(0))


def test_dropout_traced_train_says_it_must_be_a_python_bool():
  # Without the check JAX's generic TracerBoolConversionError names no argument.
  step = jax.jit(lambda x, train: nn.dropout(x, 0.5, key=jax.random.key(0), train=train))
  with pytest.raises(TypeError, match=r"^dropout: train must be a Python bool, got a traced value; .*static") as e:
    step(jnp.ones(3), True)
  assert "\n" not in str(e.value)
  # The fix the message names works: train as a static argument.
  fixed = jax.jit(lambda x, train: nn.dropout(x, 0.5, key=jax.random.key(0), train=train), static_argnames="train")
  np.testing.assert_array_equal(fixed(jnp.ones(3), train=False), jnp.ones(3))


# ------------------------------------------------------------------ batch norm semantics


def test_batch_norm_running_statistics_update_and_eval_uses_them():
  x = jnp.asarray(2.0 + _rand(0, 64, 3, scale=3.0))
  params, stats = {}, {"mean": jnp.zeros(3), "var": jnp.ones(3)}
  y, new = nn.batch_norm(params, stats, x, train=True, momentum=0.9)
  np.testing.assert_allclose(new["mean"], 0.1 * x.mean(0), rtol=1e-5)
  np.testing.assert_allclose(new["var"], 0.9 + 0.1 * x.var(0), rtol=1e-5)  # biased batch variance
  np.testing.assert_allclose(y.mean(0), 0.0, atol=1e-5)
  np.testing.assert_allclose(y.std(0), 1.0, rtol=1e-3)
  y_eval, same = nn.batch_norm(params, new, x, train=False)
  np.testing.assert_allclose(y_eval, (x - new["mean"]) / jnp.sqrt(new["var"] + 1e-5), rtol=1e-5)
  jax.tree_util.tree_map(np.testing.assert_array_equal, same, new)


def test_batch_norm_feature_axis_1():
  x = jnp.asarray(_rand(0, 4, 3, 5, 5))  # NCHW
  stats = {"mean": jnp.zeros(3), "var": jnp.ones(3)}
  y, new = nn.batch_norm({}, stats, x, train=True, axis=1)
  y_last, new_last = nn.batch_norm({}, stats, jnp.moveaxis(x, 1, -1), train=True)
  np.testing.assert_allclose(jnp.moveaxis(y, 1, -1), y_last, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(new["var"], new_last["var"], rtol=1e-6)


# ------------------------------------------------------------------ one-line errors


@pytest.mark.parametrize("call,error,pattern", [
    (lambda: nn.dense({"kernel": jnp.ones((3, 2))}, jnp.ones((4, 5))), ValueError,
     r"expected input \(\.\.\., 3\) for kernel shape \(3, 2\), got input shape \(4, 5\)"),
    (lambda: nn.conv2d({"kernel": jnp.ones((3, 3, 2, 4))}, jnp.ones((1, 8, 8, 3))), ValueError,
     r"input has 3 channels \(shape \(1, 8, 8, 3\)\) but the kernel \(3, 3, 2, 4\) expects 2"),
    (lambda: nn.conv2d({"kernel": jnp.ones((3, 3, 1, 4))}, jnp.ones((8, 8, 1))), ValueError,
     r"expected a rank-4 input .* got shape \(8, 8, 1\).*x\[None\]"),
    (lambda: nn.conv2d({"kernel": jnp.ones((3, 1, 4))}, jnp.ones((1, 8, 8, 1))), ValueError,
     r"kernel must be \(kh, kw, in, out\), got shape \(3, 1, 4\)"),
    (lambda: nn.conv2d({"kernel": jnp.ones((3, 3, 1, 4))}, jnp.ones((1, 8, 8, 1)), padding="FULL"), ValueError,
     r"padding must be 'SAME', 'VALID'"),
    (lambda: nn.max_pool(jnp.ones((8, 8)), 2), ValueError, r"expected \(batch, \*spatial, channels\)"),
    (lambda: nn.batch_norm({}, {"mean": jnp.zeros(4), "var": jnp.ones(4)}, jnp.ones((2, 3)), train=True),
     ValueError, r"expected stats\['mean'\] of shape \(3,\) for input \(2, 3\) .* got \(4,\)"),
    (lambda: nn.layer_norm({"scale": jnp.ones(4)}, jnp.ones((2, 3))), ValueError,
     r"expected params\['scale'\] of shape \(3,\) .* got \(4,\)"),
    (lambda: nn.embedding({"embedding": jnp.ones((5, 2))}, jnp.array([0, 5])), ValueError,
     r"ids must be in \[0, 5\) .* got ids from 0 to 5"),
    (lambda: nn.embedding({"embedding": jnp.ones((5, 2))}, jnp.array([-1, 2])), ValueError,
     r"ids must be in \[0, 5\)"),
    (lambda: nn.embedding({"embedding": jnp.ones((5, 2))}, jnp.array([0.0])), TypeError,
     r"ids must be integers, got dtype float32"),
    (lambda: nn.flatten(jnp.float32(1.0)), ValueError, r"flatten: expected \(batch, \.\.\.\)"),
], ids=["dense", "conv_channels", "conv_rank", "conv_kernel", "padding", "pool_rank", "bn_stats", "ln_scale",
        "embed_range", "embed_negative", "embed_dtype", "flatten"])
def test_bad_input_is_a_one_line_error(call, error, pattern):
  with pytest.raises(error, match=pattern) as info:
    call()
  assert "\n" not in str(info.value)


def test_embedding_out_of_range_under_jit_is_nan_not_a_wrapped_row():
  table = {"embedding": jnp.arange(6.0).reshape(3, 2)}
  y = jax.jit(nn.embedding)(table, jnp.array([0, 3, -1]))
  np.testing.assert_array_equal(y[0], [0.0, 1.0])
  assert np.all(np.isnan(y[1:]))


def test_uint8_images_are_convolved_and_pooled_as_floats():
  x = jnp.arange(2 * 4 * 4, dtype=jnp.uint8).reshape(2, 4, 4, 1)
  p = {"kernel": jnp.ones((2, 2, 1, 1))}
  np.testing.assert_allclose(nn.conv2d(p, x), nn.conv2d(p, x.astype(jnp.float32)))
  np.testing.assert_allclose(nn.avg_pool(x), nn.avg_pool(x.astype(jnp.float32)))
  np.testing.assert_array_equal(nn.max_pool(x), nn.max_pool(x.astype(jnp.float32)).astype(jnp.uint8))


def test_embedding_with_ids_made_inside_jit():
  """ids created inside a trace (e.g. BERT's position ids) are not checked eagerly, and still gather."""
  table = {"embedding": jnp.arange(15.0).reshape(5, 3)}
  out = jax.jit(lambda t: nn.embedding(t, jnp.arange(4)))(table)
  np.testing.assert_array_equal(np.asarray(out), np.arange(12.0).reshape(4, 3))
  assert jax.eval_shape(lambda t: nn.embedding(t, jnp.arange(4)), table).shape == (4, 3)


@pytest.mark.parametrize("n, size, k, stride, dilation, padding", [
    (2, 2, 3, 1, 1, 1),              # a ResNet's last stage at 64x64 input: 3x3 conv on 2x2 maps
    (2, 2, 3, 2, 1, "SAME"),
    (2, 1, 3, 1, 1, "SAME"),
    (2, 3, 2, 1, 2, ((1, 0), (0, 1))),
    (2, 2, 2, 1, 1, "VALID"),        # input == kernel: the ordinary path, for comparison
    (2, 3, 3, 1, 1, ((1, -1), (2, 0))),   # negative padding crops: lax's own path
    (1, 2, 3, 1, 1, 1),
    (3, 2, 3, 1, 1, 1),
])
def test_conv_on_inputs_smaller_than_the_kernel_matches_lax_with_gradients(n, size, k, stride, dilation, padding):
  # inputs smaller than the (dilated) kernel take dlfunc's tap-sum path (XLA CPU's own lowering of them is
  # ~60x slow); value and both gradients must equal lax.conv_general_dilated to float32 rounding
  rng = np.random.default_rng(size + k)
  x = jnp.asarray(rng.normal(size=(2,) + (size,) * n + (3,)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(k,) * n + (3, 4)), jnp.float32)
  spatial = "DHW"[3 - n:]
  dn = jax.lax.conv_dimension_numbers(x.shape, w.shape, (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"))
  pads = [(padding, padding)] * n if isinstance(padding, int) else padding
  pads = pads[:n] if not isinstance(pads, str) else pads

  def ours(x, w):
    return nn.conv({"kernel": w}, x, strides=stride, padding=pads, dilation=dilation)

  def ref(x, w):
    return jax.lax.conv_general_dilated(x, w, (stride,) * n, pads, rhs_dilation=(dilation,) * n, dimension_numbers=dn)

  def close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.abs(b).max()))
  close(ours(x, w), ref(x, w))
  for a, b in zip(jax.grad(lambda x, w: (ours(x, w) ** 2).sum(), (0, 1))(x, w),
                  jax.grad(lambda x, w: (ref(x, w) ** 2).sum(), (0, 1))(x, w)):
    close(a, b)


def test_conv_smaller_than_kernel_without_padding_is_a_clear_error():
  with pytest.raises(ValueError, match="smaller than the kernel window"):
    nn.conv({"kernel": jnp.ones((3, 3, 1, 2))}, jnp.ones((1, 2, 2, 1)))


def test_dropout_module_traced_train_says_it_must_be_a_python_bool():
  from dlfunc.models import Dropout
  m = Dropout(0.5)
  with pytest.raises(TypeError, match=r"^dropout: train must be a Python bool"):
    jax.jit(lambda x, t: m.apply({}, x, t, rngs={"dropout": jax.random.key(0)}))(jnp.ones(3), True)
