"""Loading data sets as numpy arrays through TFDS's TensorFlow-free data-source path.

``load(name, split)`` returns a :class:`Split`: ``x`` float32 in [0, 1] (images
NHWC), ``y`` int32. Every data set goes through ``builder.as_data_source()`` over
array_record files; nothing here imports TensorFlow (``tfds.load`` and
``as_dataset`` would).

New data sets join the registry with :func:`register_dataset`, so the CLI's
``--dataset`` and ``fit`` pick them up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import socket
import sys
from typing import Any, Callable, Iterator, cast

import numpy as np

EMBEDDED = "digits"


class DataError(RuntimeError):
  """A data set cannot be loaded (offline and not prepared, bad split, ...)."""


@dataclasses.dataclass(frozen=True)
class Split:
  """One split of a data set, in memory.

  Attributes:
    x: float32 inputs scaled to [0, 1]; images are (N, H, W, C), sequences (N, T, F).
    y: int32 class labels, shape (N,).
    num_classes: number of classes (labels are 0 .. num_classes - 1).
    name: registry name of the data set; ``split``: the split's name.

  Unpacks like a pair: ``x, y = load("digits", "train")``.
  """

  x: np.ndarray
  y: np.ndarray
  num_classes: int
  name: str = ""
  split: str = ""

  def __iter__(self) -> Iterator[np.ndarray]:
    return iter((self.x, self.y))

  def __len__(self) -> int:
    return len(self.x)

  def __repr__(self) -> str:
    return (
      f"Split({self.name!r}, {self.split!r}, x={self.x.shape} {self.x.dtype}, "
      f"y={self.y.shape} {self.y.dtype}, num_classes={self.num_classes})"
    )


Loader = Callable[[str, "str | os.PathLike | None"], Split]
#: Registry: data-set name -> ``loader(split, data_dir) -> Split``.
DATASETS: dict[str, Loader] = {}


def register_dataset(name: str, loader: Loader, *, overwrite: bool = False) -> Loader:
  """Adds ``loader(split, data_dir) -> Split`` under ``name`` (for ``load`` and ``--dataset``)."""
  if name in DATASETS and not overwrite:
    raise ValueError(f"data set {name!r} is already registered; pass overwrite=True to replace it.")
  DATASETS[name] = loader
  return loader


def available() -> list[str]:
  """Names accepted by :func:`load` and the CLI's ``--dataset``."""
  return sorted(DATASETS)


def default_data_dir(data_dir: str | os.PathLike | None = None) -> str:
  """The TFDS data dir: ``data_dir``, else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``."""
  if data_dir is not None:
    return os.fspath(data_dir)
  return os.environ.get("TFDS_DATA_DIR", os.path.join(os.path.expanduser("~"), "tensorflow_datasets"))


def load(name: str = EMBEDDED, split: str = "train", data_dir: str | os.PathLike | None = None) -> Split:
  """Loads one split of a registered data set into memory.

  Args:
    name: a registered name (see :func:`available`): ``digits`` (embedded, offline),
      ``digits-seq`` (the digits read row by row: 8 steps x 8 features),
      ``mnist``, ``fashion_mnist``, ``cifar10``, ... (TFDS, prepared on a connected
      machine), or ``tfds:NAME`` for any other TFDS image-classification set.
    split: ``"train"`` or ``"test"`` (any TFDS split string for TFDS sets).
    data_dir: the TFDS data dir (default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).

  Returns:
    A :class:`Split` (``x`` float32 in [0, 1], ``y`` int32). Arrays are read-only
    and cached per process.

  Raises:
    ValueError: unknown name (the message lists the valid ones).
    DataError: the set is not prepared and cannot be downloaded.

  Example:
    >>> x, y = load("digits", "test")
    >>> x.shape, y.shape
    ((360, 8, 8, 1), (360,))
  """
  if name.startswith("tfds:"):
    return _load_tfds_cached(name[len("tfds:") :], split, default_data_dir(data_dir), name)
  if name not in DATASETS:
    raise ValueError(
      f"unknown data set {name!r}; choose one of: {', '.join(available())} (or tfds:NAME for another TFDS image set)."
    )
  return DATASETS[name](split, data_dir)


def _read_all(source) -> list[dict]:
  """All records of a TFDS data source, decoded to numpy (batched reads, with a fallback)."""
  n = len(source)
  out: list[dict] = []
  chunk = 4096
  for start in range(0, n, chunk):
    keys = list(range(start, min(n, start + chunk)))
    try:
      out.extend(source.__getitems__(keys))
    except TypeError:  # Some mocks only implement __getitem__.
      out.extend(source[k] for k in keys)
  return out


@contextlib.contextmanager
def _quiet_tfds():
  """Silences TFDS's preparation chatter (progress bars, stdout banner, absl warnings)."""
  from absl import logging as absl_logging
  from tensorflow_datasets.core.utils import tqdm_utils

  active, verbosity = tqdm_utils._active, absl_logging.get_verbosity()  # noqa: SLF001
  tqdm_utils._active = False  # noqa: SLF001
  absl_logging.set_verbosity(absl_logging.ERROR)
  try:
    with contextlib.redirect_stdout(sys.stderr):
      yield
  finally:
    tqdm_utils._active = active  # noqa: SLF001
    absl_logging.set_verbosity(verbosity)


def _online(host: str = "storage.googleapis.com", timeout: float = 3.0) -> bool:
  """True when ``host`` resolves and accepts a TCP connection (fails fast offline,
  instead of TFDS's minutes of download retries)."""
  try:
    socket.create_connection((host, 443), timeout=timeout).close()
    return True
  except OSError:
    return False


