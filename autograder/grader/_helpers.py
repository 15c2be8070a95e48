"""Building blocks that several assignments' graders share: inputs, an MLP read-out, data preparation.

Public through :mod:`autograder.checks` (``C.labels``, ``C.mlp_params``, ...). Everything here runs in the
trusted grader process and works on NumPy values only: inputs are built here and sent to the worker as
arrays, and what comes back is judged here, so the worker never imports this module. Draws use NumPy's
PCG64, so every machine builds the same inputs and a verdict never depends on the platform's JAX PRNG.

The MLP helpers share one parameter layout, a list of layers ``[{"w": (n_in, n_out), "b": (n_out,)}, ...]``
with a relu after every layer but the last (assignments 02, 03 and 05).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from autograder._errors import CheckFailed
from autograder.grader._checks import fail, normal


def labels(seed: int, n: int, classes: int) -> np.ndarray:
  """``n`` class labels drawn uniformly from ``0 .. classes - 1``, as int32 (the dtype losses index with).

  >>> labels(0, 5, 3)
  array([2, 1, 1, 0, 0], dtype=int32)
  """
  return np.random.default_rng(seed).integers(0, classes, size=n).astype(np.int32)


def mlp_params(seed: int, sizes: Sequence[int], dtype=np.float32) -> list[dict[str, np.ndarray]]:
  """Random MLP parameters for layer widths ``sizes``, e.g. ``(6, 5, 3)``: two layers, 6 -> 5 -> 3.

  Weights are normal with standard deviation ``1 / sqrt(n_in)`` (activations keep their scale through
  the layers); biases are normal with standard deviation 0.1, not zero, so a forward or backward pass
  that drops the bias is caught. Layer ``i`` draws its weights from seed ``seed + i`` and its bias from
  ``seed + 50 + i``. Pass ``dtype=np.float64`` for gradient checks.

  >>> [(layer["w"].shape, layer["b"].shape) for layer in mlp_params(0, (6, 5, 3))]
  [((6, 5), (5,)), ((5, 3), (3,))]
  """
  return [
    {"w": normal(seed + i, (a, b), dtype, scale=1.0 / np.sqrt(a)), "b": normal(seed + 50 + i, (b,), dtype, scale=0.1)}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))
  ]


def glorot_mlp(seed: int, sizes: Sequence[int]) -> list[dict[str, np.ndarray]]:
  """A fixed starting point for a training check: Glorot-uniform float32 weights, zero biases.

  Layer by layer from one NumPy generator seeded with ``seed``: weights uniform in ``+-sqrt(6 / (n_in +
  n_out))``. Training checks start the student's step from this instead of the student's own init, so a
  broken init costs only the init's points, and every machine starts from the same numbers.

  >>> p = glorot_mlp(0, (64, 128, 10))
  >>> [layer["w"].shape for layer in p], float(abs(p[0]["w"]).max()) <= (6 / (64 + 128)) ** 0.5
  ([(64, 128), (128, 10)], True)
  """
  rng = np.random.default_rng(seed)
  out = []
  for a, b in zip(sizes[:-1], sizes[1:]):
    limit = np.sqrt(6.0 / (a + b))
    out.append({"w": rng.uniform(-limit, limit, (a, b)).astype(np.float32), "b": np.zeros(b, np.float32)})
  return out


def mlp_accuracy(params: Sequence[dict], x, y) -> float:
  """The fraction of rows of ``x`` whose largest logit under the MLP ``params`` is at label ``y``.

  The forward pass is ``x @ w + b`` with a relu between layers, in NumPy float64: a grader judges the
  parameters a training check got back without compiling anything, and rounding cannot move the verdict.

  >>> p = [{"w": np.eye(2), "b": np.zeros(2)}]
  >>> mlp_accuracy(p, np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 3.0]]), np.array([0, 1, 0]))
  0.6666666666666666
  """
  h = np.asarray(x, np.float64)
  for i, layer in enumerate(params):
    h = h @ np.asarray(layer["w"], np.float64) + np.asarray(layer["b"], np.float64)
    if i < len(params) - 1:
      h = np.maximum(h, 0.0)
  return float(np.mean(h.argmax(-1) == y))


def standardise(x_train, *others, extra_sd: float = 0.1) -> tuple[np.ndarray, ...]:
  """``x_train`` and each of ``others`` flattened to (examples, features) and standardised, as float32.

  Every array is shifted and scaled with the *training* set's per-feature mean and standard deviation
  (the held-out split must not leak into its own preprocessing). ``extra_sd`` is added to every standard
  deviation: features that are constant in training (the digits' corner pixels) would otherwise divide
  by zero, and rare ones would blow up. The same preprocessing for every student: it is the data
  pipeline's job, not the graded function's.

  >>> tr, te = standardise(np.array([[0.0, 1.0], [2.0, 1.0]]), np.array([[1.0, 3.0]]))
  >>> tr.tolist(), te.tolist()
  ([[-0.9090909361839294, 0.0], [0.9090909361839294, 0.0]], [[0.0, 20.0]])
  """
  flat = [a.reshape(len(a), -1) for a in (np.asarray(x_train), *map(np.asarray, others))]
  mu, sd = flat[0].mean(0), flat[0].std(0) + extra_sd
  return tuple(((a - mu) / sd).astype(np.float32) for a in flat)


def use_returned(fn: Callable, *args, what: str):
  """``fn(*args)`` for a grader-side function of values a submission returned; its failure fails the check.

  A training check judges the parameters that came back with the grader's own model. A tree of the
  wrong structure or shapes makes that model raise (a ``KeyError``, a shape error): the student's
  mistake, so it becomes a :class:`CheckFailed` reading ``what (KeyError: 'w'); return the same tree you
  were given.`` rather than a grader crash. ``what`` says who returned what, e.g. ``"ae_train_step
  returned parameters the autoencoder cannot use"``.

  >>> use_returned(lambda p: p["w"] * 2, {"w": 3}, what="step returned parameters the model cannot use")
  6
  >>> use_returned(lambda p: p["w"], {"v": 3}, what="step returned a tree the model cannot use")
  Traceback (most recent call last):
  autograder._errors.CheckFailed: step returned a tree ... (KeyError: 'w'); return the same tree you were given.
  """
  try:
    return fn(*args)
  except CheckFailed:
    raise
  except Exception as e:  # noqa: BLE001  (any error of the grader's model on the returned tree)
    fail(f"{what} ({type(e).__name__}: {str(e)[:120]}); return the same tree you were given.")
