"""BERT (Devlin et al., 2018) as Hugging Face's ``BertModel`` computes it.

``BERT(config)`` maps token ids to contextual vectors: embeddings (word +
position + token type, LayerNorm, dropout), ``num_hidden_layers`` post-norm
transformer layers, and a tanh pooler on the first (``[CLS]``) token. Heads:
:class:`BertForSequenceClassification` (pooler -> dropout -> linear, as HF)
and :class:`BertMeanPooler` (mean over the attention mask, optionally
L2-normalised: sentence-transformers' embeddings).

Module names (what :func:`dlfunc.pretrained.load_hf_bert` maps onto):
``embeddings/{word_embeddings,position_embeddings,token_type_embeddings,LayerNorm}``,
``layer_{i}/{query,key,value,attention_output,attention_norm,intermediate,output,output_norm}``,
``pooler``.

Warning:
  BERT's LayerNorm epsilon is 1e-12 (Flax's default is 1e-6) and its GELU is
  the exact erf form (``jax.nn.gelu`` defaults to the tanh approximation).
  Both come from the config here.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Mapping

import flax.linen as linen
import jax
import jax.numpy as jnp

from dlfunc import nn
from dlfunc.models._layers import Dense, Dropout, Embed, LayerNorm, precision

_ACTIVATIONS = {
  "gelu": lambda x: nn.gelu(x, approximate=False),
  "gelu_new": lambda x: nn.gelu(x, approximate=True),
  "gelu_pytorch_tanh": lambda x: nn.gelu(x, approximate=True),
  "relu": nn.relu,
}


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """The fields of a Hugging Face BERT ``config.json`` that shape the network (defaults: bert-base-uncased)."""

  vocab_size: int = 30522
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  hidden_act: str = "gelu"
  hidden_dropout_prob: float = 0.1
  attention_probs_dropout_prob: float = 0.1
  initializer_range: float = 0.02

  def __post_init__(self):
    if self.hidden_size % self.num_attention_heads:
      raise ValueError(
        f"BertConfig: hidden_size {self.hidden_size} is not divisible by num_attention_heads "
        f"{self.num_attention_heads}."
      )
    if self.hidden_act not in _ACTIVATIONS:
      raise ValueError(
        f"BertConfig: hidden_act {self.hidden_act!r} is not supported; use one of {sorted(_ACTIVATIONS)}."
      )

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> "BertConfig":
    """Keep the known fields of a HF config dict; reject non-absolute position embeddings."""
    if d.get("position_embedding_type", "absolute") != "absolute":
      raise ValueError(
        f"BertConfig: only absolute position embeddings are supported, got {d['position_embedding_type']!r}."
      )
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})

  @classmethod
  def from_json(cls, path: str | os.PathLike) -> "BertConfig":
    """Read ``config.json`` (or the ``config.json`` inside a directory)."""
    path = os.fspath(path)
    if os.path.isdir(path):
      path = os.path.join(path, "config.json")
    with open(path, encoding="utf-8") as f:
      return cls.from_dict(json.load(f))


def _unpack(input_ids, attention_mask, token_type_ids):
  """Accept a tokenizer-style dict as the first argument (convenient for ``fit`` batches)."""
  if isinstance(input_ids, Mapping):
    d = input_ids
    input_ids = d["input_ids"]
    attention_mask = d.get("attention_mask", attention_mask)
    token_type_ids = d.get("token_type_ids", token_type_ids)
  input_ids = jnp.asarray(input_ids)
  if input_ids.ndim != 2:
    raise ValueError(
      f"BERT expects token ids shaped (batch, seq_len), got shape {tuple(input_ids.shape)}; "
      "add a batch axis with ids[None]."
    )
  if attention_mask is None:
    attention_mask = jnp.ones_like(input_ids)
  if token_type_ids is None:
    token_type_ids = jnp.zeros_like(input_ids)
  return input_ids, jnp.asarray(attention_mask), jnp.asarray(token_type_ids)


def attention(q, k, v, mask=None, dropout=None):
  """softmax(q k^T) v for q, k, v of shape (batch, heads, time, head_dim) -> (batch, time, heads, head_dim).

  q carries the 1/sqrt(head_dim) scale already. ``mask`` (batch, time) marks
  real keys with 1: padded keys get the dtype's most negative score (Hugging
  Face adds ``finfo.min``), so they get ~0 weight. ``dropout`` (optional) maps
  the attention probabilities, as BERT drops them in training.
  """
  scores = jnp.einsum("bhqd,bhkd->bhqk", q, k)
  low = jnp.finfo(scores.dtype).bits < 32  # bfloat16 compute: the softmax runs in float32, its output in bfloat16
  if low:
    scores = scores.astype(jnp.float32)
  if mask is not None:
    scores = jnp.where(mask[:, None, None, :] > 0, scores, jnp.finfo(scores.dtype).min)
  probs = nn.softmax(scores, axis=-1)
  if low:
    probs = probs.astype(v.dtype)
  if dropout is not None:
    probs = dropout(probs)
  # (b, heads, t, head_dim) out, then one transpose: asking the einsum for (b, t, heads, head_dim) directly makes
  # XLA CPU compute the transposed product v^T p^T with a slower kernel (attention core ~1.4x slower)
  return jnp.einsum("bhqk,bhkd->bhqd", probs, v).transpose(0, 2, 1, 3)


class BertLayer(linen.Module):
  """One post-norm transformer layer: self-attention + residual + LN, GELU MLP + residual + LN."""

  config: BertConfig
  dtype: Any = None  # compute dtype; None: that of the inputs and parameters (float64 under x64), as in Flax
  param_dtype: Any = jnp.float32

  @linen.compact
  def __call__(self, h, mask, train: bool = False):
    pr = precision(self)
    c = self.config
    init = jax.nn.initializers.normal(c.initializer_range)
    b, t, d = h.shape
    nh = c.num_attention_heads
    hd = d // nh

    def heads(x):  # (b, t, d) -> (b, heads, t, head_dim): batch axes first, so XLA's dots need no transposes
      return x.reshape(b, t, nh, hd).transpose(0, 2, 1, 3)

    # the 1/sqrt(head_dim) scale goes on q (b*t*d products) rather than on the scores (b*heads*t*t)
    q = heads(Dense(d, kernel_init=init, name="query", **pr)(h) * (1.0 / math.sqrt(hd)))
    k = heads(Dense(d, kernel_init=init, name="key", **pr)(h))
    v = heads(Dense(d, kernel_init=init, name="value", **pr)(h))
    drop = Dropout(c.attention_probs_dropout_prob)
    ctx = attention(q, k, v, mask, lambda p: drop(p, train)).reshape(b, t, d)
    attn = Dropout(c.hidden_dropout_prob)(Dense(d, kernel_init=init, name="attention_output", **pr)(ctx), train)
    h = LayerNorm(c.layer_norm_eps, name="attention_norm", **pr)(attn + h)
    inter = _ACTIVATIONS[c.hidden_act](Dense(c.intermediate_size, kernel_init=init, name="intermediate", **pr)(h))
    out = Dropout(c.hidden_dropout_prob)(Dense(d, kernel_init=init, name="output", **pr)(inter), train)
    return LayerNorm(c.layer_norm_eps, name="output_norm", **pr)(out + h)


class BertEmbeddings(linen.Module):
  """Word + absolute position + token-type embeddings, then LayerNorm and dropout."""

  config: BertConfig
  dtype: Any = None  # compute dtype; None: that of the inputs and parameters (float64 under x64), as in Flax
  param_dtype: Any = jnp.float32

  @linen.compact
  def __call__(self, input_ids, token_type_ids, train: bool = False):
    pr = precision(self)
    c = self.config
    t = input_ids.shape[1]
    if t > c.max_position_embeddings:
      raise ValueError(
        f"BERT: sequence length {t} exceeds max_position_embeddings {c.max_position_embeddings}; truncate the input."
      )
    init = jax.nn.initializers.normal(c.initializer_range)
    x = Embed(c.vocab_size, c.hidden_size, init, name="word_embeddings", **pr)(input_ids)
    # positions derived from input_ids, so under jit they are traced like it (nn.embedding range-checks constants)
    positions = jnp.arange(t, dtype=input_ids.dtype)[None] + jnp.zeros_like(input_ids[:1])
    x = x + Embed(c.max_position_embeddings, c.hidden_size, init, name="position_embeddings", **pr)(positions)
    x = x + Embed(c.type_vocab_size, c.hidden_size, init, name="token_type_embeddings", **pr)(token_type_ids)
    x = LayerNorm(c.layer_norm_eps, name="LayerNorm", **pr)(x)
    return Dropout(c.hidden_dropout_prob)(x, train)


class BERT(linen.Module):
  """The BERT encoder (HF ``BertModel``).

  ``apply(variables, input_ids, attention_mask=None, token_type_ids=None, train=False)``
  returns ``(sequence_output, pooled_output)``: ``(B, T, H)`` hidden states and
  ``tanh(dense(h[:, 0]))`` of shape ``(B, H)`` (``None`` without pooler).
  ``input_ids`` may also be a dict with those three keys (a tokenizer batch).

  Example:
    >>> cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
    ...                  intermediate_size=32, max_position_embeddings=16)
    >>> model = BERT(cfg)
    >>> ids = jnp.ones((2, 5), jnp.int32)
    >>> seq, pooled = model.apply(model.init(jax.random.key(0), ids), ids)
    >>> seq.shape, pooled.shape
    ((2, 5, 16), (2, 16))
  """

  config: BertConfig
  add_pooling_layer: bool = True
  dtype: Any = None  # compute dtype; None: that of the inputs and parameters (float64 under x64), as in Flax
  param_dtype: Any = jnp.float32

  @linen.compact
  def __call__(self, input_ids, attention_mask=None, token_type_ids=None, train: bool = False):
    pr = precision(self)
    ids, mask, types = _unpack(input_ids, attention_mask, token_type_ids)
    h = BertEmbeddings(self.config, name="embeddings", **pr)(ids, types, train)
    for i in range(self.config.num_hidden_layers):
      h = BertLayer(self.config, name=f"layer_{i}", **pr)(h, mask, train)
    if not self.add_pooling_layer:
      return h, None
    init = jax.nn.initializers.normal(self.config.initializer_range)
    pooled = nn.tanh(Dense(self.config.hidden_size, kernel_init=init, name="pooler", **pr)(h[:, 0]))
    return h, pooled


def mean_pool(hidden, attention_mask, normalize: bool = True, eps: float = 1e-9):
  r"""Mean of the token vectors where ``attention_mask`` is 1 (sentence-transformers' pooling).

  :math:`e = \sum_t m_t h_t / \max(\sum_t m_t, \epsilon)`, then :math:`e / \max(\lVert e\rVert_2, 10^{-12})` if
  ``normalize``.
  """
  if jnp.finfo(hidden.dtype).bits < 32:  # bfloat16 compute: sum and normalise in float32
    hidden = hidden.astype(jnp.float32)
  m = jnp.asarray(attention_mask, hidden.dtype)[..., None]
  e = jnp.sum(hidden * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), eps)
  if normalize:
    e = e / jnp.maximum(jnp.linalg.norm(e, axis=-1, keepdims=True), 1e-12)
  return e


class BertMeanPooler(linen.Module):
  """BERT -> mean over the attention mask -> (optionally) L2 normalisation: sentence embeddings ``(B, H)``."""

  config: BertConfig
  normalize: bool = True
  dtype: Any = None  # compute dtype; None: that of the inputs and parameters (float64 under x64), as in Flax
  param_dtype: Any = jnp.float32

  @linen.compact
  def __call__(self, input_ids, attention_mask=None, token_type_ids=None, train: bool = False):
    pr = precision(self)
    ids, mask, types = _unpack(input_ids, attention_mask, token_type_ids)
    h, _ = BERT(self.config, add_pooling_layer=False, name="bert", **pr)(ids, mask, types, train)
    return mean_pool(h, mask, self.normalize)


class BertForSequenceClassification(linen.Module):
  """HF ``BertForSequenceClassification``: pooled ``[CLS]`` -> dropout -> ``classifier``. Returns logits.

  With ``pooling="mean"`` the classifier reads the (unnormalised) masked mean
  of the token vectors instead, which suits sentence-transformers checkpoints
  such as all-MiniLM-L6-v2 whose pooler was never trained.
  """

  config: BertConfig
  num_labels: int = 2
  pooling: str = "cls"
  dtype: Any = None  # compute dtype; None: that of the inputs and parameters (float64 under x64), as in Flax
  param_dtype: Any = jnp.float32

  @linen.compact
  def __call__(self, input_ids, attention_mask=None, token_type_ids=None, train: bool = False):
    pr = precision(self)
    ids, mask, types = _unpack(input_ids, attention_mask, token_type_ids)
    if self.pooling not in ("cls", "mean"):
      raise ValueError(f"BertForSequenceClassification: pooling must be 'cls' or 'mean', got {self.pooling!r}.")
    h, pooled = BERT(self.config, add_pooling_layer=self.pooling == "cls", name="bert", **pr)(ids, mask, types, train)
    x = pooled if self.pooling == "cls" else mean_pool(h, mask, normalize=False)
    x = Dropout(self.config.hidden_dropout_prob)(x, train)
    init = jax.nn.initializers.normal(self.config.initializer_range)
    return Dense(self.num_labels, kernel_init=init, name="classifier", **pr)(x)
