"""The README's researcher example runs as written and trains the seed MLP."""
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _block_after(heading: str) -> str:
  text = README.read_text()
  section = text[text.index(heading):]
  return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_researcher_example_runs(capsys):
  code = _block_after("## For researchers")
  namespace: dict = {}
  exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - our own README
  metrics = namespace["train"].evaluate(namespace["state"], (namespace["x_test"], namespace["y_test"]))
  assert metrics["accuracy"] >= 0.95, metrics
  assert namespace["logits"].shape == (360, 10)
  assert len(namespace["history"]) == 20
