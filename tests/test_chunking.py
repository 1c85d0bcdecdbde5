"""The chunker: pure, no I/O."""

from __future__ import annotations

import itertools
import random

import pytest

from rag.chunking import ChunkSettings, chunk_document, count
from rag.documents import Document, Section
from rag.loaders import markdown_sections


def _doc(text: str, heading: list[str] | None = None) -> Document:
    return Document("src.md", "Title", [Section(text, heading or [], 0)])


def _prose(n_paragraphs: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda"]
    paras = []
    for _ in range(n_paragraphs):
        sentences = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 25))).capitalize() + "." for _ in range(rng.randint(1, 6))]
        paras.append(" ".join(sentences))
    return "\n\n".join(paras)


def test_chunks_respect_max_tokens_and_are_exact_slices() -> None:
    text = _prose(40)
    doc = _doc(text)
    settings = ChunkSettings(max_tokens=64, overlap=16)
    chunks = chunk_document(doc, settings)
    assert len(chunks) > 5
    for c in chunks:
        assert c.tokens <= 64
        assert text[c.start : c.end] == c.text
        assert c.tokens == count(c.text, "cl100k_base")
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))


def test_every_word_is_covered_and_neighbours_overlap() -> None:
    text = _prose(30, seed=3)
    chunks = chunk_document(_doc(text), ChunkSettings(max_tokens=80, overlap=30))
    covered = [False] * len(text)
    for c in chunks:
        for i in range(c.start, c.end):
            covered[i] = True
    assert all(covered[i] for i, ch in enumerate(text) if not ch.isspace())
    overlapping = sum(1 for a, b in itertools.pairwise(chunks) if b.start < a.end)
    assert overlapping >= len(chunks) // 2


def test_zero_overlap_gives_disjoint_chunks() -> None:
    chunks = chunk_document(_doc(_prose(20)), ChunkSettings(max_tokens=64, overlap=0))
    for a, b in itertools.pairwise(chunks):
        assert b.start >= a.end


def test_one_huge_word_run_is_cut_at_token_windows() -> None:
    text = "x" * 5000  # no paragraph or sentence boundary at all
    chunks = chunk_document(_doc(text), ChunkSettings(max_tokens=50, overlap=10))
    assert len(chunks) > 5
    assert all(c.tokens <= 50 for c in chunks)
    assert chunks[0].start == 0 and chunks[-1].end == len(text)


def test_ids_are_stable_and_change_with_content() -> None:
    settings = ChunkSettings(64, 8)
    a = chunk_document(_doc(_prose(10)), settings)
    b = chunk_document(_doc(_prose(10)), settings)
    assert [c.id for c in a] == [c.id for c in b]
    c = chunk_document(_doc(_prose(10) + "\n\nA new closing paragraph."), settings)
    assert a[0].id == c[0].id
    assert a[-1].id != c[-1].id
    assert len({x.id for x in a}) == len(a)


def test_markdown_splits_at_headings_and_keeps_the_path() -> None:
    text = "# Guide\n\nIntro text.\n\n## Install\n\nRun pip.\n\n### Linux\n\n```\n# not a heading\n```\n\n## Usage\n\nCall it.\n"
    title, sections = markdown_sections(text)
    doc = Document("g.md", title or "", sections)
    chunks = chunk_document(doc, ChunkSettings(256, 32))
    assert title == "Guide"
    assert [c.heading for c in chunks] == ["Guide", "Guide › Install", "Guide › Install › Linux", "Guide › Usage"]
    assert "# not a heading" in chunks[2].text
    for c in chunks:
        assert text[c.start : c.end] == c.text


def test_empty_section_gives_no_chunk() -> None:
    assert chunk_document(_doc("   \n\n  "), ChunkSettings()) == []


@pytest.mark.parametrize("max_tokens", [16, 100, 1000])
def test_unicode_text_round_trips(max_tokens: int) -> None:
    text = "Grüße aus Köln. 日本語のテキストです。 Ελληνικά κείμενα. " * 40
    chunks = chunk_document(_doc(text), ChunkSettings(max_tokens=max_tokens, overlap=max_tokens // 4))
    assert all(text[c.start : c.end] == c.text for c in chunks)
    assert all(c.tokens <= max_tokens for c in chunks)
