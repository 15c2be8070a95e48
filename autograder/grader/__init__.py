"""The trusted grader: assignments, tests, checks and the grading run, in a process that never runs student code.

``_registry`` loads an assignment (its tests, points, hidden tests); ``_checks`` are the comparisons behind
``autograder.checks``; ``_runner.grade_submission`` grades one submission through the worker side
(``autograder.worker``); ``_feedback`` orders failures so the first fix comes first; ``_report`` renders a report
(terminal table, JSON, CSV); ``_batch`` grades a folder of submissions. Depends on ``autograder.worker`` only.
"""
