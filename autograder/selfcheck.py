"""Run every public test from inside a notebook: ``check_all("03", globals())`` (the notebook's last cell)."""

from autograder.authoring._selfcheck import check_all, summary_table

__all__ = ["check_all", "summary_table"]
