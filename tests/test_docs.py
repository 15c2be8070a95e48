"""The API reference's inputs (docs/hooks.py): every public module has ``__all__``, every public name a docstring.

``make docs`` builds the reference strictly (mkdocs, needs the docs extra); this
runs the same checks in the test environment, in a second.
"""
import importlib
import importlib.util
import logging
import os
import types

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def hooks():
  spec = importlib.util.spec_from_file_location("dlfunc_docs_hooks", os.path.join(ROOT, "docs", "hooks.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_every_public_name_of_dlfunc_and_autograder_checks_is_documented(hooks, caplog):
  modules = hooks.api_modules()
  assert {"dlfunc.train", "dlfunc.optim", "dlfunc.data", "dlfunc.nn", "dlfunc.models", "dlfunc.cli",
          "autograder.checks"} <= set(modules)
  with caplog.at_level(logging.WARNING, logger="mkdocs"):
    pages = {name: hooks.module_page(name) for name in modules}
  assert caplog.records == [], "\n".join(r.getMessage() for r in caplog.records)
  train = importlib.import_module("dlfunc.train")
  for name in train.__all__:  # One section per public name, from __all__ (nothing listed by hand).
    assert f"::: dlfunc.train.{name}\n" in pages["dlfunc.train"]


def test_missing_docstrings_and_absent_names_are_reported(hooks, caplog):
  def documented():
    """Does a thing."""

  def bare():
    pass

  class Bare:
    pass

  mod = types.ModuleType("fake_public")
  mod.documented, mod.bare, mod.Bare = documented, bare, Bare
  mod.__all__ = ["documented", "bare", "Bare", "absent"]
  with caplog.at_level(logging.WARNING, logger="mkdocs"):
    names = hooks.public_names(mod)
    assert hooks.undocumented(mod, names) == ["bare", "Bare"]
  assert names == ["documented", "bare", "Bare"]
  assert "fake_public.__all__ names absent" in caplog.text


def test_readme_sections_are_the_first_pages(hooks):
  sections = hooks._readme_sections()
  with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
    readme = f.read()
  assert sections[0][0] == "Home" and sections[0][1].startswith("# dlfunc")
  assert any(title.startswith("For researchers") for title, _ in sections)
  for _, body in sections[1:]:  # Each page is a README section, verbatim after its heading.
    assert body.split("\n", 1)[1] in readme
