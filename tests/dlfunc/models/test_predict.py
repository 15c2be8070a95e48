"""models.Predictor: compiled inference that equals model.apply(train=False), autotuned on the CPU."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlfunc.models import BertConfig, BertMeanPooler, Predictor, ResNet18
from dlfunc.models import _predict


def _close(got, ref):
  # the candidates differ only in summation order: equal to 1e-5 of the output's scale
  ref = np.asarray(ref)
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@functools.lru_cache(maxsize=None)   # built once for the file (the tests only read it)
def _small_resnet():
  # batch norm included: inference must use the running statistics, not the batch's
  model = ResNet18(num_classes=5, width=8, stem="small")
  x = np.random.default_rng(0).normal(size=(4, 16, 16, 3)).astype(np.float32)
  variables = model.init(jax.random.key(0), x, train=False)
  rng = np.random.default_rng(1)   # every leaf moved off its init value (the head starts at zero)
  params = jax.tree_util.tree_map(lambda a: a + 0.1 * rng.normal(size=a.shape).astype(np.float32),
                                  variables["params"])
  v = {"params": params, "batch_stats": variables["batch_stats"]}
  step = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"])[1]["batch_stats"])
  for i in range(10):   # running statistics near (not at) the data's, so activations stay alive
    v = {"params": params, "batch_stats": step(v, x + 0.05 * i)}
  return model, v, x


def test_predictor_equals_model_apply_in_inference_mode_and_records_its_choice():
  model, variables, x = _small_resnet()
  predict = Predictor(model, variables)
  ref = model.apply(variables, x, train=False)
  assert np.std(np.asarray(ref), axis=0).min() > 1e-3    # a real function of x to compare, not constants
  _close(predict(x), ref)
  train_mode, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
  assert not np.allclose(predict(x), train_mode, rtol=1e-3)   # running statistics, not the batch's
  assert list(predict.choices.values())[0] in _predict.CPU_CANDIDATES   # the CPU autotuner picked one


@pytest.mark.parametrize("name", list(_predict.CPU_CANDIDATES))
def test_every_cpu_candidate_computes_the_same_function(monkeypatch, name):
  model, variables, x = _small_resnet()
  monkeypatch.setattr(_predict, "CPU_CANDIDATES", {name: _predict.CPU_CANDIDATES[name]})
  predict = Predictor(model, variables)
  _close(predict(x), model.apply(variables, x, train=False))
  assert list(predict.choices.values()) == [name]   # the option exists in this jaxlib (not skipped)


def test_one_compilation_per_input_shape_and_autotune_off():
  model, variables, x = _small_resnet()
  predict = Predictor(model, variables, autotune=False)
  a = predict(x)
  b = predict(x + 1.0)
  predict(x[:2])
  assert len(predict.choices) == 2 and set(predict.choices.values()) == {"xla-default"}
  _close(b, model.apply(variables, x + 1.0, train=False))
  assert not np.allclose(a, b)


def test_an_option_this_jaxlib_lacks_is_skipped(monkeypatch):
  model, variables, x = _small_resnet()
  monkeypatch.setattr(_predict, "CPU_CANDIDATES",
                      {"xla-default": {}, "unknown": {"xla_cpu_option_that_does_not_exist": True}})
  predict = Predictor(model, variables)
  _close(predict(x), model.apply(variables, x, train=False))
  assert list(predict.choices.values()) == ["xla-default"]


def test_several_inputs_reach_the_model():
  cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                   intermediate_size=20, max_position_embeddings=12)
  model = BertMeanPooler(cfg)
  ids = jnp.asarray(np.random.default_rng(1).integers(1, 50, (3, 7)), jnp.int32)
  mask = jnp.asarray([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5], jnp.int32)
  types = jnp.zeros_like(ids)
  variables = model.init(jax.random.key(0), ids, mask, types)
  got = Predictor(model, variables)(ids, mask, types)
  _close(got, model.apply(variables, ids, mask, types, train=False))


def test_a_dict_or_tuple_input_reaches_the_model_as_is():
  import flax.linen as linen

  class DictIn(linen.Module):
    @linen.compact
    def __call__(self, batch, train: bool = False):
      assert isinstance(batch, dict) and set(batch) == {"x", "scale"}, type(batch)
      return linen.Dense(3)(batch["x"]) * batch["scale"]

  batch = {"x": np.ones((2, 4), np.float32), "scale": np.full((2, 1), 2.0, np.float32)}
  variables = DictIn().init(jax.random.key(0), batch)
  _close(Predictor(DictIn(), variables, autotune=False)(batch), DictIn().apply(variables, batch))

  class PairIn(linen.Module):
    @linen.compact
    def __call__(self, inputs, train: bool = False):
      assert isinstance(inputs, tuple), type(inputs)  # not stacked into one array
      x, mask = inputs
      return linen.Dense(3)(x * mask)

  pair = (np.ones((2, 4), np.float32), np.asarray([[1, 1, 0, 0]] * 2, np.float32))
  variables = PairIn().init(jax.random.key(0), pair)
  _close(Predictor(PairIn(), variables, autotune=False)(pair), PairIn().apply(variables, pair))
