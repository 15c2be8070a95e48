"""The untrusted side: everything that starts, confines, talks to or parses what a student wrote.

``_sandbox`` starts the worker (under bubblewrap, or confined by ``_confine`` without it) and ``_meter`` charges
its process tree; ``_worker`` is the process that imports the submission; ``_wire`` is the only format crossing the
pipe; ``_ops`` the operations a test may ask of the worker; ``_remote`` the grader's proxy for a submission in the
worker; ``_submission`` reads notebooks and scripts without running them. Nothing here imports the grader side:
this folder (with ``autograder._errors``) is all the worker process needs. See ``autograder/ISOLATION.md``.
"""
