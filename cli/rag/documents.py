"""The data that flows through the pipeline: documents, sections, chunks, hits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Section:
    """A run of text under one heading path, at ``offset`` chars into the document."""

    text: str
    heading: list[str] = field(default_factory=list)
    offset: int = 0


@dataclass
class Document:
    """One indexable unit: a file, or a record of a dataset (BEIR corpus line).

    ``source`` is the key that incremental indexing and deletion work on: an
    absolute path for files, a document id for datasets.
    """

    source: str
    title: str
    sections: list[Section]
    mtime: float = 0.0
    size: int = 0
    sha256: str = ""
    kind: str = "text"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "\n\n".join(s.text for s in self.sections)


@dataclass
class Chunk:
    id: str
    source: str
    title: str
    heading: str  # heading path joined with " › "
    text: str
    start: int  # char offsets into the document's text
    end: int
    tokens: int
    ordinal: int
    sha256: str


@dataclass
class Hit:
    """A retrieved chunk. ``ranks``/``scores`` hold each retriever's view (dense, fts, rerank)."""

    id: str
    source: str
    title: str
    heading: str
    text: str
    score: float
    start: int = 0
    end: int = 0
    ordinal: int = 0
    ranks: dict[str, int] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "title": self.title,
            "heading": self.heading,
            "text": self.text,
            "score": round(self.score, 6),
            "start": self.start,
            "end": self.end,
            "ordinal": self.ordinal,
            "ranks": self.ranks,
            "scores": {k: round(v, 6) for k, v in self.scores.items()},
        }
