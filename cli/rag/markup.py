"""Markup a reader should not see: reStructuredText, MyST and Markdown syntax in text shown from a source. Pure.

Two levels. :func:`inline` turns one run of prose into what a rendered page
shows: roles (``:meth:`~flask.Config.from_object```, MyST ``{func}`x```) become
their text, inline literals become single-backtick code, links become their
text, emphasis and escapes go, HTML entities are decoded. The line helpers
(:func:`directive`, :func:`is_adornment`, :func:`is_hidden`, :func:`fence`)
tell a block parser (:mod:`rag.sentences`) which lines are syntax, not text.
:func:`strip` applies both to a whole block, for text shown as it is.

The rule for a role's target: show the target as written, without its ``~``,
``!`` or leading ``.``, and with ``()`` after a function or method (as Sphinx
renders it). Sphinx would show only the last part of a ``~`` target
(``from_object()``), but the page it is on supplies the rest as a link; an
answer quoting one sentence has no page and no link, so the full dotted path
is what tells the reader where the name lives and what to import.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

# Roles whose text is a name in code (shown in backticks); every other role shows plain text.
CODE_ROLES = {
    "any", "attr", "class", "code", "command", "confval", "const", "data", "envvar", "exc", "file", "func", "kbd",
    "meth", "mod", "obj", "option", "paramref", "program", "samp", "setting", "signal", "reqmeta", "stat", "dir",
    "directive", "role", "type", "member", "macro", "var", "function", "method", "module", "commit", "rev",
}  # fmt: skip
TEXT_ROLES = {"ref", "doc", "term", "abbr", "dfn", "download", "numref", "keyword", "user", "sub", "sup", "emphasis", "strong", "title"}
CALLABLE_ROLES = {"func", "meth", "function", "method"}
ISSUE_ROLES = {"gh", "issue", "ticket", "pr", "pull", "bug"}

# Directives whose body is code, and directives whose body (and arguments) a reader never sees as text.
CODE_DIRECTIVES = {
    "code", "code-block", "sourcecode", "doctest", "testcode", "testoutput", "code-tab", "parsed-literal", "ipython",
    "prompt", "console", "highlight-code",
}  # fmt: skip
HIDDEN_DIRECTIVES = {
    "toctree", "image", "figure", "include", "literalinclude", "highlight", "currentmodule", "raw", "contents", "index",
    "autosummary", "testsetup", "testcleanup", "meta", "tabularcolumns", "mermaid", "graphviz", "digraph", "ifconfig",
    "list-table", "csv-table", "table", "eval-rst", "only", "cog", "changelog", "py:currentmodule", "default-role",
    "moduleauthor", "sectionauthor", "codeauthor", "program", "role", "automodule",
}  # fmt: skip
DESCRIPTIONS = {
    "attribute", "class", "classmethod", "command", "confval", "data", "decorator", "describe", "envvar", "exception",
    "function", "method", "module", "object", "option", "property", "reqmeta", "setting", "signal", "staticmethod", "stat",
}  # fmt: skip
# Admonitions: their arguments are text too (".. note:: Be careful."), not a name.
ADMONITIONS = {
    "note", "warning", "tip", "important", "caution", "attention", "danger", "error", "hint", "admonition", "seealso",
    "topic", "sidebar", "rubric", "deprecated", "versionadded", "versionchanged", "version-added", "version-changed",
    "version-deprecated", "centered", "change",
}  # fmt: skip


@dataclass(frozen=True)
class Directive:
    indent: int
    name: str  # lower case, without a domain ("py:function" -> "function")
    argument: str  # the rest of the line: a language, a name, or an admonition's text

    @property
    def describes(self) -> bool:
        """It documents the object its argument names (``.. setting:: DOWNLOAD_DELAY``, ``.. autoclass:: x.Y``)."""
        return self.name in DESCRIPTIONS or self.name.startswith("auto")

    @property
    def body(self) -> str:
        """What its indented body is: "code", "hidden" or "text"."""
        if self.name in CODE_DIRECTIVES:
            return "code"
        return "hidden" if self.name in HIDDEN_DIRECTIVES else "text"


_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+(?:[\w-]+:)?([\w-]+)::(?:\s+(.*))?$")
_EXPLICIT = re.compile(r"^\s*(?:\.\.(\s|$)|__ \S+$)")  # comments, link targets (also "__ url"), footnotes, substitutions
_ADORNMENT = re.compile(r"^\s*([=\-`:'\"~^_*+#<>.])\1{2,}\s*$")
_TABLE_BORDER = re.compile(r"^\s*=+(?:\s+=+)+\s*$")
_MYST_LABEL = re.compile(r"^\s*\([\w./:-]+\)=\s*$")
_MD_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s+\S+")
_HTML_COMMENT = re.compile(r"^\s*<!--.*-->\s*$")
_FIELD = re.compile(r"^\s*:[\w -]+:(\s|$)")  # a directive's option line (":caption: x", ":linenos:")
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,}|:{3,})\s*(\{[\w:-]+\})?\s*(.*?)\s*$")


def directive(line: str) -> Directive | None:
    """``.. code-block:: python`` -> Directive(0, "code-block", "python"); any other line -> None."""
    match = _DIRECTIVE.match(line)
    if match is None:
        return None
    return Directive(len(match.group(1).expandtabs()), match.group(2).lower(), (match.group(3) or "").strip())


@dataclass(frozen=True)
class Fence:
    marker: str  # "```", "~~~~" or ":::": the closing fence repeats its character at least as often
    directive: Directive | None  # MyST: ```{note} or :::{warning}
    language: str

    def closes(self, line: str) -> bool:
        stripped = line.strip()
        return len(stripped) >= len(self.marker) and set(stripped) == {self.marker[0]}


def fence(line: str) -> Fence | None:
    """A Markdown or MyST fence line (opening or closing), or None."""
    match = _FENCE.match(line)
    if match is None:
        return None
    marker, name, rest = match.group(2), match.group(3), match.group(4) or ""
    if marker[0] == "`" and "`" in rest:
        return None  # ```code``` inline, not a fence
    if marker[0] == ":" and name is None:
        return Fence(marker, None, "") if not rest else None  # ":::" closes; ":::text" is not a fence
    found = Directive(len(match.group(1)), name.strip("{}").split(":")[-1].lower(), rest) if name else None
    return Fence(marker, found, "" if name else rest.split(None, 1)[0] if rest else "")


def is_adornment(line: str) -> bool:
    """A reST section underline or overline (``=====``), or a Markdown rule (``---``)."""
    return _ADORNMENT.match(line) is not None


def is_table_border(line: str) -> bool:
    """The border of a reST simple table (``=====  =====``)."""
    return _TABLE_BORDER.match(line) is not None


def is_hidden(line: str) -> bool:
    """A line that is syntax only: a reST comment, link target or footnote, a MyST label, a Markdown link definition."""
    if _DIRECTIVE.match(line):
        return False
    return any(p.match(line) for p in (_EXPLICIT, _MYST_LABEL, _MD_REFERENCE, _HTML_COMMENT))


def is_option(line: str) -> bool:
    """A directive's option (``:caption: Example``), which follows the directive line."""
    return _FIELD.match(line) is not None


