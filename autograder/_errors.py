"""Exceptions shared by the grader, the worker proxy and the checks."""

from __future__ import annotations


class CheckFailed(AssertionError):
  """A check's verdict: the message is written for the student."""


class SubmissionError(Exception):
  """A call into the submission did not return a value.

  ``kind`` is one of: ``exception`` (the student's code raised), ``not_implemented``,
  ``missing`` (no such function), ``timeout``, ``crash`` (the worker died),
  ``refused`` (uses dlfunc's implementation / a forbidden name), ``jit`` (fails under
  jax.jit only), ``bad_output`` (returned something that is not arrays), ``tampered``.
  """

  def __init__(self, kind: str, message: str):
    super().__init__(message)
    self.kind = kind
    self.message = message


class GraderBroken(RuntimeError):
  """The grader itself cannot run (its worker could not start: a broken environment, not the submission).
  Never scored as the student's failure: grading stops with this message."""


class GradingTimeout(BaseException):
  """Raised (by a SIGALRM handler) when an in-process test runs past its time limit; never caught as
  the student's own exception."""
