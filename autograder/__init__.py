"""autograder: isolated, pytest-compatible grading of dlfunc assignments.

Authoring guide: autograder/AUTHORING.md. Public surface:
``points``, ``hidden`` (test decorators), ``checks`` (feedback-giving
comparisons), ``SubmissionError`` (what a failed call into a submission raises),
``load_assignment``, ``list_assignments``, ``grade_submission``.

Layout, one folder per side of the trust boundary (imports go down only; ``tests/test_autograder.py`` checks it):

- ``cli.py``, ``checks.py``, ``notebook.py``, ``selfcheck.py``, ``pytest_plugin.py``: the public entry points.
- ``authoring/``: releases, nbgrader, grading from inside a notebook (instructor and notebook side).
- ``platforms/``: Gradescope and PrairieLearn bundles and the adapters that run in them.
- ``grader/``: the trusted grader (assignments, tests, checks, the grading run, reports, batches).
- ``worker/``: the untrusted side (sandbox, worker process, wire format, reading submissions as data).
- ``_errors.py``: the exceptions both sides raise.
"""

from typing import TYPE_CHECKING

from autograder._errors import CheckFailed, SubmissionError
from autograder.grader._registry import hidden, list_assignments, load_assignment, points

if TYPE_CHECKING:  # loaded lazily by __getattr__ below; named here for type checkers and editors
  from autograder.grader._runner import grade_submission

__all__ = [
  "points",
  "hidden",
  "CheckFailed",
  "SubmissionError",
  "load_assignment",
  "list_assignments",
  "grade_submission",
]


def __getattr__(name):
  # Lazy: importing the runner pulls in the sandbox machinery.
  if name == "grade_submission":
    from autograder.grader._runner import grade_submission

    return grade_submission
  if name == "checks":
    import importlib

    return importlib.import_module("autograder.checks")
  raise AttributeError(f"module 'autograder' has no attribute {name!r}")
