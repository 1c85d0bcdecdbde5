"""Hybrid search in batches (rag.hybrid) returns the hits that full rows give, on real LanceDB.

The batch path fuses chunk ids and scores and reads rows only for the hits that survive; a ``--where``
filter sends dense search through Lance, which reads every candidate's row and fuses whole hits
(rag.fusion.fuse_hits). A filter every chunk passes must not change a single hit, rank or key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.clirun import rag, write

import rag as api

TOPICS = ["quokka habitat on islands", "pasta in salted water", "tax returns in April", "ferry timetables", "frogs in a pond"]
QUERIES = [f"{topic} {extra}" for topic in TOPICS for extra in ("", "today", "and more")]  # more than one model slice
EVERY_CHUNK = "ordinal >= 0"


def project(root: Path, aggregate: str) -> Path:
    docs = root / "docs"
    for i in range(24):
        topic, other = TOPICS[i % len(TOPICS)], TOPICS[(i * 3 + 1) % len(TOPICS)]
        write(docs / f"note{i:02d}.md", f"# Note {i}\n\nA note on {topic}, day {i}.\n\n## Aside\n\nAlso {other}, seen {i} times.\n")
    write(
        root / "rag.yaml",
        f"store:\n  uri: store\nchunking:\n  max_tokens: 16\n  overlap: 0\nretrieval:\n  candidates: 6\n  aggregate: {aggregate}\n",
    )
    assert rag("index", str(docs), cwd=root).code == 0
    return root / "rag.yaml"


def shape(hits: list[Any]) -> list[tuple[str, dict[str, int], list[str]]]:
    """What must match exactly: which chunks, in which order, ranked how, with score keys in which order."""
    return [(h.id, h.ranks, list(h.scores)) for h in hits]


@pytest.mark.parametrize("aggregate", ["chunk", "document"])
def test_batch_hits_equal_hits_fused_from_full_rows(tmp_path: Path, aggregate: str) -> None:
    with api.open_index(project(tmp_path, aggregate)) as index:
        batch = index.search_many(QUERIES, top_k=4)
        full_rows = index.search_many(QUERIES, top_k=4, where=EVERY_CHUNK)
        alone = [index.search(q, top_k=4) for q in QUERIES]
    assert all(batch) and len(batch) == len(QUERIES)
    assert [shape(h) for h in batch] == [shape(h) for h in full_rows] == [shape(h) for h in alone]
    found_by_fts_only = [h for hits in batch for h in hits if "fts" in h.ranks and "dense" not in h.ranks]
    assert found_by_fts_only and all("dense" in h.scores for h in found_by_fts_only)  # their cosine is filled in
    for hits, reference in zip(batch, full_rows, strict=True):
        for h, r in zip(hits, reference, strict=True):
            assert (h.source, h.title, h.heading, h.text, h.start, h.end) == (r.source, r.title, r.heading, r.text, r.start, r.end)
            assert h.scores == pytest.approx(r.scores, abs=1e-5)
