"""The blocks of a chunk of Markdown (with MyST), reStructuredText, HTML, PDF or plain text: paragraphs and code. Pure.

A small parser walks the lines. Wrapped lines are joined; headings (ATX,
underlined, or a short line without closing punctuation), tables, comments,
link targets and directives that hold no text are left out, but the last
heading is remembered for the blocks under it; the bodies of admonitions
(``.. note::``, ``:::{note}``) are text; list items are paragraphs of their
own. Code is a literal block after ``::``, a code directive (``..
code-block::``, ```` ```{doctest} ````), a fenced block, or an indented block
that does not read as prose. A one-line command after a paragraph ending in
":" joins it in backticks ("Install it with pip: `pip install .`"); any
other code block records the paragraph that introduces it. Paragraph text
has its inline markup stripped (:mod:`rag.markup`); code is kept as written.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field

from rag import markup

INLINE_CODE_CHARS = 60  # a one-line code block up to this long joins the paragraph that introduces it

_ATX = re.compile(r"^\s{0,3}#{1,6}(\s|$)")
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)]|#\.)\s+")
_TABLE = re.compile(r"^\s*(\||\+[-=+]{3,})")
_LITERAL_LINE = re.compile(r"^\s*``[^`]+``\s*$")
_ROLE_IN_TEXT = re.compile(r"(?<![\w`]):[\w:-]+:`[^`]+`")
_PLAIN = {"", "text", "txt", "none", "plain"}  # fence languages that may hold sentences (canned replies, quotes)
_CODE_LINE = re.compile(r"^\s*(?:def|class|import|from|return|yield|if|for|with|try|except|await|async)\b|\w\(|[=:]\s*$|^\s*[)\]}]|-->|==>")
_WORD = re.compile(r"^[\"'(“‘`]*[A-Za-z][A-Za-z'’-]*[\"')”’`]*[.,;:!?]?$")
_VERSIONED = {
    "versionadded": "New in version", "version-added": "New in version", "versionchanged": "Changed in version",
    "version-changed": "Changed in version", "deprecated": "Deprecated since version",
    "version-deprecated": "Deprecated since version",
}  # fmt: skip


@dataclass
class Block:
    """A paragraph (or list item) as shown, or a code block as written."""

    text: str
    paragraph: int
    code: bool = False
    intro: int | None = None  # code: the index of the paragraph that introduces it (ending in ":"), if any
    heading: str = ""  # the last heading before it in the text, as shown


def parse(text: str) -> list[Block]:
    """The blocks of ``text``, in order."""
    return _Parser().parse(text)


@dataclass
class _Context:
    """An open block: a directive's body, a literal block, a fence, or an indented block still to be judged."""

    indent: int  # a non-blank line indented this much or less closes it (-1: only its closing fence does)
    kind: str  # "code", "hidden", "text" or "indented"
    fence: markup.Fence | None = None
    fresh: bool = True  # no body line yet: directive options (":caption: x") may come first
    body: int = 0  # text: the indentation of its first line
    lines: list[str] = field(default_factory=list)  # code / indented: the raw lines
    fragment: bool = False  # it began before the text did: the rest of a block that chunking cut


