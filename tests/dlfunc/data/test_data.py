"""dlfunc.data: the embedded digits through TFDS data sources (no TensorFlow), mocked MNIST, batching."""
import importlib.util
import os
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from dlfunc import data
from dlfunc.data import _digits, _load


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
  """A fresh TFDS data dir: the builder prepares the embedded set into it on first use."""
  return str(tmp_path_factory.mktemp("tfds"))


def test_tensorflow_is_not_installed_and_not_needed(digits_dir):
  assert importlib.util.find_spec("tensorflow") is None, "this venv must not carry TensorFlow"
  data.load("digits", "train", digits_dir)
  assert "tensorflow" not in sys.modules


def test_digits_prepared_as_array_record_in_tfds_layout(digits_dir):
  data.load("digits", "test", digits_dir)
  files = sorted(os.listdir(os.path.join(digits_dir, "digits", "1.0.0")))
  assert "dataset_info.json" in files and "features.json" in files
  assert any(f.startswith("digits-train.array_record") for f in files)
  assert any(f.startswith("digits-test.array_record") for f in files)
  builder = data.digits_builder(digits_dir)
  assert builder.is_prepared()
  assert builder.info.splits["train"].num_examples == 1437
  assert builder.info.splits["test"].num_examples == 360
  # Read back through the generic TFDS entry point as well.
  source = tfds.data_source("digits", split="test", data_dir=digits_dir, download=False)
  assert len(source) == 360 and source[0]["image"].shape == (8, 8, 1)


def test_digits_are_sklearn_digits_scaled_and_split_stratified(digits_dir):
  from sklearn.datasets import load_digits
  bunch = load_digits()
  train_idx, test_idx = _digits.stratified_split(bunch.target)
  assert len(np.intersect1d(train_idx, test_idx)) == 0
  assert len(train_idx) + len(test_idx) == 1797
  for name, idx in (("train", train_idx), ("test", test_idx)):
    s = data.load("digits", name, digits_dir)
    assert s.x.dtype == np.float32 and s.y.dtype == np.int32 and s.x.shape == (len(idx), 8, 8, 1)
    np.testing.assert_array_equal(s.x[..., 0] * 16.0, bunch.images[idx])
    np.testing.assert_array_equal(s.y, bunch.target[idx])
    assert 0.0 <= s.x.min() and s.x.max() <= 1.0
  test = data.load("digits", "test", digits_dir)
  counts = np.bincount(test.y, minlength=10)
  full = np.bincount(bunch.target, minlength=10)
  np.testing.assert_allclose(counts / full, 0.2, atol=0.02)  # 20% of every class.


def test_split_is_deterministic_across_data_dirs(digits_dir, tmp_path):
  a = data.load("digits", "test", digits_dir)
  b = data.load("digits", "test", tmp_path)  # Prepared again from scratch elsewhere.
  np.testing.assert_array_equal(a.x, b.x)
  np.testing.assert_array_equal(a.y, b.y)


def test_split_unpacks_and_is_read_only(digits_dir):
  s = data.load("digits", "train", digits_dir)
  x, y = s
  assert len(s) == len(x) == len(y) and s.num_classes == 10
  with pytest.raises(ValueError):
    x[0, 0, 0, 0] = 1.0


def test_digits_seq_is_rows_as_time_steps(digits_dir):
  img = data.load("digits", "train", digits_dir)
  seq = data.load("digits-seq", "train", digits_dir)
  assert seq.x.shape == (len(img), 8, 8)
  np.testing.assert_array_equal(seq.x[:, 3, :], img.x[:, 3, :, 0])  # Step 3 is image row 3.
  np.testing.assert_array_equal(seq.y, img.y)


def test_unknown_dataset_lists_valid_names():
  with pytest.raises(ValueError, match="unknown data set 'nope'.*digits.*mnist") as e:
    data.load("nope")
  assert "\n" not in str(e.value)


def test_offline_unprepared_named_set_is_a_one_line_error(monkeypatch, tmp_path):
  monkeypatch.setattr(_load, "_online", lambda *a, **k: False)
  with pytest.raises(data.DataError) as e:
    data.load("fashion_mnist", "train", tmp_path)
  msg = str(e.value)
  assert "\n" not in msg and "--data-dir" in msg and "--dataset digits" in msg and "fashion_mnist" in msg


def test_mnist_through_mocked_tfds_data_source(monkeypatch, tmp_path):
  # A "connected machine": the pre-flight network probe passes, TFDS is mocked.
  monkeypatch.setattr(_load, "_online", lambda *a, **k: True)
  with tfds.testing.mock_data(num_examples=24):
    s = data.load("mnist", "train", tmp_path)
  assert s.x.shape == (24, 28, 28, 1) and s.x.dtype == np.float32
  assert s.y.shape == (24,) and s.y.dtype == np.int32 and s.num_classes == 10
  assert 0.0 <= s.x.min() and s.x.max() <= 1.0 and 0 <= s.y.min() and s.y.max() <= 9


def test_register_dataset_extends_the_registry():
  name = "digits-test-only-copy"
  data.register_dataset(name, lambda split="train", data_dir=None: data.load("digits", split, data_dir))
  try:
    assert name in data.available()
    with pytest.raises(ValueError, match="already registered"):
      data.register_dataset(name, lambda split, data_dir: None)
  finally:
    data.DATASETS.pop(name)


# ---------------------------------------------------------------------------- batching


def test_epoch_permutation_is_a_pure_function_of_seed_and_epoch():
  p = data.epoch_permutation(100, seed=3, epoch=2)
  np.testing.assert_array_equal(p, data.epoch_permutation(100, seed=3, epoch=2))
  assert sorted(p) == list(range(100))
  assert not np.array_equal(p, data.epoch_permutation(100, seed=3, epoch=3))
  assert not np.array_equal(p, data.epoch_permutation(100, seed=4, epoch=2))


def test_batches_drop_remainder_have_fixed_shape_and_follow_the_permutation():
  x = np.arange(50, dtype=np.float32)[:, None]
  y = np.arange(50, dtype=np.int32)
  out = list(data.batches(x, y, 16, seed=1, epoch=0))
  assert len(out) == data.num_batches(50, 16) == 3
  assert all(bx.shape == (16, 1) and by.shape == (16,) for bx, by in out)
  order = data.epoch_permutation(50, seed=1, epoch=0)
  np.testing.assert_array_equal(np.concatenate([by for _, by in out]), order[:48])
  np.testing.assert_array_equal(np.concatenate([bx[:, 0] for bx, _ in out]), order[:48])


def test_batches_pad_with_mask_cover_every_example_once():
  x = np.arange(50, dtype=np.float32)
  y = np.arange(50, dtype=np.int32)
  out = list(data.batches(x, y, 16, shuffle=False, drop_remainder=False))
  assert len(out) == data.num_batches(50, 16, drop_remainder=False) == 4
  assert all(b[0].shape == (16,) for b in out)
  ys = np.concatenate([by[m > 0] for _, by, m in out])
  np.testing.assert_array_equal(ys, np.arange(50))
  assert out[-1][2].sum() == 2


def test_batches_reject_bad_arguments():
  with pytest.raises(ValueError, match="positive"):
    list(data.batches(np.zeros(4), np.zeros(4), 0))
  with pytest.raises(ValueError, match="same number"):
    list(data.batches(np.zeros(4), np.zeros(3), 2))