def _readonly(a: np.ndarray) -> np.ndarray:
  a.setflags(write=False)
  return a


# ---------------------------------------------------------------------------- embedded digits


def digits_builder(data_dir: str | os.PathLike | None = None):
  """The embedded :class:`Digits` TFDS builder, prepared (array_record) on first use."""
  from dlfunc.data._digits import Digits

  with _quiet_tfds():
    builder = Digits(data_dir=default_data_dir(data_dir), file_format="array_record")
  if not builder.is_prepared():
    try:
      with _quiet_tfds():
        builder.download_and_prepare(file_format="array_record")
    except OSError as e:
      with _quiet_tfds():  # Another process may have finished preparing it first.
        builder = Digits(data_dir=default_data_dir(data_dir), file_format="array_record")
      if not builder.is_prepared():
        raise DataError(
          f"cannot prepare the embedded digits set in {default_data_dir(data_dir)}: {e}; pass a writable --data-dir."
        ) from None
  return builder


@functools.lru_cache(maxsize=16)
def _load_digits(split: str, data_dir: str) -> Split:
  builder = digits_builder(data_dir)
  if split not in builder.info.splits:
    raise ValueError(f"digits has splits {sorted(builder.info.splits)}, got {split!r}.")
  # as_data_source's logging decorator hides its signature from pyright; split= is its documented keyword.
  records = _read_all(builder.as_data_source(split=split))  # pyright: ignore[reportCallIssue]
  records.sort(key=lambda r: int(r["index"]))  # TFDS stores examples in hashed order.
  x = np.stack([r["image"] for r in records]).astype(np.float32) / 16.0
  y = np.asarray([r["label"] for r in records], np.int32)
  return Split(_readonly(x), _readonly(y), 10, EMBEDDED, split)


def _digits(split: str = "train", data_dir=None) -> Split:
  return _load_digits(split, default_data_dir(data_dir))


def _digits_seq(split: str = "train", data_dir=None) -> Split:
  """The digits as sequences: each image read top to bottom, 8 steps of 8 pixels."""
  s = _digits(split, data_dir)
  return Split(_readonly(s.x.reshape(-1, 8, 8)), s.y, s.num_classes, "digits-seq", split)


# ---------------------------------------------------------------------------- named TFDS sets


def _importlib_resources_shim() -> None:
  """TFDS 4.9 probes the ``importlib_resources`` backport when preparing a set;
  on Python >= 3.9 the standard library's ``importlib.resources`` is the same API."""
  import importlib.util
  import sys

  if "importlib_resources" not in sys.modules and importlib.util.find_spec("importlib_resources") is None:
    import importlib.resources
    import importlib.resources.abc  # noqa: F401 -- makes `.abc` an attribute.

    sys.modules["importlib_resources"] = importlib.resources


def _load_tfds(tfds_name: str, split: str, data_dir: str, name: str) -> Split:
  import tensorflow_datasets as tfds

  _importlib_resources_shim()
  try:
    with _quiet_tfds():
      builder = tfds.builder(tfds_name, data_dir=data_dir)
  except Exception as e:  # noqa: BLE001 -- TFDS raises many types; report one line.
    raise ValueError(f"TFDS does not know data set {tfds_name!r} ({type(e).__name__}).") from None
  if not builder.is_prepared():
    try:
      if not _online():
        raise ConnectionError("offline")
      with _quiet_tfds():
        builder.download_and_prepare(file_format="array_record")
    except Exception as e:  # noqa: BLE001 -- offline: DownloadError, ConnectionError, OSError...
      reason = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
      raise DataError(
        f"data set {name!r} is not prepared in {data_dir} and could not be downloaded ({reason}); "
        f"prepare it on a connected machine and pass its TFDS dir with --data-dir, "
        f"or use the embedded offline set: --dataset {EMBEDDED}."
      ) from None
  # An image set's supervised keys are (image, label).
  image_key, label_key = cast(tuple[str, str], builder.info.supervised_keys or ("image", "label"))
  try:
    source = builder.as_data_source(split=split)  # pyright: ignore[reportCallIssue]  (see _load_digits)
  except Exception as e:  # noqa: BLE001
    raise DataError(f"cannot read split {split!r} of {name!r} from {data_dir}: {e}".splitlines()[0]) from None
  records = _read_all(source)
  x = np.stack([np.asarray(r[image_key]) for r in records])
  scale = 255.0 if x.dtype == np.uint8 else 1.0
  x = x.astype(np.float32) / scale
  y = np.asarray([r[label_key] for r in records], np.int32)
  features: Any = builder.info.features  # a FeaturesDict for every image set
  num_classes = features[label_key].num_classes
  return Split(_readonly(x), _readonly(y), int(num_classes), name, split)


@functools.lru_cache(maxsize=8)
def _load_tfds_cached(tfds_name: str, split: str, data_dir: str, name: str) -> Split:
  return _load_tfds(tfds_name, split, data_dir, name)


def _tfds_loader(tfds_name: str, name: str) -> Loader:
  def loader(split: str = "train", data_dir=None) -> Split:
    return _load_tfds_cached(tfds_name, split, default_data_dir(data_dir), name)

  loader.__doc__ = f"TFDS {tfds_name!r} through tfds data sources (array_record, no TensorFlow)."
  return loader


register_dataset(EMBEDDED, _digits)
register_dataset("digits-seq", _digits_seq)
for _name in ("mnist", "fashion_mnist", "kmnist", "cifar10"):
  register_dataset(_name, _tfds_loader(_name, _name))
