"""Chunks measured in the embedded model's own WordPiece tokens (chunking.encoding: minilm-wordpiece)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.clirun import rag, write

from rag.chunking import ChunkSettings, chunk_document, context_text
from rag.documents import Document, Section


def _wordpieces(text: str) -> int:
    from tokenizers import Tokenizer

    from rag.chunk_tokens import TOKENIZER_PATH

    tokenizer = Tokenizer.from_file(str(TOKENIZER_PATH))
    tokenizer.no_truncation()
    return len(tokenizer.encode(text).ids)  # with [CLS] and [SEP], as the model reads it


def _doc() -> Document:
    # Long words split into many WordPieces: 256 cl100k tokens of this run well past 256 WordPieces.
    sentence = "Immunohistochemical characterisation of thrombospondin-1 in glioblastoma microvasculature. "
    text = "Antiangiogenic therapy. " + sentence * 60 + "\n\n" + "Short closing paragraph about outcomes."
    return Document(source="/d.txt", title="Thrombospondin", sections=[Section(text=text, heading=["Results", "Histology"])])


def test_cl100k_chunks_overrun_the_model_and_wordpiece_chunks_fit_with_their_context() -> None:
    doc = _doc()
    old = chunk_document(doc, ChunkSettings(256, 32, "cl100k_base"))
    assert max(_wordpieces(context_text(c.title, c.heading, c.text)) for c in old) > 256  # the model drops a tail
    new = chunk_document(doc, ChunkSettings(254, 32, "minilm-wordpiece"))
    assert all(_wordpieces(context_text(c.title, c.heading, c.text)) <= 256 for c in new)
    assert len(new) > len(old)
    assert all(doc.sections[0].text[c.start : c.end] == c.text for c in new)  # still exact slices
    covered = set()
    for c in new:
        covered.update(range(c.start, c.end))
    text = doc.sections[0].text
    assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())  # nothing left out


def test_the_index_records_the_tokenizer_and_rechunks_when_it_changes(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(docs / "a.md", "# Title\n\n" + "Thrombospondin glioblastoma microvasculature.\n" * 80)
    assert rag("index", str(docs), cwd=tmp_path).code == 0
    meta = json.loads((tmp_path / ".rag" / "chunks.meta.json").read_text())
    assert meta["chunking"]["encoding"] == "cl100k_base" and meta["chunking"]["algorithm"] == "units-v1"
    write(tmp_path / "rag.yaml", "chunking:\n  encoding: minilm-wordpiece\n  max_tokens: 254\n")
    again = rag("index", str(docs), "--json", cwd=tmp_path)
    assert again.code == 0 and "chunking settings changed" in again.err  # a new generation is built beside the old
    meta = json.loads((tmp_path / ".rag" / "chunks.g2.meta.json").read_text())
    assert meta["chunking"] == {"algorithm": "units-v2-context", "encoding": "minilm-wordpiece", "max_tokens": 254, "overlap": 32}
    hits = rag("query", "glioblastoma", "-k", "50", "--json", cwd=tmp_path).json()["hits"]
    assert all(_wordpieces(context_text(h["title"], h["heading"], h["text"])) <= 256 for h in hits)
