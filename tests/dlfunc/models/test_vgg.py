"""dlfunc.models.VGG: published parameter counts, adaptive pooling like torch, heads."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlfunc.models import VGG, VGG11, VGG11BN, VGG16, VGG16BN
from dlfunc.models._vgg import adaptive_avg_pool


def _count(model):
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
  return sum(int(np.prod(s.shape)) for s in jax.tree_util.tree_leaves(shapes["params"]))


@pytest.mark.parametrize("ctor,expected", [
    (VGG11, 132_863_336), (VGG11BN, 132_868_840), (VGG16, 138_357_544), (VGG16BN, 138_365_992),
])  # torchvision.models.vgg*(): sum(p.numel() for p in parameters())
def test_parameter_counts_match_torchvision(ctor, expected):
  assert _count(ctor()) == expected


@pytest.mark.torch
@pytest.mark.parametrize("size,out", [(2, 7), (5, 7), (14, 7), (9, 4), (7, 7)])
def test_adaptive_avg_pool_matches_torch(size, out):
  import torch
  x = np.random.default_rng(0).normal(size=(2, size, size + 1, 3)).astype(np.float32)
  ref = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x.transpose(0, 3, 1, 2)), (out, out))
  np.testing.assert_allclose(adaptive_avg_pool(jnp.asarray(x), (out, out)),
                             ref.numpy().transpose(0, 2, 3, 1), rtol=1e-6, atol=1e-6)


def test_heads_and_modes():
  model = VGG(11, batch_norm=True, num_classes=3, fc_width=16)
  x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  rng = np.random.default_rng(0)
  variables = jax.tree_util.tree_map(lambda s: jnp.asarray(rng.uniform(0.5, 1.5, s.shape), s.dtype),
                                     jax.eval_shape(model.init, jax.random.key(1), x))
  assert jax.jit(model.apply)(variables, x).shape == (2, 3)
  out, upd = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"],
                                              rngs={"dropout": jax.random.key(2)}))(variables, x)
  assert out.shape == (2, 3) and bool(jnp.all(jnp.isfinite(out))) and "block1_bn1" in upd["batch_stats"]
  plain = {"params": {k: v for k, v in variables["params"].items() if "bn" not in k and k != "fc3"}}
  assert jax.eval_shape(VGG(11, num_classes=0, fc_width=16).apply, plain, x).shape == (2, 16)
  feats = VGG(11, include_top=False)
  assert jax.eval_shape(feats.apply, jax.eval_shape(feats.init, jax.random.key(0), x), x).shape == (2, 1, 1, 512)


def test_bad_depth():
  with pytest.raises(ValueError, match=r"depth must be one of \[11, 13, 16, 19\], got 12"):
    VGG(12).init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
