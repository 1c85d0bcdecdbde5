"""``rag index --ray`` on a local Ray cluster (2 CPUs): the same index as a single-process run, committed once."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from tests.clirun import rag, rag_process, write

pytest.importorskip("ray.data")

TOPICS = ["volcanoes", "glaciers", "tides", "deserts", "comets", "auroras"]


def table(store: Path) -> dict[str, np.ndarray]:
    import lance

    data = lance.dataset(str(store / "chunks.lance")).to_table(columns=["id", "vector"]).to_pydict()
    return {i: np.asarray(v, dtype=np.float32) for i, v in zip(data["id"], data["vector"], strict=True)}


def test_ray_index_equals_a_local_index_and_honours_the_cache(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    for i in range(6):
        topic = TOPICS[i]
        write(docs / f"doc{i}.md", f"# {topic.title()}\n\n" + " ".join(f"Note {j} on {topic}: detail {i * 7 + j}." for j in range(30)))
    write(tmp_path / "rag.yaml", "embedding:\n  batch_size: 8\n")
    local = rag("index", "docs", "--json", cwd=tmp_path)
    assert local.code == 0, local.err
    expected = table(tmp_path / ".rag")
    shutil.rmtree(tmp_path / ".rag")

    # A fresh store and cache: every chunk is embedded on the cluster, by 2 actors.
    ray_run = rag_process("index", "docs", "--ray", "--json", cwd=tmp_path, env={"RAY_NUM_CPUS": "2"})
    assert ray_run.code == 0, ray_run.err
    report = ray_run.json()
    assert report["embedded_texts"] == len(expected) and report["cache_hits"] == 0
    got = table(tmp_path / ".rag")
    assert sorted(got) == sorted(expected)
    assert all(np.allclose(got[i], expected[i], atol=1e-5) for i in expected)

    # Changed text: only the new chunk texts are embedded, the rest come from the cache.
    write(docs / "doc0.md", (docs / "doc0.md").read_text() + " A new closing sentence about lava.")
    again = rag_process("index", "docs", "--ray", "--json", cwd=tmp_path, env={"RAY_NUM_CPUS": "2"}).json()
    assert again["files_indexed"] == 1 and 0 < again["embedded_texts"] < len(expected) and again["cache_hits"] > 0
    assert len(table(tmp_path / ".rag")) == again["chunks_total"]
    hits = rag("query", "lava", "--json", cwd=tmp_path).json()["hits"]
    assert hits[0]["source"].endswith("doc0.md")
