"""Checks library: comparisons whose failure messages a student can act on.

See autograder/AUTHORING.md for the table of checks. Implementation in ``autograder.grader._checks``.
"""
from autograder.grader._checks import (TOLERANCES, Credit, allclose, check, compiles_once, describe, each, fail,
                                       finite, grad_matches, jit_matches, key, keys_are, matches, normal,
                                       prng_discipline, shape_dtype, vmap_matches)
from autograder._errors import CheckFailed, SubmissionError

__all__ = ["TOLERANCES", "Credit", "CheckFailed", "SubmissionError", "allclose", "check", "compiles_once",
           "describe", "each", "fail", "finite", "grad_matches", "jit_matches", "key", "keys_are", "matches",
           "normal", "prng_discipline", "shape_dtype", "vmap_matches"]
