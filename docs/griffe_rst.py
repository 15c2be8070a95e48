"""A griffe extension: the reST that dlfunc's docstrings use, as the Markdown mkdocstrings renders.

The docstrings follow Google style with reST inside (``Example::`` literal
blocks, bare ``>>>`` doctests, ``.. math::``/``.. warning::`` directives,
``:func:`name``` roles), which reads well in ``help()`` and in the source. For
the reference they become fenced code blocks, admonitions and code spans; the
docstrings themselves are not changed.
"""
from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|data|mod|attr|obj|exc|math|const|term|ref):`~?([^`]+)`")
_DIRECTIVE = re.compile(r"\.\. ([\w-]+)::\s*(.*)$")
_ADMONITIONS = {"note", "warning", "tip", "important", "caution", "danger", "seealso", "hint", "attention"}


def _indent(line: str) -> int:
  return len(line) - len(line.lstrip())


def _block(lines: list[str], start: int, base: int) -> tuple[list[str], int]:
  """The lines after ``start`` indented deeper than ``base`` (blank lines included), and the index after them."""
  i, block = start, []
  while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > base):
    block.append(lines[i])
    i += 1
  while block and not block[-1].strip():
    block.pop()
    i -= 1
  body = [b for b in block if b.strip()]
  cut = min((_indent(b) for b in body), default=0)
  return [b[cut:] for b in block], i


def _fence(pad: str, lang: str, block: list[str]) -> list[str]:
  return [pad + "```" + lang] + [pad + b if b else "" for b in block] + [pad + "```"]


def to_markdown(text: str) -> str:
  """Converts the reST constructs above to Markdown; anything else is kept."""
  lines, out, i = text.splitlines(), [], 0
  while i < len(lines):
    line, stripped = lines[i], lines[i].strip()
    pad = line[:_indent(line)]
    directive = _DIRECTIVE.match(stripped)
    if directive:
      block, i = _block(lines, i + 1, _indent(line))
      kind, arg = directive.group(1), directive.group(2)
      if kind in _ADMONITIONS:
        out += [f"{pad}!!! {'note' if kind == 'seealso' else kind}", ""] + [pad + "    " + _ROLE.sub(r"`\1`", b)
                                                                           if b else "" for b in block]
      else:  # math, code-block, ...: shown as written
        out += _fence(pad, "python" if kind in ("code-block", "code") else "text", ([arg] if arg else []) + block)
      continue
    if stripped.endswith("::") and not stripped.startswith(".."):
      head = line.rstrip()[:-1]
      if stripped != "::":
        out.append(_ROLE.sub(r"`\1`", head))
      block, i = _block(lines, i + 1, _indent(line))
      while block and not block[0].strip():
        block.pop(0)
      out += [""] + _fence(pad, "python", block)
      continue
    if stripped.startswith(">>>"):
      start = i
      while i < len(lines) and lines[i].strip() and _indent(lines[i]) >= len(pad):
        i += 1
      out += _fence(pad, "python", [x[len(pad):] for x in lines[start:i]])
      continue
    out.append(_ROLE.sub(r"`\1`", line))
    i += 1
  return "\n".join(out)


class ReSTToMarkdown(griffe.Extension):
  """Rewrites every loaded docstring with :func:`to_markdown`."""

  def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:  # noqa: ARG002 - griffe's hook signature
    if obj.docstring is not None:
      obj.docstring.value = to_markdown(obj.docstring.value)