class _Parser:
    """Reads lines into blocks; the stack holds the blocks open around the current line."""

    def __init__(self) -> None:
        self.units: list[Block] = []
        self.lines: list[str] = []  # the paragraph being read
        self.indent = 0  # of its first line
        self.item = False  # it is a list item
        self.paragraph = 0
        self.stack: list[_Context] = []
        self.after_text = False  # the last thing seen was a paragraph: a code block after it may be introduced by it
        self.table = False  # inside a reST simple table (between its first and last ===== border)
        self.border = False  # the line before was a table border
        self.heading = ""  # the last heading seen
        self.prose_block = False  # reading an indented block that turned out to be text
        self.started = False  # a non-blank line has been read

    def parse(self, text: str) -> list[Block]:
        lines = [raw.expandtabs() for raw in text.splitlines()]
        if _starts_in_fence(lines):
            self.stack.append(_Context(-1, "code", markup.Fence("```", None, ""), fresh=False, fragment=True))
        for line in lines:
            self.line(line)
        self.flush()
        while self.stack:
            self.close(self.stack.pop())
        return self.units

    def line(self, line: str) -> None:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        top = self.stack[-1] if self.stack else None
        if top is not None and top.fence is not None and top.kind != "text":
            if top.fence.closes(line):
                self.close(self.stack.pop())
            elif not self.option(top, line) and top.kind == "code":
                top.lines.append(line)
            return
        if stripped:
            while self.stack and self.stack[-1].fence is None and self.stack[-1].indent >= indent:
                self.close(self.stack.pop())
        top = self.stack[-1] if self.stack else None
        if top is not None and self.option(top, line):
            return
        if top is not None and top.kind != "text":
            if top.kind != "hidden":
                top.lines.append(line)
            return
        self.text_line(line, stripped, indent)

    def option(self, top: _Context, line: str) -> bool:
        """Skip a directive's options: they come before the first line of its body."""
        if not top.fresh or not line.strip():
            return False
        top.fresh = False
        top.body = len(line) - len(line.lstrip())
        if markup.is_option(line):
            top.fresh = True
            return True
        return False

    def text_line(self, line: str, stripped: str, indent: int) -> None:
        border, self.border = self.border, markup.is_table_border(line)
        if not stripped:
            self.flush()
            self.paragraph += 1
            self.table = self.table and not border  # a border then a blank line ends the table
            return
        first, self.started = not self.started, True
        if self.border or self.table:
            self.flush()
            self.after_text = False
            self.table = True
            return
        fence = markup.fence(line)
        if fence is not None:
            self.flush()
            self.fence(fence, line)
            return
        found = markup.directive(line)
        if found is not None:
            self.flush()
            self.after_text = False
            self.stack.append(_Context(found.indent, found.body))
            self.directive_text(found, found.indent + 3)
            return
        if markup.is_hidden(line):
            self.flush()
            self.after_text = False
            if stripped.startswith(".."):
                self.stack.append(_Context(indent, "hidden", fresh=False))  # a comment's indented lines are the comment too
            return
        if markup.is_adornment(line):
            if self.lines and not self.item:
                self.heading = markup.inline(self.lines.pop())  # the heading this underlines
            self.flush()
            self.after_text = False
            return
        if _ATX.match(line) or _TABLE.match(line):
            self.flush()
            self.after_text = False
            if _ATX.match(line):
                self.heading = markup.inline(_ATX.sub("", line).strip().rstrip("#").strip())
            return
        if not self.lines and not self.prose_block and indent >= self.body_indent() + 4:
            self.stack.append(_Context(indent - 1, "indented", fresh=False, lines=[line], fragment=first))
            return
        if _BULLET.match(line):
            self.flush()
            rest = _BULLET.sub("", line, count=1)
            if markup.is_hidden(rest) or markup.directive(rest) is not None:
                return  # "-   .. _label:": the item's text follows, indented
            self.item = True
            self.start(rest.strip(), indent)
            return
        if self.lines and len(self.lines) == 1 and not self.item and _looks_like_heading(self.lines, 6) and stripped[:1].isupper():
            self.heading = markup.inline(self.lines.pop())  # a heading line glued to its paragraph (PDF text)
        if not self.lines:
            self.item, self.indent = False, indent
        self.lines.append(stripped)

    def fence(self, fence: markup.Fence, line: str) -> None:
        """Open a fenced block, or close the innermost MyST block this fence ends (``:::`` or a ```` ``` ````)."""
        for depth in range(len(self.stack) - 1, -1, -1):
            context = self.stack[depth]
            if context.fence is not None and context.fence.closes(line):
                while len(self.stack) > depth:
                    self.close(self.stack.pop())
                self.after_text = False
                return
        if fence.marker[0] == ":" and fence.directive is None:
            return  # a stray ":::"
        kind = "code" if fence.directive is None else fence.directive.body
        self.stack.append(_Context(-1, kind, fence, fresh=fence.directive is not None))
        self.after_text = self.after_text and kind == "code"
        if fence.directive is not None:
            self.directive_text(fence.directive, 0)

    def directive_text(self, found: markup.Directive, indent: int) -> None:
        """What a directive's arguments show: an admonition's first words, a version note, or the name it documents."""
        if found.body != "text" or not found.argument:
            return
        if found.name in _VERSIONED:
            version, _, text = found.argument.partition(" ")
            self.start(f"{_VERSIONED[found.name]} {version}" + (f": {text}" if text else "."), indent)
        elif found.name in markup.ADMONITIONS:
            self.start(found.argument, indent)
        elif found.describes:
            self.heading = f"`{found.argument}`"  # ".. setting:: DOWNLOAD_DELAY": what its body describes

    def body_indent(self) -> int:
        """Where text starts in the open block: an indented code block (Markdown) is indented 4 more than that."""
        top = self.stack[-1] if self.stack else None
        return top.body if top is not None and top.fence is None else 0

    def start(self, text: str, indent: int) -> None:
        self.lines.append(text)
        self.indent = indent

    def flush(self) -> None:
        """End the paragraph being read; a paragraph ending in "::" opens a literal block."""
        if not self.lines:
            return
        if not self.item and _code_tail(self.lines):
            self.lines.clear()  # code without its indentation: cut at the chunk's start, or from HTML's <pre>
        elif self.item or not _looks_like_heading(self.lines):
            joined, literal = markup.literal_lead(_join(self.lines))
            text = markup.inline(joined)
            if text:
                self.units.append(Block(text, self.paragraph, heading=self.heading))
                self.after_text = True
            if literal:
                self.stack.append(_Context(self.indent, "code", fresh=False))
        else:
            self.heading = markup.inline(self.lines[0])
            self.after_text = False
        self.lines.clear()
        self.item = False

    def close(self, context: _Context) -> None:
        if context.kind not in ("code", "indented"):
            return
        plain = context.fence is not None and context.fence.directive is None and context.fence.language in _PLAIN
        if _looks_like_code(context.lines) if context.kind == "indented" else not (plain and _prose(context.lines)):
            self.code(context.lines, context.fragment)
        else:  # a block of sentences, indented or fenced as ```text
            self.prose_block = True  # read as text, with its indentation: it may hold a "::" block of its own
            for line in context.lines:
                self.line(line)
            self.prose_block = False

    def code(self, lines: list[str], fragment: bool = False) -> None:
        """A finished code block: joined to its one-line introduction, or a piece of its own after it.

        The rest of a block that began before the text did is left out: it is a tail without its beginning.
        """
        body = textwrap.dedent("\n".join(lines)).strip("\n")
        if not body.strip() or fragment:
            self.paragraph += 1
            self.after_text = False
            return
        if "\n" not in body and _LITERAL_LINE.match(body):
            body = body.strip()[2:-2]  # a reST block quote holding one ``literal``
        last = self.units[-1] if self.units and self.after_text and not self.units[-1].code else None
        introduced = last is not None and last.text.endswith(":")
        if last is not None and introduced and "\n" not in body and len(body.strip()) <= INLINE_CODE_CHARS:
            last.text = f"{last.text} `{body.strip()}`"
            return
        intro = len(self.units) - 1 if last is not None and introduced else None
        self.units.append(Block(body, self.paragraph, code=True, intro=intro, heading=self.heading))
        self.paragraph += 1  # what follows a code block is a new paragraph, whatever blank lines the block held
        self.after_text = False


