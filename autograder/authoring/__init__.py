"""The instructor's and the notebook's side: releases, nbgrader, and grading from inside a student's notebook.

``_authoring`` turns an assignment source into a student stub and a solution; ``_nbgrader`` writes an nbgrader
course and ``_nbgrader_grade.IsolatedGrade`` grades its notebooks with the isolated grader; ``_notebook`` and
``_selfcheck`` are ``autograder.notebook`` and ``autograder.selfcheck`` (what a released notebook calls).
Depends on ``autograder.grader``.
"""
