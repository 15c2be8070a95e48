"""mkdocs hook: the API reference, generated from the packages' ``__all__``, after the README's sections.

Nothing here is written by hand per name, so a name added to a package's
``__all__`` appears in the reference at the next ``make docs``. The build
(``strict: true``) fails on

* a public module without ``__all__`` (the reference would not know what it exports),
* a public function or class without a docstring of its own,
* anything mkdocstrings cannot resolve (a name in ``__all__`` that does not exist,
  a broken cross-reference).

The first pages are the README's own sections, read at build time, so the
quickstarts in the reference cannot drift from the README.
"""
from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
import re
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.api_reference")

ROOT = Path(__file__).resolve().parent.parent
#: Packages whose public submodules (no leading underscore) are documented, with the package itself.
PACKAGES = ("dlfunc",)
#: Single modules documented too.
MODULES = ("autograder.checks",)


def api_modules() -> list[str]:
  """``dlfunc`` and its public submodules, then :data:`MODULES`, in a stable order."""
  names = []
  for package in PACKAGES:
    pkg = importlib.import_module(package)
    names.append(package)
    names += sorted(f"{package}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__)
                    if not m.name.startswith("_"))
  return names + list(MODULES)


def public_names(module) -> list[str]:
  """The module's ``__all__`` (names that do not exist are reported and left out).

  A module without ``__all__`` is reported and documents only its docstring.
  """
  names = getattr(module, "__all__", None)
  if names is None:
    own = [n for n, v in vars(module).items()
           if not n.startswith("_") and getattr(v, "__module__", None) == module.__name__]
    if own:
      log.warning("%s has public names %s but no __all__: add `__all__ = [...]` listing what it exports.",
                  module.__name__, ", ".join(sorted(own)))
    return []
  absent = [n for n in names if not hasattr(module, n)]
  if absent:
    log.warning("%s.__all__ names %s, which the module does not define.", module.__name__, ", ".join(absent))
  return [n for n in names if n not in absent]


def _own_docstring(obj) -> str | None:
  doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
  if inspect.isclass(obj) and doc and re.match(rf"{re.escape(obj.__name__)}\(", doc):
    return None  # the signature a dataclass or NamedTuple writes for itself, not documentation
  return doc if doc and doc.strip() else None


def undocumented(module, names) -> list[str]:
  """Public functions and classes of ``module`` without a docstring of their own (data is exempt)."""
  missing = []
  for name in names:
    obj = getattr(module, name)
    if (inspect.isclass(obj) or inspect.isroutine(obj)) and _own_docstring(obj) is None:
      missing.append(name)
  return missing


def module_page(module_name: str) -> str:
  """The Markdown of one reference page: the module's docstring, then one section per public name."""
  module = importlib.import_module(module_name)
  names = public_names(module)
  missing = undocumented(module, names)
  if missing:
    log.warning("%s: public names without a docstring: %s (write one: what it does, its arguments).",
                module_name, ", ".join(missing))
  out = [f"# `{module_name}`\n",
         f"::: {module_name}\n    options:\n      members: false\n      show_root_heading: false\n"]
  for name in names:
    out.append(f"::: {module_name}.{name}\n    options:\n      heading_level: 2\n")
  return "\n".join(out)


def _readme_sections() -> list[tuple[str, str]]:
  """``(title, markdown)`` of the README: the part before the first ``## `` heading, then each ``## `` section."""
  text = (ROOT / "README.md").read_text(encoding="utf-8")
  sections, title, lines, fence = [], "Home", [], False
  for line in text.splitlines():
    if line.lstrip().startswith("```"):
      fence = not fence
    if not fence and line.startswith("## "):
      sections.append((title, "\n".join(lines)))
      title, lines = line[3:].strip(), ["# " + line[3:].strip()]
    else:
      lines.append(line)
  sections.append((title, "\n".join(lines)))
  return sections


def _slug(title: str) -> str:
  return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def _add(files, config, path: str, content: str) -> None:
  from mkdocs.structure.files import File
  files.append(File.generated(config, path, content=content))


def on_files(files, config):
  """Adds the README pages and one reference page per module (generated in memory, nothing is written)."""
  nav = []
  for i, (title, body) in enumerate(_readme_sections()):
    path = "index.md" if i == 0 else f"{_slug(title)}.md"
    _add(files, config, path, body + "\n")
    nav.append({re.sub(r"`", "", title): path})
  reference = []
  for module_name in api_modules():
    path = f"api/{module_name}.md"
    _add(files, config, path, module_page(module_name))
    reference.append({module_name: path})
  config["nav"] = nav + [{"API reference": reference}]
  return files