def _code_tail(lines: list[str]) -> bool:
    """A paragraph that is code with its indentation lost (cut at a chunk's start, or HTML's <pre>), not prose:
    code keywords or calls, few plain words, and no sentence's closing punctuation."""
    words = " ".join(lines).split()
    plain = sum(_WORD.match(w) is not None for w in words) / max(1, len(words))
    closed = lines[-1].rstrip().endswith((".", "!", "?", ":", ";"))
    return any(_CODE_LINE.search(line) for line in lines) and (plain < 0.4 or (plain < 0.75 and not closed))


def _starts_in_fence(lines: list[str]) -> bool:
    """The text begins inside a fenced code block (chunking cut it): its first fence closes one.

    Read so, every later opening fence may carry a language and no closing one does; and the first fence
    follows lines of code directly, where an opening fence usually follows a blank line or a sentence.
    """
    fences = [(i, f) for i, f in ((i, markup.fence(line)) for i, line in enumerate(lines)) if f is not None and f.marker[0] != ":"]
    if not fences or any(f.language or f.directive for f in (f for _, f in fences[::2])):
        return False
    first = fences[0][0]
    if first == 0 or not lines[first - 1].strip():
        return False
    tail = [line for line in lines[:first] if line.strip()][-3:]
    return _code_tail(tail)


def _prose(lines: list[str]) -> bool:
    """Lines of sentences: long lines of plain words ending in full stops, not code or program output."""
    text = [line for line in lines if line.strip()]
    return bool(text) and not _looks_like_code(text) and not _CODE_LINE.search("\n".join(text))


def _looks_like_code(lines: list[str]) -> bool:
    """An indented block that is not a paragraph of words (reST block quotes, list continuations)."""
    words = " ".join(lines).split()
    if not words:
        return False
    first = lines[0].strip() if lines else ""
    if first.startswith(("$ ", ">>> ", "#!", "{", "[", "<", "@", "//", "# ")):
        return True
    if (_BULLET.match(first) and not first.startswith("-- ")) or _ROLE_IN_TEXT.search(" ".join(lines)):
        return False  # a list, or text with roles: code has neither
    plain = sum(1 for w in words if _WORD.match(w))
    return len(words) < 4 or plain < 0.8 * len(words) or not " ".join(words).endswith((".", ":", "!", "?"))


def _looks_like_heading(lines: list[str], words: int = 10) -> bool:
    """One short line without closing punctuation: a heading from HTML or PDF text, not a sentence."""
    return len(lines) == 1 and len(lines[0].split()) <= words and not lines[0].rstrip("\"')]`*").endswith((".", "!", "?", ":", ";", "…"))


def _join(lines: list[str]) -> str:
    text = lines[0]
    for line in lines[1:]:
        hyphenated = text.endswith("-") and len(text) > 1 and text[-2].isalpha() and line[:1].islower()
        text = text + line if hyphenated else f"{text} {line}"
    return text.strip()
