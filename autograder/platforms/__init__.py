"""Grading on other platforms: Gradescope and PrairieLearn.

``_export`` builds a Gradescope autograder zip and PrairieLearn external-grader files from
``_export_templates``; ``_adapters`` is what runs inside them (``python -m autograder.platforms._adapters``).
Depends on ``autograder.grader``.
"""
