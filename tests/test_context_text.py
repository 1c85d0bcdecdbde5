"""One context text: what the indexer embeds and full-text indexes is exactly what a reranker judges."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clirun import rag, write
from rag.chunking import context_text
from test_eval_cli import make_beir


def stored_bodies(root: Path) -> dict[str, str]:
    import lance

    rows = lance.dataset(str(root)).to_table(columns=["title", "heading", "text", "body"]).to_pylist()
    for r in rows:
        assert r["body"] == context_text(r["title"], r["heading"], r["text"])
    return {r["text"]: r["body"] for r in rows}


def test_context_text_keeps_each_part_once() -> None:
    # A title the text starts with is not repeated; the heading path still goes in front.
    assert context_text("Tarot", "Cards", "Tarot decks have 78 cards.") == "Cards\n\nTarot decks have 78 cards."
    assert context_text("Guide", "Guide › Limits", "Files over 20 MB are skipped.") == "Guide › Limits\n\nFiles over 20 MB are skipped."
    assert context_text("Guide", "Limits", "Files over 20 MB are skipped.") == "Guide › Limits\n\nFiles over 20 MB are skipped."
    assert context_text("Guide", "", "# Guide\n\nHello.") == "# Guide\n\nHello."
    assert context_text("", "", "Plain text.") == "Plain text."


def test_ask_sends_the_reranker_the_stored_context_text(tmp_path: Path, fault: Any) -> None:
    write(
        tmp_path / "docs" / "tarot.md",
        "# Tarot\n\n## Cards\n\nTarot decks have 78 cards in two arcana.\n\n## Reading\n\nA reading lays out cards.\n",
    )
    write(tmp_path / "docs" / "notes.txt", "Tarot cards came to Europe in the 15th century.\n")
    write(
        tmp_path / "rag.yaml", f"providers:\n  rr:\n    kind: jina\n    base_url: {fault.url}\n    max_retries: 0\nrerank:\n  model: rr/x\n"
    )
    assert rag("index", "docs", cwd=tmp_path).code == 0
    result = rag("ask", "How many cards does a tarot deck have?", "--json", "--no-cache", cwd=tmp_path)
    assert result.code == 0, result.err
    bodies = stored_bodies(tmp_path / ".rag" / "chunks.lance")
    sent = fault.bodies("/v1/rerank")[0]["documents"]
    assert sent and set(sent) <= set(bodies.values())


def test_eval_sends_the_reranker_the_stored_context_text(tmp_path: Path, fault: Any) -> None:
    folder = make_beir(tmp_path)
    write(
        tmp_path / "rag.yaml",
        f"store:\n  uri: store\nproviders:\n  rr:\n    kind: jina\n    base_url: {fault.url}\nrerank:\n  model: rr/x\n",
    )
    assert rag("eval", str(folder), "--json", cwd=tmp_path).code == 0
    tables = list((tmp_path / "store").glob("*.lance"))
    bodies = stored_bodies(tables[0])
    sent = [d for b in fault.bodies("/v1/rerank") for d in b["documents"]]
    assert sent and set(sent) <= set(bodies.values())
