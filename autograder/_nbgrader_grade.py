"""Kept for ``nbgrader_config.py`` files written by earlier releases, which name
``autograder._nbgrader_grade.IsolatedGrade``; the code is :mod:`autograder.authoring._nbgrader_grade`."""

from autograder.authoring._nbgrader_grade import IsolatedGrade

__all__ = ["IsolatedGrade"]