def literal_lead(text: str) -> tuple[str, bool]:
    """A paragraph ending in reST's ``::`` -> (the paragraph as shown, True): ``"Example::"`` -> ``"Example:"``,
    ``"Run this ::"`` -> ``"Run this"``, ``"::"`` -> ``""``. Other text -> (text, False)."""
    stripped = text.rstrip()
    if not stripped.endswith("::") or stripped.endswith(":::"):
        return text, False
    body = stripped[:-2]
    if not body.strip() or body.endswith((" ", "\t")):
        return body.rstrip(), True
    return body + ":", True


# --------------------------------------------------------------------------- inline

# Left to right, so a role inside a code span ("`{hostname}-{hash}`") is code, and code inside a role is the role's.
_TOKEN = re.compile(
    r"(?::(?:[\w-]+:)?(?P<role>[\w-]+):|\{(?:[\w-]+:)?(?P<myst>[\w-]+)\})`(?P<content>[^`]+)`(?!_)"
    r"|``(?P<literal>.+?)``"
    r"|(?<!`)`(?!`)(?P<span>[^`]+?)`(?!`)(?P<link>__?(?![\w]))?"
)
_OPEN_ROLE = re.compile(r"(?<![\w`]):[\w-]+(?::[\w-]+)?:`|(?<![\w`])\{[\w:-]+\}`(?=[\w~!])")
_IDENTIFIER = re.compile(r"^[\w.:/()\[\]*-]+$")
_TITLED = re.compile(r"^(.*?)\s*<([^<>]+)>$")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]*)\]\(\s*(?:[^()\s]|\([^()]*\))*(?:\s+\"[^\"]*\")?\s*\)")
_MD_REF_LINK = re.compile(r"\[([^\]]+)\]\[[^\]]*\]")
_AUTOLINK = re.compile(r"<((?:https?|mailto|ftp):[^>\s]+)>")
_FOOTNOTE = re.compile(r"\s?\[(?:#[\w-]*|\*|\d+|[A-Z][\w-]*)\]_")
_SUBSTITUTION = re.compile(r"(?<![\w|])\|(\w[\w .-]*?\w|\w)\|(?![\w|])")
# "__init__" and "_private_" are names, not emphasis: underscores emphasise only what is not an identifier
_STRONG = re.compile(r"(?<![\w*])\*\*(?=\S)(.+?)(?<=\S)\*\*(?![\w*])|(?<![\w_])__(?=\S)([^_]*?\s[^_]*?)(?<=\S)__(?![\w_])")
_EMPHASIS = re.compile(r"(?<![\w*\\])\*(?=[^\s*])(.+?)(?<=[^\s*\\])\*(?![\w*])|(?<![\w_\\])_(?=[^\s_])([^_]+?)(?<=[^\s_\\])_(?![\w_])")
_NAMED_REFERENCE = re.compile(r"(?<![\w`/.-])([A-Za-z][\w-]*[A-Za-z0-9])__?(?=[\s.,;:!?)]|$)")
_TAG = re.compile(
    r"</?(?:a|abbr|b|br|code|del|details|div|em|i|img|ins|kbd|mark|p|pre|s|small|span|strong|sub|summary|sup|u)"
    r"(?:\s[^<>]*)?/?>",
    re.IGNORECASE,
)
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|<>~:])")
_ESCAPED_SPACE = re.compile(r"\\ ")
_PERMALINK = re.compile(r"\s*¶")  # Sphinx's HTML puts one after every heading
_SPACES = re.compile(r"(?<=\S)[ \t]{2,}(?=\S)")


