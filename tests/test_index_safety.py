"""Indexing under interruption, crashes and concurrency: nothing lost, nothing duplicated.

Each scenario runs real `python -m rag` processes against a real LanceDB
store and ends in assertions about the data.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.clirun import rag, rag_process, write

from rag.store.location import Location

TOPICS = [
    "volcanoes", "glaciers", "tides", "deserts", "rainforests", "coral reefs", "earthquakes", "rivers",
    "comets", "auroras", "monsoons", "caves", "geysers", "lagoons", "tundra", "savannas",
]  # fmt: skip


def slow_corpus(root: Path, files: int = 32, batch: int = 4) -> Path:
    """Files long enough that embedding them takes a few seconds in small batches (``batch`` files a commit)."""
    docs = root / "docs"
    for i in range(files):
        topic = TOPICS[i % len(TOPICS)]
        sentences = " ".join(f"Fact {j} about {topic} number {i}: observers recorded detail {i * 31 + j} in field notes." for j in range(8))
        write(docs / f"doc{i:03d}.md", f"# {topic.title()} {i}\n\n{sentences}\n")
    write(
        root / "rag.yaml",
        f"embedding:\n  batch_size: {batch}\nstore:\n  commit_chunks: {batch}\n  lock_timeout: 120\n",
    )
    return docs


def ids_in_store(root: Path) -> list[str]:
    import lancedb

    from rag.store.generations import live_generation, physical_name

    live = physical_name("chunks", live_generation(Location.of(root / ".rag"), "chunks"))  # a chunking change builds a new generation
    table = lancedb.connect(str(root / ".rag")).open_table(live)
    return list(table.to_arrow().column("id").to_pylist())


def cached_embeddings(root: Path) -> int:
    path = root / ".rag" / "embed-cache.sqlite"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(str(path), timeout=1) as db:
            return int(db.execute("SELECT count(*) FROM embeddings").fetchone()[0])
    except sqlite3.Error:
        return 0


def start_index(root: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "RAG_PROFILE"}
    return subprocess.Popen(
        [sys.executable, "-m", "rag", "index", "docs", "--json"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_cache(root: Path, at_least: int, proc: subprocess.Popen[str], limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while cached_embeddings(root) < at_least:
        assert proc.poll() is None, "index finished before it could be interrupted"
        assert time.monotonic() < deadline, "index made no progress"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> int:
    """Chunk count of one uninterrupted run over the same corpus."""
    root = tmp_path_factory.mktemp("reference")
    slow_corpus(root)
    result = rag("index", "docs", "--json", cwd=root)
    assert result.code == 0, result.err
    return int(result.json()["chunks_total"])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_index_is_consistent_and_resumes(tmp_path: Path, reference: int, sig: signal.Signals) -> None:
    slow_corpus(tmp_path)
    proc = start_index(tmp_path)
    wait_for_cache(tmp_path, 12, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130
        assert err.strip().splitlines()[-1].startswith("error: interrupted; the index is consistent")
        assert "Traceback" not in err
    else:
        assert proc.returncode == -signal.SIGKILL

    # Whatever was committed is whole and queryable.
    # 12 cached embeddings with 4-chunk commits: some files were committed before the signal
    assert (tmp_path / ".rag" / "chunks.meta.json").exists()
    ids = ids_in_store(tmp_path)
    assert 0 < len(ids) < reference and len(ids) == len(set(ids))
    partial = rag("query", "volcanoes", "--json", cwd=tmp_path)
    assert partial.code == 0, partial.err

    embedded_before = cached_embeddings(tmp_path)
    again = rag_process("index", "docs", "--json", cwd=tmp_path)
    assert again.code == 0, again.err
    report = again.json()
    assert report["chunks_total"] == reference
    assert report["embedded_texts"] <= reference - embedded_before + 4  # at most the batch in flight again
    if sig == signal.SIGKILL:
        assert "took over a stale lock left by pid" in again.err
    ids = ids_in_store(tmp_path)
    assert len(ids) == reference == len(set(ids))
    hits = rag("query", "geysers", "--mode", "fts", "--json", cwd=tmp_path).json()["hits"]
    assert hits and "Geysers" in hits[0]["title"]


def test_two_writers_at_once_wait_and_do_not_duplicate(tmp_path: Path, reference: int) -> None:
    slow_corpus(tmp_path)
    first = start_index(tmp_path)
    wait_for_cache(tmp_path, 1, first)
    second = start_index(tmp_path)
    _, err1 = first.communicate(timeout=300)
    _, err2 = second.communicate(timeout=300)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    assert "waiting for another rag index" in err2
    ids = ids_in_store(tmp_path)
    assert len(ids) == reference == len(set(ids))


def test_a_writer_that_cannot_wait_says_who_holds_the_lock(tmp_path: Path) -> None:
    slow_corpus(tmp_path)
    write(tmp_path / "impatient.yaml", "embedding:\n  batch_size: 4\nstore:\n  commit_chunks: 4\n  lock_timeout: 0\n")
    first = start_index(tmp_path)
    wait_for_cache(tmp_path, 1, first)
    second = rag("index", "docs", "--profile", "impatient.yaml", cwd=tmp_path)
    first.communicate(timeout=300)
    assert second.code == 4
    assert f"another rag index (pid {first.pid}) is writing" in second.err


def test_queries_during_indexing_always_answer(tmp_path: Path, reference: int) -> None:
    slow_corpus(tmp_path)
    # An initial version for queries to read while the second run rewrites every file.
    assert rag("index", "docs", cwd=tmp_path).code == 0
    write(tmp_path / "rag.yaml", "embedding:\n  batch_size: 4\nstore:\n  commit_chunks: 4\nchunking:\n  max_tokens: 64\n  overlap: 8\n")
    proc = start_index(tmp_path)
    answered = 0
    while proc.poll() is None or answered == 0:
        result = rag("query", "tides", "--json", "-k", "5", cwd=tmp_path)
        assert result.code == 0, result.err
        hits = result.json()["hits"]
        assert hits and len({h["id"] for h in hits}) == len(hits)
        answered += 1
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    ids = ids_in_store(tmp_path)
    assert len(ids) == len(set(ids)) > reference


@pytest.mark.parametrize("point", ["embed:0.3", "commit:0.01", "compact:0.02", "fts:0.02", "fts:0"])
def test_kill_9_at_each_stage_then_rerun_completes(tmp_path: Path, reference: int, point: str) -> None:
    slow_corpus(tmp_path, batch=1)  # a commit per file: enough fragments that the run compacts them
    killed = rag_process("index", "docs", cwd=tmp_path, env={"RAG_CRASH_AT": point})
    assert killed.code == -signal.SIGKILL, killed.err
    again = rag_process("index", "docs", "--json", cwd=tmp_path)
    assert again.code == 0, again.err
    assert again.json()["chunks_total"] == reference
    assert "took over a stale lock left by pid" in again.err
    ids = ids_in_store(tmp_path)
    assert len(ids) == reference == len(set(ids))
    status = rag("status", "--json", cwd=tmp_path).json()
    assert status["fts_index"] and status["fts_current"]
    hits = rag("query", "auroras", "--mode", "fts", "--json", cwd=tmp_path).json()["hits"]
    assert hits and "Auroras" in hits[0]["title"]


def test_a_failure_nobody_foresaw_is_one_line_and_the_rerun_completes(tmp_path: Path) -> None:
    """An exception outside our error root (here an OSError injected before each commit) is still one
    line on stderr with exit 1, no traceback unless RAG_DEBUG asks for it; the next run completes the index."""
    docs = slow_corpus(tmp_path, files=8, batch=4)
    write(docs / "doc000.md", "# Volcanoes 0\n\nMagma and calderas.\n")
    failed = rag_process("index", "docs", cwd=tmp_path, env={"RAG_FAIL_AT": "commit"})
    assert failed.code == 1
    assert failed.err.startswith("error: unexpected OSError: injected failure at commit") and len(failed.err.splitlines()) == 1, failed.err
    assert "RAG_DEBUG=1" in failed.err
    debug = rag_process("index", "docs", cwd=tmp_path, env={"RAG_FAIL_AT": "commit", "RAG_DEBUG": "1"})
    assert debug.code == 1 and "Traceback" in debug.err
    again = rag_process("index", "docs", "--json", cwd=tmp_path)
    assert again.code == 0, again.err
    assert again.json()["files_indexed"] == 8
    assert len(ids_in_store(tmp_path)) == len(set(ids_in_store(tmp_path))) == again.json()["chunks_total"]
