"""Turn a file into a :class:`Document`: text plus heading-scoped sections.

One loader per format: Markdown (split at headings), HTML (text and
headings), reStructuredText (underlined headings), PDF (pypdf, a section per
page), source code and plain text. Text that is not UTF-8 is decoded with a
fallback instead of being dropped; the encoding used is kept in ``meta``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

from rag.documents import Document, Section
from rag.text import decode

MARKDOWN = {".md", ".markdown", ".mdx", ".mdown"}
HTML = {".html", ".htm", ".xhtml"}
RST = {".rst", ".rest"}
PDF = {".pdf"}
CODE = {
    ".py",
    ".js",
    ".ts",
    ".tsx",
    ".jsx",
    ".go",
    ".rs",
    ".java",
    ".kt",
    ".c",
    ".h",
    ".cc",
    ".cpp",
    ".hpp",
    ".cs",
    ".rb",
    ".php",
    ".swift",
    ".scala",
    ".sh",
    ".bash",
    ".sql",
    ".r",
    ".lua",
    ".pl",
    ".toml",
    ".yaml",
    ".yml",
    ".json",
    ".ini",
    ".cfg",
}


class LoadError(Exception):
    """The file cannot be turned into text; the indexer skips it with this reason."""


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load(path: Path, data: bytes | None = None) -> Document:
    data = path.read_bytes() if data is None else data
    suffix = path.suffix.lower()
    loader: Callable[[Path, bytes], Document]
    if suffix in PDF:
        loader = load_pdf
    elif suffix in MARKDOWN:
        loader = _text_loader("markdown", markdown_sections)
    elif suffix in HTML:
        loader = load_html
    elif suffix in RST:
        loader = _text_loader("rst", rst_sections)
    elif suffix in CODE:
        loader = _text_loader("code", plain_sections)
    else:
        loader = _text_loader("text", plain_sections)
    doc = loader(path, data)
    doc.sha256 = file_sha256(data)
    doc.size = len(data)
    return doc


def _text_loader(kind: str, split: Callable[[str], tuple[str | None, list[Section]]]) -> Callable[[Path, bytes], Document]:
    def loader(path: Path, data: bytes) -> Document:
        text, encoding = decode(data)
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        title, sections = split(text)
        return Document(str(path), title or path.stem, sections, kind=kind, meta={"encoding": encoding})

    return loader


def plain_sections(text: str) -> tuple[str | None, list[Section]]:
    return None, [Section(text, [], 0)] if text.strip() else []


# --------------------------------------------------------------------------- markdown

_ATX = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_FRONT_TITLE = re.compile(r"^title:\s*[\"']?(.+?)[\"']?\s*$", re.MULTILINE)


def markdown_sections(text: str) -> tuple[str | None, list[Section]]:
    """Split at ATX headings (not inside fenced code). Each section keeps its heading line."""
    title: str | None = None
    body_start = 0
    if text.startswith("---\n"):
        end = text.find("\n---", 4)
        if end != -1:
            front = text[4:end]
            m = _FRONT_TITLE.search(front)
            title = m.group(1) if m else None
            body_start = end + 4
    path: list[tuple[int, str]] = []
    sections: list[Section] = []
    start, heading = body_start, [h for _, h in path]
    in_fence = False
    offset = 0
    for line in text.splitlines(keepends=True):
        line_start, offset = offset, offset + len(line)
        if line_start < body_start:
            continue
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _ATX.match(line.rstrip("\n"))
        if not match:
            continue
        sections.append(Section(text[start:line_start], heading, start))
        level, name = len(match.group(1)), match.group(2).strip()
        if title is None and level == 1:
            title = name
        path = [(lv, h) for lv, h in path if lv < level] + [(level, name)]
        start, heading = line_start, [h for _, h in path]
    sections.append(Section(text[start:], heading, start))
    return title, _merge_empty(sections)


def _merge_empty(sections: list[Section]) -> list[Section]:
    """Drop blank sections; a heading with no body joins the section after it."""
    out: list[Section] = []
    pending: Section | None = None
    for sec in sections:
        if not sec.text.strip():
            continue
        body = sec.text.split("\n", 1)[1] if "\n" in sec.text else ""
        if pending is not None:
            sec = Section(pending.text + sec.text, sec.heading, pending.offset)
            pending = None
        if sec.heading and not body.strip():
            pending = sec
            continue
        out.append(sec)
    if pending is not None:
        out.append(pending)
    return out


# --------------------------------------------------------------------------- reStructuredText

_RST_ADORN = re.compile(r"^([=\-`:'\"~^_*+#<>.])\1{2,}\s*$")


def rst_sections(text: str) -> tuple[str | None, list[Section]]:
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    levels: list[str] = []
    path: list[tuple[int, str]] = []
    sections: list[Section] = []
    title: str | None = None
    start, heading = 0, list[str]()
    i = 0
    while i < len(lines) - 1:
        name, under = lines[i].strip(), lines[i + 1].rstrip("\n")
        overline = i > 0 and _RST_ADORN.match(lines[i - 1].rstrip("\n")) is not None
        if name and not _RST_ADORN.match(name) and _RST_ADORN.match(under) and len(under.strip()) >= len(name):
            style = under[0] + ("o" if overline else "")
            if style not in levels:
                levels.append(style)
            level = levels.index(style)
            cut = starts[i - 1] if overline else starts[i]
            sections.append(Section(text[start:cut], heading, start))
            title = title or name
            path = [(lv, h) for lv, h in path if lv < level] + [(level, name)]
            start, heading = cut, [h for _, h in path]
            i += 2
            continue
        i += 1
    sections.append(Section(text[start:], heading, start))
    return title, _merge_empty(sections)


# --------------------------------------------------------------------------- HTML


class _HTMLText(HTMLParser):
    SKIP = {"script", "style", "noscript", "template", "svg", "head"}
    BLOCK = {"p", "div", "li", "tr", "br", "section", "article", "pre", "blockquote", "table", "ul", "ol", "dd", "dt"}
    HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.sections: list[tuple[list[str], list[str]]] = [([], [])]
        self.path: list[tuple[int, str]] = []
        self._skip = 0
        self._in_title = False
        self._in_link = False
        self._heading: tuple[int, list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag == "a" and "headerlink" in (dict(attrs).get("class") or "").split():
            self._skip += 1  # Sphinx's "#"/"¶" permalink after each heading: not part of the heading's name
            self._in_link = True
        elif tag in self.SKIP:
            self._skip += 1
        elif tag in self.HEADINGS:
            self._heading = (self.HEADINGS[tag], [])
        elif tag in self.BLOCK:
            self.sections[-1][1].append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag == "a" and self._in_link:
            self._skip, self._in_link = max(0, self._skip - 1), False
        elif tag in self.SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self.HEADINGS and self._heading is not None:
            level, parts = self._heading
            name = " ".join("".join(parts).split())
            self._heading = None
            if name:
                self.path = [(lv, h) for lv, h in self.path if lv < level] + [(level, name)]
                self.sections.append(([h for _, h in self.path], [name, "\n"]))
        elif tag in self.BLOCK:
            self.sections[-1][1].append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif self._skip:
            return
        elif self._heading is not None:
            self._heading[1].append(data)
        else:
            self.sections[-1][1].append(data)


def load_html(path: Path, data: bytes) -> Document:
    text, encoding = decode(data)
    parser = _HTMLText()
    parser.feed(text)
    parser.close()
    sections: list[Section] = []
    offset = 0
    for heading, parts in parser.sections:
        body = re.sub(r"[ \t]+", " ", "".join(parts))
        body = re.sub(r"\n\s*\n\s*", "\n\n", body).strip()
        if not body:
            continue
        sections.append(Section(body, heading, offset))
        offset += len(body) + 2
    title = " ".join(parser.title.split()) or next((s.heading[0] for s in sections if s.heading), path.stem)
    return Document(str(path), title, _merge_empty(sections), kind="html", meta={"encoding": encoding})


# --------------------------------------------------------------------------- PDF


def load_pdf(path: Path, data: bytes) -> Document:
    import io

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                ok = reader.decrypt("")
            except Exception as exc:
                raise LoadError("encrypted PDF (cannot decrypt without a password)") from exc
            if not ok:
                raise LoadError("encrypted PDF (cannot decrypt without a password)")
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
        sections: list[Section] = []
        offset = 0
        for number, page in enumerate(reader.pages, start=1):
            text = (page.extract_text() or "").strip()
            if text:
                sections.append(Section(text, [f"page {number}"], offset))
                offset += len(text) + 2
    except LoadError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, OSError, IndexError, RecursionError) as exc:
        raise LoadError(f"corrupt or unreadable PDF ({type(exc).__name__}: {str(exc)[:80]})") from exc
    if not sections:
        raise LoadError("PDF has no extractable text (scanned images need OCR first)")
    return Document(str(path), meta_title.strip() or path.stem, sections, kind="pdf", meta={"pages": len(reader.pages)})
