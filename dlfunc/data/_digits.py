"""The embedded data set: scikit-learn's handwritten digits as a TFDS builder.

scikit-learn ships the 1,797 8x8 digit images (UCI "optdigits", pixel values
0..16) inside its wheel, so this builder needs no network. It is prepared once
into the TFDS data dir as array_record files and then read like any other TFDS
data set through ``builder.as_data_source()`` -- the TensorFlow-free path.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

#: Fraction of each class that goes to the test split (stratified, fixed seed).
TEST_FRACTION = 0.2
#: Seed of the stratified train/test split; changing it changes the data set.
SPLIT_SEED = 0


def stratified_split(y: np.ndarray, test_fraction: float = TEST_FRACTION, seed: int = SPLIT_SEED):
  """Indices ``(train, test)``: scikit-learn's ``train_test_split(..., stratify=y)``.

  The conventional scikit-learn split (``test_size=0.2, stratify=y,
  random_state=0``), so results compare with the many digits examples that use
  it. Deterministic: the same ``y`` and ``seed`` give the same split everywhere.
  """
  from sklearn.model_selection import train_test_split

  train, test = train_test_split(np.arange(len(y)), test_size=test_fraction, stratify=y, random_state=seed)
  return np.sort(train), np.sort(test)


class Digits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's 8x8 handwritten digits, split 80/20 stratified (1,437 train / 360 test).

  Features: ``image`` uint8 (8, 8, 1) with values 0..16 (divide by 16 for [0, 1]),
  ``label`` 0..9, and ``index``, the row in ``sklearn.datasets.load_digits()``
  (TFDS stores examples in hashed order; ``index`` restores the original one).
  """

  name = "digits"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "sklearn train_test_split(test_size=0.2, stratify=y, random_state=0) of load_digits."}

  # tfds loads tfds.core.utils lazily, so pyright cannot see it.
  @tfds.core.utils.classproperty  # pyright: ignore[reportAttributeAccessIssue]
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS 4.9's default probes `importlib_resources` (a py<3.9 backport that is
    # not installed on 3.11); this module's own file is the right answer anyway.
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      description="scikit-learn's handwritten digits (UCI optdigits test set), 8x8, values 0..16.",
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
          "label": tfds.features.ClassLabel(num_classes=10),
          "index": tfds.features.Scalar(dtype=np.int32),
        }
      ),
      supervised_keys=("image", "label"),
      homepage="https://scikit-learn.org/stable/modules/generated/sklearn.datasets.load_digits.html",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: the data is in scikit-learn's wheel.
    from sklearn.datasets import load_digits  # Deferred: sklearn import costs ~0.5 s.

    bunch: Any = load_digits()  # a Bunch (the stub's union also lists the return_X_y tuple)
    images = bunch.images.astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int64)
    train, test = stratified_split(labels)
    return {
      "train": self._generate_examples(images, labels, train),
      "test": self._generate_examples(images, labels, test),
    }

  def _generate_examples(self, images, labels, indices):
    for i in indices:
      yield int(i), {"image": images[i], "label": int(labels[i]), "index": int(i)}
