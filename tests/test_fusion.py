"""Hybrid fusion (rag.fusion, retrieval.fusion / weights / aggregate): pure rules, then end to end on real LanceDB.

The end-to-end tests recompute the fused ranking on their own, with the
statistics module, from what ``rag query --mode dense`` and ``--mode fts``
return, and compare it with what ``rag query`` (hybrid) returns.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
from tests.clirun import rag, write

QUERY = "quokka habitat on islands"


def corpus(root: Path) -> Path:
    docs = root / "docs"
    write(docs / "both.md", "# Quokka\n\nThe quokka habitat is scrub on small islands off Western Australia.\n")
    write(docs / "dense_only.md", "# Marsupials\n\nSmall wallabies live in coastal scrubland and on offshore isles.\n")
    write(docs / "fts_only.md", "# Ferries\n\nFerry timetables to the islands; quokka selfies are popular with tourists.\n")
    write(docs / "habitat.md", "# Gardening\n\nA pond gives frogs a habitat in the garden.\n")
    write(docs / "cooking.md", "# Pasta\n\nBoil pasta in salted water for ten minutes.\n")
    write(docs / "tax.md", "# Taxes\n\nFile your tax return before the deadline in April.\n")
    write(root / "rag.yaml", "retrieval:\n  candidates: 3\n")
    return docs


def _zscores(scores: list[float]) -> list[float]:
    mean, spread = statistics.fmean(scores), statistics.pstdev(scores)
    return [(s - mean) / spread for s in scores]


def expected_zscore(dense: list[dict], fts: list[dict], weights: dict[str, float]) -> list[tuple[str, float]]:
    """The z-score fusion of two hit lists, written out independently of rag.fusion."""
    z = {
        "dense": dict(zip([h["id"] for h in dense], _zscores([h["score"] for h in dense]), strict=True)),
        "fts": dict(zip([h["id"] for h in fts], _zscores([h["score"] for h in fts]), strict=True)),
    }
    ids = {h["id"] for h in dense + fts}
    total = sum(weights.values())
    fused = {i: sum(w * z[n].get(i, min(z[n].values())) for n, w in weights.items()) / total for i in ids}
    return sorted(fused.items(), key=lambda kv: -kv[1])


def _lists(tmp_path: Path) -> tuple[list[dict], list[dict]]:
    dense = rag("query", QUERY, "--mode", "dense", "-k", "10", "--json", cwd=tmp_path).json()["hits"]
    fts = rag("query", QUERY, "--mode", "fts", "-k", "10", "--json", cwd=tmp_path).json()["hits"]
    return dense, fts


def test_zscore_fusion_matches_an_independent_computation_end_to_end(tmp_path: Path) -> None:
    docs = corpus(tmp_path)
    assert rag("index", str(docs), cwd=tmp_path).code == 0
    dense, fts = _lists(tmp_path)
    hybrid = rag("query", QUERY, "-k", "10", "--json", cwd=tmp_path).json()["hits"]
    expected = expected_zscore(dense, fts, {"dense": 1.0, "fts": 1.0})
    assert [h["id"] for h in hybrid] == [i for i, _ in expected]
    assert [h["score"] for h in hybrid] == pytest.approx([s for _, s in expected], abs=1e-5)
    # A passage both retrievers found comes first, above those only one of them found.
    found_by_both = {h["id"] for h in dense} & {h["id"] for h in fts}
    assert found_by_both and hybrid[0]["id"] in found_by_both and Path(hybrid[0]["source"]).name == "both.md"
    assert set(hybrid[0]["ranks"]) == {"dense", "fts", "hybrid"}
    single = [h for h in hybrid if h["id"] not in found_by_both]
    assert single and all(h["score"] < hybrid[0]["score"] for h in single)


def test_weights_and_rrf_are_profile_settings(tmp_path: Path) -> None:
    docs = corpus(tmp_path)
    assert rag("index", str(docs), cwd=tmp_path).code == 0
    dense, fts = _lists(tmp_path)
    write(tmp_path / "rag.yaml", "retrieval:\n  candidates: 3\n  weights: {dense: 3.0, fts: 1.0}\n")
    weighted = rag("query", QUERY, "-k", "10", "--json", cwd=tmp_path).json()["hits"]
    expected = expected_zscore(dense, fts, {"dense": 3.0, "fts": 1.0})
    assert [h["score"] for h in weighted] == pytest.approx([s for _, s in expected], abs=1e-5)

    write(tmp_path / "rag.yaml", "retrieval:\n  candidates: 3\n  fusion: rrf\n")
    fused = rag("query", QUERY, "-k", "10", "--json", cwd=tmp_path)
    rrf = {h["id"]: 1 / (60 + h["ranks"]["dense"]) for h in dense}
    for h in fts:
        rrf[h["id"]] = rrf.get(h["id"], 0.0) + 1 / (60 + h["ranks"]["fts"])
    assert [h["score"] for h in fused.json()["hits"]] == pytest.approx(sorted(rrf.values(), reverse=True), abs=1e-6)
    shown = rag("query", QUERY, cwd=tmp_path)
    assert "1.00 = first by dense and by full text" in shown.err


def test_document_aggregation_returns_one_passage_per_file(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    long = "\n\n".join(f"Paragraph {i} about the quokka habitat on islands and its scrub. " * 6 for i in range(6))
    write(docs / "long.md", f"# Quokka\n\n{long}\n")
    write(docs / "short.md", "# Islands\n\nRottnest island is home to quokkas.\n")
    write(tmp_path / "rag.yaml", "chunking:\n  max_tokens: 64\n  overlap: 0\n")
    assert rag("index", str(docs), cwd=tmp_path).code == 0
    chunks = rag("query", QUERY, "-k", "10", "--json", cwd=tmp_path).json()["hits"]
    assert len({h["source"] for h in chunks}) < len(chunks)  # several passages of long.md compete
    write(tmp_path / "rag.yaml", "chunking:\n  max_tokens: 64\n  overlap: 0\nretrieval:\n  aggregate: document\n")
    per_file = rag("query", QUERY, "-k", "10", "--json", cwd=tmp_path).json()["hits"]
    assert len(per_file) == 2 and len({h["source"] for h in per_file}) == 2
    best_chunk = next(h for h in chunks if h["source"] == per_file[0]["source"])
    assert per_file[0]["id"] == best_chunk["id"]  # the file's best passage is the one returned, for citations


def test_bad_fusion_settings_name_the_key(tmp_path: Path) -> None:
    for yaml, key in [
        ("retrieval:\n  fusion: borda\n", "retrieval.fusion"),
        ("retrieval:\n  weights: {sparse: 1}\n", "retrieval.weights"),
        ("retrieval:\n  weights: {dense: -1}\n", "retrieval.weights"),
        ("retrieval:\n  aggregate: page\n", "retrieval.aggregate"),
    ]:
        write(tmp_path / "rag.yaml", yaml)
        result = rag("query", "x", cwd=tmp_path)
        assert result.code == 3 and key in result.err and result.err.count("\n") == 1


def test_zscore_pure_rules() -> None:
    from rag.fusion import best_per_group, standardise, zscore

    assert standardise([3.0, 3.0]) == [0.0, 0.0]
    assert standardise([2.0, 0.0]) == [1.0, -1.0]
    fused = dict(zscore({"dense": [("a", 0.9), ("b", 0.5), ("c", 0.4)], "fts": [("b", 7.0), ("d", 1.0)]}))
    # b: dense z of 0.5 in (0.9, 0.5, 0.4) and fts z +1; d: fts -1 and dense's floor (c's z)
    zd = _zscores([0.9, 0.5, 0.4])
    assert fused["b"] == pytest.approx((zd[1] + 1) / 2) and fused["d"] == pytest.approx((zd[2] - 1) / 2)
    assert fused["a"] == pytest.approx((zd[0] - 1) / 2)
    assert zscore({"dense": [], "fts": [("x", 2.0)]}) == [("x", 0.0)]
    assert best_per_group([("c1", 5.0), ("c2", 4.0), ("c3", 1.0)], {"c1": "A", "c2": "A", "c3": "B"}) == [("A", 5.0), ("B", 1.0)]
