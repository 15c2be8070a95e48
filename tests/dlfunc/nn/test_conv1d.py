"""conv1d / max_pool1d / avg_pool1d against Keras 3 (JAX backend) Conv1D / pooling and PyTorch Conv1d.

Tolerance: rtol 1e-5, atol 1e-5 (float32 sums of up to ~30 products).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlfunc import nn

keras = pytest.importorskip("keras")
RTOL, ATOL = 1e-5, 1e-5


def _data(seed, n=2, length=17, c=3, k=3, o=4):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(n, length, c)).astype(np.float32), rng.normal(size=(k, c, o)).astype(np.float32),
          rng.normal(size=(o,)).astype(np.float32))


@pytest.mark.parametrize("strides,padding,dilation", [(1, "valid", 1), (2, "valid", 1), (1, "same", 1),
                                                      (1, "same", 2), (1, "valid", 3)])
def test_conv1d_matches_keras(strides, padding, dilation):
  x, w, b = _data(0)
  layer = keras.layers.Conv1D(4, 3, strides=strides, padding=padding, dilation_rate=dilation)
  layer.build(x.shape)
  layer.set_weights([w, b])
  y = nn.conv1d({"kernel": w, "bias": b}, x, strides=strides, padding=padding.upper(), dilation=dilation)
  np.testing.assert_allclose(y, layer(x), rtol=RTOL, atol=ATOL)


@pytest.mark.torch
@pytest.mark.parametrize("strides,padding,dilation,groups", [(1, 1, 1, 1), (2, 2, 1, 1), (1, 2, 2, 1), (1, 0, 1, 3)])
def test_conv1d_matches_torch(strides, padding, dilation, groups):
  import torch
  torch.manual_seed(0)
  m = torch.nn.Conv1d(6, 3, 3, stride=strides, padding=padding, dilation=dilation, groups=groups)
  x = torch.randn(2, 6, 15)
  with torch.no_grad():
    ref = m(x).numpy().transpose(0, 2, 1)
  p = {"kernel": m.weight.detach().numpy().transpose(2, 1, 0), "bias": m.bias.detach().numpy()}
  y = nn.conv1d(p, x.numpy().transpose(0, 2, 1), strides=strides, padding=padding, dilation=dilation, groups=groups)
  np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("window,strides,padding", [(2, None, "valid"), (3, 2, "valid"), (3, 2, "same"),
                                                    (2, 1, "same")])
def test_pooling_matches_keras(window, strides, padding):
  x, _, _ = _data(1)
  mp = keras.layers.MaxPooling1D(window, strides, padding)
  ap = keras.layers.AveragePooling1D(window, strides, padding)
  np.testing.assert_allclose(nn.max_pool1d(x, window, strides, padding.upper()), mp(x), rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(nn.avg_pool1d(x, window, strides, padding.upper()), ap(x), rtol=RTOL, atol=ATOL)


@pytest.mark.torch
def test_avg_pool1d_count_include_pad_matches_torch():
  import torch
  x = torch.randn(2, 3, 11)
  ref = torch.nn.AvgPool1d(3, 2, padding=1)(x).numpy().transpose(0, 2, 1)
  y = nn.avg_pool1d(x.numpy().transpose(0, 2, 1), 3, 2, padding=1, count_include_pad=True)
  np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)


def test_conv1d_jit_grad_vmap():
  x, w, b = _data(2)
  p = {"kernel": jnp.asarray(w), "bias": jnp.asarray(b)}
  f = lambda p, x: jnp.sum(nn.conv1d(p, x, padding="SAME") ** 2)
  g = jax.jit(jax.grad(f))(p, x)
  assert g["kernel"].shape == w.shape and bool(jnp.all(jnp.isfinite(g["kernel"])))
  per_example = jax.vmap(lambda xi: nn.conv1d(p, xi[None], padding="SAME")[0])(x)
  np.testing.assert_allclose(per_example, nn.conv1d(p, x, padding="SAME"), rtol=1e-6, atol=1e-6)


def test_conv1d_errors_are_one_line():
  with pytest.raises(ValueError, match=r"rank-3 input \(batch, length, channels\), got shape \(17, 3\)") as e:
    nn.conv1d({"kernel": jnp.ones((3, 3, 4))}, jnp.ones((17, 3)))
  assert "\n" not in str(e.value)
  with pytest.raises(ValueError, match=r"kernel must be \(width, in, out\), got shape \(3, 3\)"):
    nn.conv1d({"kernel": jnp.ones((3, 3))}, jnp.ones((1, 17, 3)))
  with pytest.raises(ValueError, match="has 2 channels"):
    nn.conv1d({"kernel": jnp.ones((3, 3, 4))}, jnp.ones((1, 17, 2)))
  with pytest.raises(ValueError, match=r"got shape \(2, 3, 4, 5\)"):
    nn.max_pool1d(jnp.ones((2, 3, 4, 5)))
