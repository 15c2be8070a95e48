"""Checks library: comparisons whose failure messages a student can act on, and the inputs they are built from.

See autograder/AUTHORING.md for the table of checks. Implementation in ``autograder.grader._checks``; the
helpers several assignments share (``labels``, ``mlp_params``, ``glorot_mlp``, ``mlp_accuracy``,
``standardise``, ``use_returned``) in ``autograder.grader._helpers``.
"""

from autograder.grader._checks import (
  TOLERANCES,
  Credit,
  allclose,
  check,
  compiles_once,
  describe,
  each,
  fail,
  finite,
  grad_matches,
  jit_matches,
  key,
  keys_are,
  matches,
  normal,
  prng_discipline,
  shape_dtype,
  vmap_matches,
)
from autograder.grader._helpers import glorot_mlp, labels, mlp_accuracy, mlp_params, standardise, use_returned
from autograder._errors import CheckFailed, SubmissionError

__all__ = [
  "TOLERANCES",
  "Credit",
  "CheckFailed",
  "SubmissionError",
  "allclose",
  "check",
  "compiles_once",
  "describe",
  "each",
  "fail",
  "finite",
  "glorot_mlp",
  "grad_matches",
  "jit_matches",
  "key",
  "keys_are",
  "labels",
  "matches",
  "mlp_accuracy",
  "mlp_params",
  "normal",
  "prng_discipline",
  "shape_dtype",
  "standardise",
  "use_returned",
  "vmap_matches",
]
