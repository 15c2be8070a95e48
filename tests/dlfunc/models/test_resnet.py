"""dlfunc.models.ResNet: layout facts (parameter counts of the published models), modes, jit."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlfunc.models import ResNet, ResNet18, ResNet34, ResNet50, ResNet101


def _random_variables(model, x, seed=0):
  """Variables with numpy random values (a jitted Flax init compiles its RNG for a minute on 2 busy cores)."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)
  return jax.tree_util.tree_map(lambda s: jnp.asarray(rng.uniform(0.5, 1.5, s.shape) if len(s.shape) == 1
                                                      else rng.normal(0, 0.1, s.shape), s.dtype), shapes)


def _count(model, collection="params"):
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3))))
  return sum(int(np.prod(s.shape)) for s in jax.tree_util.tree_leaves(shapes[collection]))


@pytest.mark.parametrize("ctor,kwargs,expected", [
    (ResNet18, {}, 11_689_512),              # torchvision.models.resnet18().parameters()
    (ResNet34, {}, 21_797_672),
    (ResNet50, {}, 25_557_032),
    (ResNet101, {}, 44_549_160),
    (ResNet50, {"variant": "keras"}, 25_583_592),  # keras.applications.ResNet50: 25,636,712 incl. BN moving stats
])
def test_parameter_counts_match_the_published_models(ctor, kwargs, expected):
  assert _count(ctor(**kwargs)) == expected


def test_keras_variant_total_matches_keras_count_param():
  model = ResNet50(variant="keras")
  assert _count(model) + _count(model, "batch_stats") == 25_636_712


def test_stride_sits_on_the_3x3_in_torchvision_and_on_the_1x1_in_keras():
  x = jnp.zeros((1, 64, 64, 3))
  for variant, strided in (("torchvision", "conv2"), ("keras", "conv1")):
    model = ResNet50(num_classes=0, variant=variant)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    _, inter = jax.eval_shape(lambda v: model.apply(v, x, capture_intermediates=True), variables)
    block = inter["intermediates"]["layer2_0"]
    shapes = {k: block[k]["__call__"][0].shape for k in ("conv1", "conv2")}
    assert shapes[strided][1] == 8, (variant, shapes)  # 64 -> stem /4 = 16 -> stride 2 -> 8


def test_small_resnet_forward_train_and_jit():
  model = ResNet18(num_classes=10, width=8, stem="small")
  x = jax.random.normal(jax.random.key(1), (4, 8, 8, 1))
  variables = _random_variables(model, x)
  logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  assert logits.shape == (4, 10) and bool(jnp.all(jnp.isfinite(logits)))
  out, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
  assert out.shape == (4, 10)
  before = variables["batch_stats"]["bn1"]["mean"]
  assert not np.allclose(updates["batch_stats"]["bn1"]["mean"], before)
  feats = jax.eval_shape(ResNet18(num_classes=0, width=8, stem="small").apply,
                         {k: {n: v for n, v in variables[k].items() if n != "fc"} for k in variables}, x)
  assert feats.shape == (4, 64)


def test_bad_inputs_are_clear_errors():
  model = ResNet18(width=8)
  with pytest.raises(ValueError, match=r"ResNet expects images shaped \(batch, height, width, channels\), got shape"):
    model.init(jax.random.key(0), jnp.zeros((8, 8)))
  with pytest.raises(ValueError, match="variant must be one of"):
    ResNet((1,), variant="caffe").init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
