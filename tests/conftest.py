"""Shared test configuration.

Warnings are errors (pyproject); Keras runs on the JAX backend; JAX stays on
the CPU. Fixtures give float64 and strict dtype promotion to tests that ask.
"""
import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def x64():
  """Run the test with 64-bit JAX types (for gradient checks and tight parity)."""
  with jax.enable_x64(True):
    yield


@pytest.fixture
def strict_promotion():
  """Refuse implicit dtype promotion, so a function that silently upcasts fails."""
  with jax.numpy_dtype_promotion("strict"):
    yield


def pytest_collection_modifyitems(config, items):
  """Mark torch-based tests skipped with a reason when PyTorch is absent."""
  try:
    import torch  # noqa: F401
    have_torch = True
  except ImportError:
    have_torch = False
  if have_torch:
    return
  skip = pytest.mark.skip(reason="PyTorch is not installed (pip install torch==2.13.0 to run this parity test)")
  for item in items:
    if "torch" in item.keywords:
      item.add_marker(skip)
