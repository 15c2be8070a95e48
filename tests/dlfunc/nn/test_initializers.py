"""dlfunc.nn initializers: the formulas and jax.nn.initializers (Flax's and, for fans, Keras' convention),
for dense and HWIO conv shapes."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlfunc import nn

DENSE = (400, 300)       # fan_in 400, fan_out 300
CONV = (3, 3, 32, 64)    # HWIO: fan_in 3*3*32 = 288, fan_out 3*3*64 = 576
FANS = {DENSE: (400, 300), CONV: (288, 576)}

# (name, dlfunc, jax.nn.initializers factory, variance as a function of (fan_in, fan_out), distribution)
INITIALIZERS = [
    ("glorot_uniform", nn.glorot_uniform, jax.nn.initializers.glorot_uniform, lambda i, o: 2 / (i + o), "uniform"),
    ("glorot_normal", nn.glorot_normal, jax.nn.initializers.glorot_normal, lambda i, o: 2 / (i + o), "truncated"),
    ("he_uniform", nn.he_uniform, jax.nn.initializers.he_uniform, lambda i, o: 2 / i, "uniform"),
    ("he_normal", nn.he_normal, jax.nn.initializers.he_normal, lambda i, o: 2 / i, "truncated"),
    ("lecun_uniform", nn.lecun_uniform, jax.nn.initializers.lecun_uniform, lambda i, o: 1 / i, "uniform"),
    ("lecun_normal", nn.lecun_normal, jax.nn.initializers.lecun_normal, lambda i, o: 1 / i, "truncated"),
]
IDS = [row[0] for row in INITIALIZERS]
SHAPES = pytest.mark.parametrize("shape", [DENSE, CONV], ids=["dense", "conv_hwio"])


@functools.lru_cache(maxsize=None)
def _draws():
  """{(name, shape): (dlfunc draw, jax.nn.initializers draw)} for key 42, from one compilation."""
  @jax.jit
  def run(key):
    return {(name, shape): (init(key, shape), jax_init()(key, shape, jnp.float32))
            for name, init, jax_init, *_ in INITIALIZERS for shape in (DENSE, CONV)}
  return jax.tree_util.tree_map(np.asarray, run(jax.random.key(42)))


@SHAPES
@pytest.mark.parametrize("name,init,jax_init,variance,dist", INITIALIZERS, ids=IDS)
def test_same_draws_as_jax_nn_initializers(shape, name, init, jax_init, variance, dist):
  # Same key, same fans, same distribution => the same numbers (up to one rounding).
  ours, theirs = _draws()[name, shape]
  np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)


@SHAPES
@pytest.mark.parametrize("name,init,jax_init,variance,dist", INITIALIZERS, ids=IDS)
def test_statistics_follow_the_formula(shape, name, init, jax_init, variance, dist):
  w = _draws()[name, shape][0].astype(np.float64)
  assert w.shape == shape
  std = math.sqrt(variance(*FANS[shape]))
  # 115k-295k draws: the sample std is within ~0.5% of the truth; allow 2%.
  assert abs(w.std() / std - 1) < 0.02, f"{name}{shape}: std {w.std():.5f}, formula {std:.5f}"
  assert abs(w.mean()) < 0.02 * std
  if dist == "uniform":
    limit = math.sqrt(3) * std           # U(-l, l) has std l / sqrt(3)
    assert np.abs(w).max() <= limit * (1 + 1e-6)
    assert np.abs(w).max() > 0.999 * limit
  else:                                   # truncated at 2 sd of the untruncated normal
    bound = 2 * std / 0.87962566103423978
    assert np.abs(w).max() <= bound * (1 + 1e-6)
    assert np.abs(w).max() > 0.99 * bound


def test_pytorch_names_are_aliases():
  assert nn.xavier_uniform is nn.glorot_uniform and nn.xavier_normal is nn.glorot_normal
  assert nn.kaiming_uniform is nn.he_uniform and nn.kaiming_normal is nn.he_normal


def test_zeros_and_ones_ignore_the_key():
  np.testing.assert_array_equal(nn.zeros(jax.random.key(0), (2, 3)), np.zeros((2, 3), np.float32))
  np.testing.assert_array_equal(nn.ones(None, (4,), jnp.bfloat16), np.ones(4))
  assert nn.ones(None, (4,), jnp.bfloat16).dtype == jnp.bfloat16


def test_one_axis_shape_uses_its_length_as_both_fans():
  w = nn.glorot_uniform(jax.random.key(0), (50,))
  assert float(jnp.abs(w).max()) <= math.sqrt(6 / 100)


def test_dtypes_under_jit():
  @jax.jit
  def run(key):
    return [nn.he_normal(key, (8, 4), dtype) for dtype in (jnp.bfloat16, jnp.float16, jnp.float32)]
  bf16, f16, f32 = run(jax.random.key(1))
  assert (bf16.dtype, f16.dtype, f32.dtype) == (jnp.bfloat16, jnp.float16, jnp.float32)
  assert bool(jnp.all(jnp.isfinite(f16.astype(jnp.float32)))) and bool(jnp.any(bf16 != 0))


def test_float64_under_x64(x64):
  assert nn.glorot_normal(jax.random.key(0), (3, 2), jnp.float64).dtype == jnp.float64


def test_same_key_same_weights_different_keys_differ():
  a = nn.he_uniform(jax.random.key(3), DENSE)
  np.testing.assert_array_equal(a, nn.he_uniform(jax.random.key(3), DENSE))
  assert not np.array_equal(a, nn.he_uniform(jax.random.key(4), DENSE))


def test_bad_shapes_are_one_line_errors():
  with pytest.raises(ValueError, match=r"scalar shape"):
    nn.glorot_uniform(jax.random.key(0), ())
  with pytest.raises(ValueError, match=r"shape \(0, 3\) gives fan_in=0"):
    nn.he_normal(jax.random.key(0), (0, 3))
