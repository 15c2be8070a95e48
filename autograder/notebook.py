"""``from autograder.notebook import grade``: grading one function from inside a student's notebook.

Released notebooks import this path; the code lives in :mod:`autograder.authoring._notebook`, which this module
*is* (the same module object, so patching either name patches both).
"""

import sys

from autograder.authoring import _notebook

sys.modules[__name__] = _notebook
