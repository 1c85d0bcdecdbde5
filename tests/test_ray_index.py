"""``rag index --ray`` on a local Ray cluster (2 CPUs): the same index as a single-process run, committed once."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from tests.clirun import rag, rag_process, write

TOPICS = ["volcanoes", "glaciers", "tides", "deserts", "comets", "auroras"]


def table(store: Path) -> dict[str, np.ndarray]:
    import lance

    data = lance.dataset(str(store / "chunks.lance")).to_table(columns=["id", "vector"]).to_pydict()
    return {i: np.asarray(v, dtype=np.float32) for i, v in zip(data["id"], data["vector"], strict=True)}


@pytest.fixture
def cluster() -> Iterator[None]:
    """A local Ray cluster of 2 CPUs in this process (starting one costs seconds)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def test_ray_index_equals_a_local_index_and_honours_the_cache(tmp_path: Path, cluster: None) -> None:
    docs = tmp_path / "docs"
    for i in range(6):
        topic = TOPICS[i]
        write(docs / f"doc{i}.md", f"# {topic.title()}\n\n" + " ".join(f"Note {j} on {topic}: detail {i * 7 + j}." for j in range(30)))
    write(tmp_path / "rag.yaml", "embedding:\n  batch_size: 8\n")
    local = rag("index", "docs", "--json", cwd=tmp_path)
    assert local.code == 0, local.err
    expected = table(tmp_path / ".rag")
    shutil.rmtree(tmp_path / ".rag")

    # An embedding cache that already holds the first two files' chunks (from another project's index of them).
    other = tmp_path / "other"
    for name in ("doc0.md", "doc1.md"):
        write(other / "docs" / name, (docs / name).read_text())
    write(other / "rag.yaml", "embedding:\n  batch_size: 8\n")
    cached = rag("index", "docs", "--json", cwd=other).json()["chunks_total"]
    (tmp_path / ".rag").mkdir()
    shutil.copy(other / ".rag" / "embed-cache.sqlite", tmp_path / ".rag" / "embed-cache.sqlite")

    # The rest is embedded on the cluster by 2 actors; every row lands in one merge_insert.
    ray_run = rag("index", "docs", "--ray", "--json", cwd=tmp_path)
    assert ray_run.code == 0, ray_run.err
    report = ray_run.json()
    assert (report["cache_hits"], report["embedded_texts"]) == (cached, len(expected) - cached)
    got = table(tmp_path / ".rag")
    assert sorted(got) == sorted(expected)
    assert all(np.allclose(got[i], expected[i], atol=1e-5) for i in expected)
    hits = rag("query", "geysers auroras", "--json", cwd=tmp_path).json()["hits"]
    assert hits[0]["source"].endswith("doc5.md")


def test_ray_reports_and_remembers_files_that_give_no_chunks_as_a_local_run_does(tmp_path: Path, cluster: None) -> None:
    docs = tmp_path / "docs"
    write(docs / "tides.md", "# Tides\n\nThe moon pulls the sea twice a day.\n")
    write(docs / "empty.md", "")
    write(docs / "scan.pdf", b"%PDF-1.4\n% no objects at all\n")  # unreadable
    local = rag("index", "docs", "--json", cwd=tmp_path).json()
    remembered = json.loads((tmp_path / ".rag" / "chunks.meta.json").read_text())["unindexed"]
    assert sorted(remembered) == sorted(str((docs / n).resolve()) for n in ("empty.md", "scan.pdf"))
    shutil.rmtree(tmp_path / ".rag")

    first = rag("index", "docs", "--ray", "--json", cwd=tmp_path)
    assert first.code == 0, first.err
    assert first.err.startswith("warning: skipped docs/scan.pdf: corrupt or unreadable PDF")
    report = first.json()
    assert [(s["kind"], s["new"]) for s in report["skipped"]] == [(s["kind"], s["new"]) for s in local["skipped"]] == [("unreadable", True)]
    assert report["files_empty"] == local["files_empty"] == 1
    assert json.loads((tmp_path / ".rag" / "chunks.meta.json").read_text())["unindexed"] == remembered

    # Unchanged since: not read again, still reported, no longer new.
    again = rag("index", "docs", "--ray", "--json", cwd=tmp_path).json()
    assert [(s["kind"], s["new"]) for s in again["skipped"]] == [("unreadable", False)]
    assert (again["files_empty"], again["files_unchanged"], again["embedded_texts"]) == (1, 1, 0)


def test_ray_without_ray_installed_says_how_to_install_it(tmp_path: Path) -> None:
    # A "ray" package that cannot be imported stands in for a machine without the extra.
    write(tmp_path / "shadow" / "ray" / "__init__.py", "raise ImportError('No module named ray')\n")
    write(tmp_path / "docs" / "a.md", "# A\n\nText.\n")
    result = rag_process("index", "--ray", "docs", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "shadow")})
    assert result.code == 2
    assert result.err.strip() == "error: Ray is not installed; install the extra with: pip install 'rag[ray]' (or pip install 'ray[data]')"
    assert not (tmp_path / ".rag").exists()
