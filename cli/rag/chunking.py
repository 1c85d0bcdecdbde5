"""Split documents into token-bounded chunks. Pure: no I/O.

Within each section (a heading's scope) the text is cut into units —
paragraphs, then sentences for paragraphs that are too long, then token
windows for sentences that are still too long — and units are packed
greedily up to ``max_tokens``. A new chunk starts with the trailing units of
the previous one, up to ``overlap`` tokens, so a fact on a boundary is whole
in at least one chunk. Chunk text is always an exact slice of the document.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from rag.chunk_tokens import counter, is_model_tokenizer
from rag.documents import Chunk, Document, Section

HEADING_SEP = " › "
_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE = re.compile(r"(?<=[.!?。])\s+(?=\S)")


@dataclass(frozen=True)
class ChunkSettings:
    max_tokens: int = 256
    overlap: int = 32
    encoding: str = "cl100k_base"

    def as_dict(self) -> dict[str, int | str]:
        # v2: chunks in an embedding model's tokens keep room for their title and heading path (rag.chunk_tokens).
        algorithm = "units-v2-context" if is_model_tokenizer(self.encoding) else "units-v1"
        return {"max_tokens": self.max_tokens, "overlap": self.overlap, "encoding": self.encoding, "algorithm": algorithm}


@dataclass
class _Unit:
    start: int  # offsets into the section text
    end: int
    tokens: int


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


def chunk_id(source: str, ordinal: int, content_sha: str) -> str:
    return hashlib.sha256(f"{source}\x00{ordinal}\x00{content_sha}".encode("utf-8", errors="surrogatepass")).hexdigest()[:32]


def chunk_document(doc: Document, settings: ChunkSettings) -> list[Chunk]:
    chunks: list[Chunk] = []
    for section in doc.sections:
        for start, end in _pack(section.text, _room(doc, section, settings)):
            text = section.text[start:end]
            content_sha = sha256(text)
            ordinal = len(chunks)
            chunks.append(
                Chunk(
                    id=chunk_id(doc.source, ordinal, content_sha),
                    source=doc.source,
                    title=doc.title,
                    heading=HEADING_SEP.join(section.heading),
                    text=text,
                    start=section.offset + start,
                    end=section.offset + end,
                    tokens=count(text, settings.encoding),
                    ordinal=ordinal,
                    sha256=content_sha,
                )
            )
    return chunks


def context_text(title: str, heading: str, text: str) -> str:
    """A chunk as models see it: its text with the title and heading path in front.

    What the indexer embeds and full-text indexes, and what a reranker judges:
    one function, so the two never drift. Headings carry meaning the text often
    lacks ("Installation", "Limits"); a part the text already starts with, or a
    title the heading path already starts with, is not repeated.
    """
    parts = [heading] if heading.startswith(title) else [title, heading]
    start = text.lstrip("#= \t")
    context = [p for p in parts if p and not start.startswith(p)]
    return (HEADING_SEP.join(context) + "\n\n" + text) if context else text


def count(text: str, encoding_name: str) -> int:
    return counter(encoding_name).count(text)


def _room(doc: Document, section: Section, s: ChunkSettings) -> ChunkSettings:
    """Settings for one section's text: in a model's own tokens, less the title and heading it is embedded with."""
    if not is_model_tokenizer(s.encoding):
        return s
    prefix = context_text(doc.title, HEADING_SEP.join(section.heading), "")
    budget = max(16, s.max_tokens - count(prefix, s.encoding))
    return ChunkSettings(budget, min(s.overlap, budget // 2), s.encoding)


def _pack(text: str, s: ChunkSettings) -> list[tuple[int, int]]:
    units = _units(text, s)
    spans: list[tuple[int, int]] = []
    current: list[_Unit] = []
    size = 0
    for unit in units:
        # +1: the white space joining two units can cost a token of its own ("\n\n").
        if current and size + unit.tokens + 1 > s.max_tokens:
            spans.append((current[0].start, current[-1].end))
            current, size = _tail(current, s.overlap, s.max_tokens - unit.tokens - 1)
        size += unit.tokens + (1 if current else 0)
        current.append(unit)
    if current:
        spans.append((current[0].start, current[-1].end))
    return spans


def _tail(units: list[_Unit], overlap: int, room: int) -> tuple[list[_Unit], int]:
    """Trailing units worth at most ``overlap`` tokens that still leave room for the next unit."""
    budget = min(overlap, room)
    kept: list[_Unit] = []
    size = 0
    for unit in reversed(units):
        if size + unit.tokens + 1 > budget:
            break
        kept.insert(0, unit)
        size += unit.tokens + 1
    return kept, size


def _units(text: str, s: ChunkSettings) -> list[_Unit]:
    out: list[_Unit] = []
    for start, end in _split(text, 0, len(text), _PARAGRAPH):
        n = count(text[start:end], s.encoding)
        if n <= s.max_tokens:
            out.append(_Unit(start, end, n))
            continue
        for s_start, s_end in _split(text, start, end, _SENTENCE):
            m = count(text[s_start:s_end], s.encoding)
            if m <= s.max_tokens:
                out.append(_Unit(s_start, s_end, m))
            else:
                out.extend(_windows(text, s_start, s_end, s))
    return out


def _split(text: str, start: int, end: int, pattern: re.Pattern[str]) -> list[tuple[int, int]]:
    """Non-blank pieces of text[start:end] between matches, trimmed of surrounding white space."""
    pieces: list[tuple[int, int]] = []
    pos = start
    for match in pattern.finditer(text, start, end):
        pieces.append((pos, match.start()))
        pos = match.end()
    pieces.append((pos, end))
    trimmed = []
    for a, b in pieces:
        piece = text[a:b]
        stripped = piece.strip()
        if stripped:
            lead = len(piece) - len(piece.lstrip())
            trimmed.append((a + lead, a + lead + len(stripped)))
    return trimmed


def _windows(text: str, start: int, end: int, s: ChunkSettings) -> list[_Unit]:
    """Cut an over-long run of text at token boundaries (no overlap inside: packing adds it)."""
    offsets = counter(s.encoding).starts(text[start:end])
    step = max(1, s.max_tokens - s.overlap)
    units = []
    for i in range(0, len(offsets), step):
        j = min(i + step, len(offsets))
        a = start + offsets[i]
        b = start + offsets[j] if j < len(offsets) else end
        if b > a:
            units.append(_Unit(a, b, j - i))
    return units


def section_of(doc: Document, offset: int) -> Section | None:
    for sec in doc.sections:
        if sec.offset <= offset < sec.offset + len(sec.text):
            return sec
    return None
