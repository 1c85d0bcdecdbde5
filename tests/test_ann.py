"""ANN past index.ann.min_rows: built by rag index, kept current, retrained on growth, used by queries (also with
--where), shown by rag status, measured by rag eval --ann-recall. A small table with a low threshold stands in for
a big one: the code paths are the same, only min_rows differs."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.clirun import rag, write

TOPICS = ["volcanoes", "glaciers", "tides", "deserts", "comets", "auroras", "geysers", "lagoons", "monsoons", "caves"]


def notes(docs: Path, start: int, count: int) -> None:
    for i in range(start, start + count):
        topic = TOPICS[i % len(TOPICS)]
        body = "\n\n".join(f"Note {j} about {topic} at station {i}: reading {i * 13 + j} in the field log." for j in range(6))
        write(docs / f"{topic}-{i:02d}.md", f"# {topic.title()} station {i}\n\n{body}\n")


def test_index_builds_keeps_and_retrains_the_ann_index(tmp_path: Path) -> None:
    """The default kind (IVF_SQ: the one that held recall@10 >= 0.95 at a million chunks, docs/scale.md)."""
    docs = tmp_path / "docs"
    notes(docs, 0, 10)
    write(tmp_path / "rag.yaml", "chunking:\n  max_tokens: 32\n  overlap: 0\nindex:\n  ann:\n    min_rows: 30\n")
    first = rag("index", "docs", "--json", cwd=tmp_path).json()
    assert first["chunks_total"] >= 30 and first["maintenance"]["ann"] == "build"
    status = rag("status", "--json", cwd=tmp_path).json()["ann"]
    assert status["type"] == "IVF_SQ" and status["trained_rows"] == first["chunks_total"] and status["unindexed_rows"] == 0
    assert "IVF_SQ" in rag("status", cwd=tmp_path).out

    # Under the index a filter still gives exact search's top-k among the rows it lets through.
    where = "source LIKE '%glaciers%'"
    hits = rag("query", "reading in the field log", "--mode", "dense", "--where", where, "-k", "5", "--json", cwd=tmp_path).json()["hits"]
    assert len(hits) == 5 and all("glaciers" in h["source"] for h in hits)
    recall = rag("eval", "--ann-recall", "--json", "--min", "recall@10=0.95", cwd=tmp_path)
    assert recall.code == 0, recall.err
    assert recall.json()["type"] == "IVF_SQ" and recall.json()["recall"] >= 0.95

    # A few new files: folded into the index, no retraining.
    notes(docs, 10, 2)
    second = rag("index", "docs", "--json", cwd=tmp_path).json()
    assert second["maintenance"]["ann"] in ("update", None)  # None: the full-text step's optimize_indices folded them in
    after = rag("status", "--json", cwd=tmp_path).json()["ann"]
    assert after["unindexed_rows"] == 0 and after["trained_rows"] == status["trained_rows"]

    # Grown past twice the rows it was trained on: trained again.
    notes(docs, 12, 14)
    third = rag("index", "docs", "--json", cwd=tmp_path).json()
    assert third["maintenance"]["ann"] == "retrain"
    assert rag("status", "--json", cwd=tmp_path).json()["ann"]["trained_rows"] == third["chunks_total"]


def test_below_the_threshold_and_when_off_search_stays_exact(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    notes(docs, 0, 3)
    write(tmp_path / "rag.yaml", "index:\n  ann:\n    mode: 'off'\n    min_rows: 1\n")
    assert rag("index", "docs", cwd=tmp_path).code == 0
    status = rag("status", "--json", cwd=tmp_path).json()["ann"]
    assert status["type"] == "exact"
    assert "exact; ANN off" in rag("status", cwd=tmp_path).out
    assert rag("eval", "--ann-recall", "--json", cwd=tmp_path).json() == {"type": "exact", "k": 10, "queries": 3, "recall": 1.0}


@pytest.mark.parametrize("kind", ["IVF_HNSW_SQ", "IVF_RQ", "IVF_PQ"])
def test_each_kind_builds_answers_and_is_replaced_when_the_profile_changes_it(tmp_path: Path, kind: str) -> None:
    docs = tmp_path / "docs"
    notes(docs, 0, 10)
    profile = "chunking:\n  max_tokens: 32\n  overlap: 0\nindex:\n  ann:\n    min_rows: 30\n    kind: {kind}\n    refine_factor: 10\n"
    write(tmp_path / "rag.yaml", profile.format(kind=kind))
    assert rag("index", "docs", "--json", cwd=tmp_path).json()["maintenance"]["ann"] == "build"
    assert rag("status", "--json", cwd=tmp_path).json()["ann"]["type"] == kind
    hits = rag("query", "tides station", "--mode", "dense", "--where", "source LIKE '%tides%'", "-k", "3", "--json", cwd=tmp_path).json()[
        "hits"
    ]
    assert len(hits) == 3 and all("tides" in h["source"] for h in hits)
    recall = rag("eval", "--ann-recall", "--json", "--min", "recall@10=0.9", cwd=tmp_path)
    assert recall.code == 0, recall.err
    assert recall.json()["type"] == kind

    # Another kind in the profile: the next run builds that one in place of the old.
    write(tmp_path / "rag.yaml", profile.format(kind="IVF_SQ"))
    assert rag("index", "docs", "--json", cwd=tmp_path).json()["maintenance"]["ann"] == "build"
    assert rag("status", "--json", cwd=tmp_path).json()["ann"]["type"] == "IVF_SQ"


def test_an_unknown_kind_is_one_line_naming_the_choices(tmp_path: Path) -> None:
    write(tmp_path / "rag.yaml", "index:\n  ann:\n    kind: IVF_HNSW\n")
    result = rag("status", cwd=tmp_path)
    assert result.code != 0 and "Traceback" not in result.err
    assert "IVF_SQ" in result.err and len(result.err.strip().splitlines()) == 1


def clustered_table(path: Path, rows: int = 12_000, dim: int = 32, centres: int = 64) -> object:
    """A Lance table of unit vectors around ``centres`` random centres (the shape real embeddings have)."""
    import lance
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(7)
    middle = rng.normal(size=(centres, dim))
    vectors = middle[rng.integers(0, centres, rows)] + 2.0 * rng.normal(size=(rows, dim))  # clusters that overlap
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    table = pa.table({"id": [f"c{i}" for i in range(rows)], "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim)})
    return lance.write_dataset(table, str(path))


@pytest.mark.parametrize("target", [0.6, 0.9])
def test_tuning_picks_the_fewest_probes_that_hold_the_target_recall(tmp_path: Path, target: float) -> None:
    """rag.store.ann.tune on a real Lance index: the recall it aims at is reached at the nprobes it records, not at
    the step below, and queries of that version use it unless the profile sets nprobes."""
    from rag.store import ann

    dataset = clustered_table(tmp_path / "t.lance")
    settings = ann.AnnSettings(kind="IVF_SQ", refine_factor=1, target_recall=target)
    ann.build(dataset, settings, num_partitions=32)
    import lance

    tuned = ann.tune(lance.dataset(str(tmp_path / "t.lance")), settings)
    dataset = lance.dataset(str(tmp_path / "t.lance"))
    assert tuned["aim"] == target
    assert tuned["recall"] >= tuned["aim"] and ann.tuned_nprobes(dataset) == tuned["nprobes"]
    assert 1 < tuned["nprobes"] < 32  # clusters spread over partitions: neither one probe nor all of them
    assert _recall(dataset, settings) == pytest.approx(tuned["recall"], abs=1e-4)
    below = max(p for p in ann.PROBE_STEPS if p < tuned["nprobes"])
    dataset.update_config({ann.TUNED: str(below)})  # the step below the tuned one misses the target
    assert _recall(lance.dataset(str(tmp_path / "t.lance")), settings) < tuned["aim"]
    assert settings.query(10, tuned["nprobes"])["nprobes"] == tuned["nprobes"]
    assert ann.AnnSettings(nprobes=7).query(10, tuned["nprobes"])["nprobes"] == 7  # the profile's number wins
    unreachable = ann.tune(dataset, ann.AnnSettings(kind="IVF_SQ", refine_factor=1, target_recall=1.01))
    assert unreachable["nprobes"] == 32  # probes every partition


def _recall(dataset: object, settings: object) -> float:
    """Recall@10 at the nprobes recorded in the table, the way tune measures it (a second, independent count)."""
    import numpy as np

    from rag.store import ann

    queries, ids = ann.tuning_queries(dataset, 100)
    exact = ann._exact_top(dataset, queries, ids, 10)
    knobs = {**settings.query(11, ann.tuned_nprobes(dataset))}  # type: ignore[attr-defined]
    found = [
        ann._ids(dataset.to_table(columns=["id"], nearest=ann._nearest(q, 11, knobs)), own, 10) for q, own in zip(queries, ids, strict=True)
    ]  # type: ignore[attr-defined]
    return float(np.mean([len(set(f) & e) / len(e) for f, e in zip(found, exact, strict=True)]))
