"""The table over days of use: aged versions, no-op runs, retention and maintenance that cannot fail a run.

The clock is moved with ``faketime`` (Debian's package; ``.ci/run`` installs it):
each ``rag index`` below runs as its own process minutes or days in the future.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.clirun import later, rag, rag_process, write


def corpus(root: Path) -> Path:
    docs = root / "docs"
    write(docs / "volcano.md", "# Volcanoes\n\nMagma rises through the crust and erupts as lava.\n")
    write(docs / "glacier.md", "# Glaciers\n\nIce sheets carve valleys as they slowly advance.\n")
    write(docs / "tides.txt", "Tides follow the pull of the moon on the oceans.\n")
    write(docs / "pkg" / "__init__.py", "")  # empty: nothing to index, nothing to do again
    write(root / "rag.yaml", "store:\n  keep_runs: 2\n")
    return docs


def versions(root: Path) -> list[int]:
    import lance

    return [int(v["version"]) for v in lance.dataset(str(root / ".rag" / "chunks.lance")).versions()]


def fts_sources(root: Path, query: str) -> list[str]:
    result = rag("query", query, "--mode", "fts", "--json", cwd=root)
    assert result.code == 0, result.err
    return [Path(h["source"]).name for h in result.json()["hits"]]


def test_an_aged_index_takes_edits_deletes_and_rebuilds(tmp_path: Path) -> None:
    docs = corpus(tmp_path)
    first = later("+0", "index", "docs", "--json", cwd=tmp_path)
    assert first.code == 0, first.err
    write(docs / "tides.txt", "Tides follow the pull of the moon and the sun on the oceans.\n")
    edited = later("+30m", "index", "docs", "--json", cwd=tmp_path)
    assert edited.code == 0 and edited.err == "", edited.err
    assert edited.json()["files_indexed"] == 1
    (docs / "glacier.md").unlink()
    deleted = later("+3d", "index", "docs", "--json", cwd=tmp_path)
    assert deleted.code == 0 and deleted.err == "", deleted.err
    assert deleted.json()["files_deleted"] == 1
    write(docs / "auroras.md", "# Auroras\n\nCharged particles light up the polar sky.\n")
    added = later("+20d", "index", "docs", "--json", cwd=tmp_path)
    assert added.code == 0 and added.err == "", added.err
    assert fts_sources(tmp_path, "polar sky") == ["auroras.md"]
    assert fts_sources(tmp_path, "ice sheets valleys") == []
    assert "tides.txt" in fts_sources(tmp_path, "sun")
    # Retention keeps the versions of the last two runs, not every commit of every run.
    assert len(versions(tmp_path)) <= 2 * 3, versions(tmp_path)
    rebuilt = later("+40d", "index", "--rebuild", "docs", "--json", cwd=tmp_path)
    assert rebuilt.code == 0 and rebuilt.err == "", rebuilt.err
    assert rebuilt.json()["chunks_total"] == 3
    status = rag("status", "--json", cwd=tmp_path).json()
    assert status["fts_current"] and status["maintenance_owed"] == []


def test_a_rerun_with_nothing_to_do_commits_nothing(tmp_path: Path) -> None:
    corpus(tmp_path)
    write(tmp_path / "docs" / "scan.pdf", b"%PDF-1.4\n% no objects at all\n")  # unreadable: skipped, remembered
    assert rag("index", "docs", cwd=tmp_path).code == 0
    before = versions(tmp_path)
    meta = (tmp_path / ".rag" / "chunks.meta.json").read_text()
    for offset in ("+0", "+1d"):
        again = later(offset, "index", "docs", "--json", cwd=tmp_path)
        assert again.code == 0, again.err
        report = again.json()
        assert report["committed"] is False
        assert report["files_indexed"] == 0 and report["embedding_calls"] == 0
        assert report["files_empty"] == 1 and report["files_unchanged"] == 3
        assert [(s["kind"], s["new"]) for s in report["skipped"]] == [("unreadable", False)]
    assert versions(tmp_path) == before
    assert (tmp_path / ".rag" / "chunks.meta.json").read_text() == meta


def test_an_empty_file_that_gains_text_is_indexed_and_one_that_loses_it_is_removed(tmp_path: Path) -> None:
    docs = corpus(tmp_path)
    assert rag("index", "docs", cwd=tmp_path).code == 0
    write(docs / "pkg" / "__init__.py", '"""Geysers erupt boiling water at intervals."""\n')
    assert rag("index", "docs", cwd=tmp_path).code == 0
    assert fts_sources(tmp_path, "geysers") == ["__init__.py"]
    write(docs / "pkg" / "__init__.py", "")
    report = rag("index", "docs", "--json", cwd=tmp_path).json()
    assert report["committed"] is True and report["chunks_removed"] == 1
    assert fts_sources(tmp_path, "geysers") == []


def test_runs_killed_mid_commit_then_aged_leave_no_stray_versions(tmp_path: Path) -> None:
    docs = corpus(tmp_path)
    write(tmp_path / "rag.yaml", "store:\n  keep_runs: 2\n  commit_chunks: 1\nembedding:\n  batch_size: 1\n")
    assert rag("index", "docs", cwd=tmp_path).code == 0
    for i in range(6):
        write(docs / f"extra{i}.md", f"# Extra {i}\n\nComets number {i} have tails of dust.\n")
    killed = rag_process("index", "docs", cwd=tmp_path, env={"RAG_CRASH_AT": "commit:0.01"})
    assert killed.code < 0  # SIGKILL
    again = later("+10d", "index", "docs", "--json", cwd=tmp_path)
    assert again.code == 0, again.err
    assert again.json()["chunks_total"] == 3 + 6
    ids = [h["id"] for h in rag("query", "comets dust", "--json", "-k", "50", cwd=tmp_path).json()["hits"]]
    assert len(ids) == len(set(ids))
    # The killed run's commits and the intermediate versions are gone; the previous run's version is kept.
    assert len(versions(tmp_path)) <= 2 * 3, versions(tmp_path)


def test_a_failing_maintenance_step_warns_keeps_the_data_and_is_retried(tmp_path: Path) -> None:
    docs = corpus(tmp_path)
    failed = rag_process("index", "docs", "--json", cwd=tmp_path, env={"RAG_FAIL_AT": "fts"})
    assert failed.code == 0, failed.err
    lines = failed.err.strip().splitlines()
    assert len(lines) == 1 and "index maintenance (fts) failed" in lines[0] and "next rag index tries again" in lines[0]
    assert failed.json()["maintenance"]["failed"] == {"fts": "injected failure at fts (RAG_FAIL_AT)"}
    dense = rag("query", "magma lava", "--mode", "dense", "--json", cwd=tmp_path)
    assert dense.code == 0 and Path(dense.json()["hits"][0]["source"]).name == "volcano.md"
    status = rag("status", "--json", cwd=tmp_path).json()
    assert status["maintenance_owed"] == ["fts"] and not status["fts_index"]
    # Nothing changed on disk, yet the next run finishes the upkeep.
    retried = rag("index", "docs", "--json", cwd=tmp_path)
    assert retried.code == 0 and retried.err == ""
    assert retried.json()["fts_rebuilt"] is True and retried.json()["files_indexed"] == 0
    assert fts_sources(tmp_path, "magma") == ["volcano.md"]
    assert rag("status", "--json", cwd=tmp_path).json()["maintenance_owed"] == []
    # And then there is nothing left to do.
    assert rag("index", "docs", "--json", cwd=tmp_path).json()["committed"] is False
    write(docs / "volcano.md", "# Volcanoes\n\nMagma rises and erupts as lava and ash.\n")
    assert json.loads(rag("index", "docs", "--json", cwd=tmp_path).out)["committed"] is True
