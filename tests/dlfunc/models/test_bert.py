"""dlfunc.models.BERT against Hugging Face transformers.BertModel (PyTorch) and load_hf_bert errors."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlfunc.models import BERT, BertConfig, BertForSequenceClassification, mean_pool
from dlfunc.pretrained import WeightLoadError, hf_bert_map, load_hf_bert

SMALL = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
             max_position_embeddings=24, type_vocab_size=2, layer_norm_eps=1e-12, hidden_act="gelu")


def _inputs(seed=0, b=3, t=9):
  rng = np.random.default_rng(seed)
  ids = rng.integers(1, SMALL["vocab_size"], (b, t)).astype(np.int64)
  mask = np.ones((b, t), np.int64)
  mask[1, 5:] = 0  # padding in the second sequence
  mask[2, 2:] = 0
  types = np.zeros((b, t), np.int64)
  types[0, 4:] = 1
  return ids, mask, types


def _hf_model(cls_name="BertModel", **extra):
  import transformers
  torch = pytest.importorskip("torch")
  torch.manual_seed(0)
  model = getattr(transformers, cls_name)(transformers.BertConfig(**SMALL, **extra)).eval()
  with torch.no_grad():  # non-trivial LayerNorm parameters and biases
    for name, p in model.named_parameters():
      if name.endswith("bias") or "LayerNorm" in name:
        p.add_(torch.randn_like(p) * 0.1)
  return model


@pytest.mark.torch
def test_bert_matches_transformers_bertmodel():
  pytest.importorskip("transformers", reason="transformers is not installed")
  import torch
  hf = _hf_model()
  ids, mask, types = _inputs()
  with torch.no_grad():
    out = hf(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
             token_type_ids=torch.from_numpy(types))
  model, variables = load_hf_bert(config=BertConfig(**SMALL), state=hf.state_dict())
  seq, pooled = jax.jit(model.apply)(variables, ids.astype(np.int32), mask.astype(np.int32), types.astype(np.int32))
  ref_seq = out.last_hidden_state.numpy()
  keep = mask.astype(bool)  # padded query positions are not meaningful outputs
  np.testing.assert_allclose(np.asarray(seq)[keep], ref_seq[keep], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(pooled), out.pooler_output.numpy(), rtol=1e-4, atol=1e-5)
  ref_mean = (ref_seq * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
  ref_mean /= np.linalg.norm(ref_mean, axis=1, keepdims=True)
  np.testing.assert_allclose(np.asarray(mean_pool(seq, mask)), ref_mean, rtol=1e-4, atol=1e-5)


@pytest.mark.torch
def test_sequence_classification_matches_transformers(tmp_path):
  pytest.importorskip("transformers", reason="transformers is not installed")
  import torch
  hf = _hf_model("BertForSequenceClassification", num_labels=3)
  hf.save_pretrained(tmp_path)  # config.json + model.safetensors, like a hub folder
  ids, mask, types = _inputs(1)
  with torch.no_grad():
    ref = hf(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
             token_type_ids=torch.from_numpy(types)).logits.numpy()
  model, variables = load_hf_bert(tmp_path, head="classification")
  assert isinstance(model, BertForSequenceClassification) and model.num_labels == 3
  logits = model.apply(variables, {"input_ids": ids.astype(np.int32), "attention_mask": mask.astype(np.int32),
                                   "token_type_ids": types.astype(np.int32)})
  np.testing.assert_allclose(np.asarray(logits), ref, rtol=1e-4, atol=1e-5)
  new, new_vars = load_hf_bert(tmp_path, head="classification", num_labels=5, key=jax.random.key(1))
  assert new_vars["params"]["classifier"]["kernel"].shape == (32, 5)
  np.testing.assert_array_equal(new_vars["params"]["bert"]["layer_1"]["query"]["kernel"],
                                variables["params"]["bert"]["layer_1"]["query"]["kernel"])


def _numpy_state(cfg: BertConfig, seed=0):
  """HF key names and shapes built from the name map itself, in torch layout (out, in)."""
  rng = np.random.default_rng(seed)
  model = BERT(cfg)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 2), jnp.int32))
  state = {}
  for e in hf_bert_map(cfg):
    node = shapes
    for k in e.path:
      node = node[k]
    shape = node.shape[::-1] if e.key.endswith(".weight") and len(node.shape) == 2 and "embeddings" not in e.key \
        else node.shape
    state[e.key] = rng.normal(0, 0.05, shape).astype(np.float32)
  state["embeddings.position_ids"] = np.arange(cfg.max_position_embeddings)[None]
  return state


def test_load_from_directory_without_torch(tmp_path):
  from safetensors.numpy import save_file
  cfg = BertConfig(**SMALL)
  state = _numpy_state(cfg)
  save_file(state, str(tmp_path / "model.safetensors"))
  (tmp_path / "config.json").write_text(json.dumps({**SMALL, "model_type": "bert", "architectures": ["BertModel"]}))
  model, variables = load_hf_bert(tmp_path)
  assert model.config == cfg
  np.testing.assert_array_equal(variables["params"]["layer_0"]["intermediate"]["kernel"],
                                state["encoder.layer.0.intermediate.dense.weight"].T)
  ids = jnp.ones((2, 6), jnp.int32)
  seq, pooled = jax.jit(model.apply)(variables, ids)
  assert seq.shape == (2, 6, 32) and pooled.shape == (2, 32) and bool(jnp.all(jnp.isfinite(seq)))


def test_errors_name_key_and_shapes():
  cfg = BertConfig(**SMALL)
  state = _numpy_state(cfg)
  bad = dict(state)
  bad["encoder.layer.1.intermediate.dense.weight"] = np.zeros((36, 32), np.float32)
  with pytest.raises(WeightLoadError, match=r"'encoder\.layer\.1\.intermediate\.dense\.weight' -> "
                                            r"params/layer_1/intermediate/kernel: checkpoint gives \(32, 36\).*"
                                            r"\(36, 32\).*expects \(32, 37\)"):
    load_hf_bert(config=cfg, state=bad)
  three = BertConfig(**{**SMALL, "num_hidden_layers": 3})
  with pytest.raises(WeightLoadError, match=r"missing key\(s\), first 'encoder\.layer\.2\.attention\.self\.query"
                                            r"\.weight' \(model params/layer_2/query/kernel expects shape \(32, 32\)"):
    load_hf_bert(config=three, state=state)  # a checkpoint of another architecture


def test_config_and_input_checks():
  with pytest.raises(ValueError, match="hidden_size 30 is not divisible by num_attention_heads 4"):
    BertConfig(**{**SMALL, "hidden_size": 30})
  model = BERT(BertConfig(**SMALL))
  with pytest.raises(ValueError, match=r"sequence length 30 exceeds max_position_embeddings 24"):
    jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 30), jnp.int32))
  with pytest.raises(ValueError, match=r"token ids shaped \(batch, seq_len\)"):
    jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((30,), jnp.int32))
