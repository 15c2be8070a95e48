"""Every assignment's points add up to what its text promises, and its source lints clean (``_authoring.lint``)."""
import pytest

from autograder.authoring import _authoring
from _assignment_helpers import Reference

MAX_SCORE = {"01": 25, "02": 30, "03": 21, "04": 23, "05": 27, "06": 26, "07": 27, "08": 24, "09": 26, "10": 21}


@pytest.mark.parametrize("aid", sorted(MAX_SCORE))
def test_points_add_up_and_the_assignment_lints_clean(aid):
  a = Reference(aid).assignment
  assert a.max_score == MAX_SCORE[aid]
  assert _authoring.lint(a) == []