def inline(text: str) -> str:
    """One run of prose as a rendered page shows it; code stays in single backticks."""
    parts: list[str] = []
    last = 0
    text = _IMAGE.sub("", text)
    text = _MD_LINK.sub(r"\1", text)  # before code spans: the text of a link is often code ([`x`](url))
    for match in _TOKEN.finditer(text):
        parts.append(_prose(text[last : match.start()]))
        parts.append(_role(match) if match.group("content") is not None else _span(match))
        last = match.end()
    parts.append(_prose(text[last:]))
    return "".join(parts)


def _span(match: re.Match[str]) -> str:
    """``x`` and `x` -> `x`; a reST link reference `text <url>`_ -> text; `EXCLUDE <marshmallow.EXCLUDE>` -> `EXCLUDE`."""
    if match.group("literal") is not None:
        return f"`{match.group('literal')}`"
    content = match.group("span")
    titled = _TITLED.match(content)
    if match.group("link"):
        return titled.group(1) if titled and titled.group(1) else content
    if titled and titled.group(1):  # reST interpreted text with a target
        content = titled.group(1)
    return f"`{content}`" if content.strip() else content


def _prose(text: str) -> str:
    text = _OPEN_ROLE.sub("", text)  # a role whose closing backtick a chunk boundary cut off
    text = _MD_REF_LINK.sub(r"\1", text)
    text = _AUTOLINK.sub(r"\1", text)
    text = _FOOTNOTE.sub("", text)
    text = _TAG.sub("", text)
    text = _SUBSTITUTION.sub(r"\1", text)
    text = _STRONG.sub(lambda m: m.group(1) or m.group(2), text)
    text = _EMPHASIS.sub(lambda m: m.group(1) or m.group(2), text)
    text = _NAMED_REFERENCE.sub(r"\1", text)
    text = _ESCAPED_SPACE.sub("", text)
    text = _PERMALINK.sub("", text)
    text = _SPACES.sub(" ", text)  # where a tag or a footnote was
    return html.unescape(_ESCAPE.sub(r"\1", text))


def _role(match: re.Match[str]) -> str:
    """``:meth:`~flask.Config.from_object``` -> ```flask.Config.from_object()```: see the module docstring."""
    name = (match.group("role") or match.group("myst")).lower()
    content = match.group("content").strip()
    titled = _TITLED.match(content)
    if titled and titled.group(1):
        title, target = titled.group(1), None
    else:
        title, target = None, content.lstrip("~!.")
    if name == "pep":
        return title or f"PEP {target}"
    if name == "rfc":
        return title or f"RFC {target}"
    if name in ISSUE_ROLES:
        return title or f"#{target}"
    if name in TEXT_ROLES:
        return title or _label(str(target), name)
    if name in CODE_ROLES or (title is None and _IDENTIFIER.match(str(target))):  # a project's own role names a thing
        shown = title or str(target)
        if name in CALLABLE_ROLES and title is None and not shown.endswith(")"):
            shown += "()"
        return f"`{shown}`"
    return title or str(target)


def _label(target: str, role: str) -> str:
    """A cross-reference without a title: Sphinx shows the target's title, which only the target knows; the label
    is the closest thing ("topics-settings" -> "topics settings", "/topics/jobs" -> "jobs")."""
    if role == "doc":
        target = target.rstrip("/").rsplit("/", 1)[-1]
    if role == "abbr":
        target = re.sub(r"\s*\(.*\)$", "", target)
    return target.replace("-", " ").replace("_", " ") if role in ("ref", "doc") else target


# --------------------------------------------------------------------------- blocks


def strip(text: str) -> str:
    """A block of source text with its syntax-only lines dropped and each remaining line's inline markup stripped.

    For text shown whole, where there are no sentences to pick (a table, a fallback).
    """
    out: list[str] = []
    for line in text.splitlines():
        if is_adornment(line) or is_hidden(line) or fence(line) is not None:
            continue
        found = directive(line)
        if found is not None:
            if found.name in ADMONITIONS and found.argument:
                out.append(inline(found.argument))
            continue
        shown, _ = literal_lead(line)
        out.append(inline(shown))
    return "\n".join(out)
