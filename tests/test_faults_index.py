"""`rag index` against an HTTP embedding provider that fails part-way.

A provider that dies halfway leaves a consistent index (whole files, no
duplicate ids, a current full-text index) and a one-line error; the re-run
after it recovers sends only texts that were neither stored nor cached.
Transient faults (429 with Retry-After, a response past the timeout, a 413
for the batch size, malformed JSON with a fallback) are survived. Real
LanceDB, the real CLI, providers on 127.0.0.1 (tests/fault_server.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from clirun import Result, rag, write
from fault_server import FaultServer, Reply, fake_vector
from rag.probes import PROBES

PATH = "/v1/embeddings"
FILES = 24
TOPICS = ["volcanoes", "glaciers", "tides", "deserts", "comets", "auroras"]


class DyingProvider(FaultServer):
    """Answers ``healthy`` embedding calls, then fails every call (500, or no answer within the client's timeout)."""

    def __init__(self, healthy: int, how: str) -> None:
        super().__init__()
        self.healthy = healthy
        self.how = how

    def _default(self, path: str, body: dict[str, Any]) -> Reply:
        if path == PATH:
            if self.healthy <= 0:
                if self.how == "hang":
                    return Reply(200, {"data": []}, delay=3.0)
                return Reply(500, {"error": {"message": "the model worker died"}})
            self.healthy -= 1
        return super()._default(path, body)


class HangingProvider(FaultServer):
    """Answers ``healthy`` embedding calls, then holds every call until ``release`` is set: a provider that stopped answering."""

    def __init__(self, healthy: int) -> None:
        super().__init__()
        self.healthy, self.calls, self.release = healthy, 0, threading.Event()

    async def _handle(self, request: Any) -> Any:
        if request.url.path == PATH:
            self.calls += 1
            while self.calls > self.healthy and not self.release.is_set():
                await asyncio.sleep(0.02)
        return await super()._handle(request)


def corpus(root: Path) -> Path:
    """One chunk per file, each with a word no other file has."""
    docs = root / "docs"
    for i in range(FILES):
        topic = TOPICS[i % len(TOPICS)]
        write(docs / f"note{i:02d}.md", f"# Note {i} on {topic}\n\nField note marker{i:02d}: observers saw {topic} on day {i}.\n")
    return docs


def profile(root: Path, url: str, *, timeout: float = 5.0, fallback: str | None = None) -> None:
    text = f"providers:\n  p:\n    kind: openai\n    base_url: {url}\n    max_retries: 1\n    timeout: {timeout}\n"
    if fallback:
        text += f"  b:\n    kind: openai\n    base_url: {fallback}\n    max_retries: 0\n"
    text += "embedding:\n  model: p/fake\n  batch_size: 2\n"
    if fallback:
        text += "  fallbacks: [b/fake]\n"
    text += "store:\n  commit_chunks: 4\nhttp:\n  backoff_base: 0\n  backoff_max: 5\n"
    write(root / "rag.yaml", text)


def ids_in_store(root: Path) -> list[str]:
    import lance

    return list(lance.dataset(str(root / ".rag" / "chunks.lance")).to_table(columns=["id"]).column("id").to_pylist())


def cached_shas(root: Path) -> set[str]:
    with sqlite3.connect(str(root / ".rag" / "embed-cache.sqlite")) as db:
        return {row[0] for row in db.execute("SELECT sha FROM embeddings")}


def sent_texts(provider: FaultServer, since: int = 0) -> list[str]:
    """The chunk texts sent to be embedded (not the probe questions the index is calibrated with)."""
    return [text for seen in provider.seen[since:] if seen.path == PATH for text in seen.body["input"] if text not in PROBES]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def index(root: Path) -> Result:
    return rag("index", "docs", "--json", cwd=root)


def assert_complete(root: Path, result: Result) -> None:
    assert result.code == 0, result.err
    assert result.json()["chunks_total"] == FILES
    ids = ids_in_store(root)
    assert len(ids) == len(set(ids)) == FILES
    hits = rag("query", "marker17", "--mode", "fts", "--json", cwd=root).json()["hits"]
    assert hits and hits[0]["source"].endswith("note17.md")
    import lance

    rows = lance.dataset(str(root / ".rag" / "chunks.lance")).to_table(columns=["body", "vector"]).to_pylist()
    for row in rows:  # the stored vectors are the provider's for that very text
        assert row["vector"] == pytest.approx(fake_vector(row["body"], 8), abs=1e-6)


@pytest.mark.parametrize("how", ["500", "hang"])
def test_provider_dying_halfway_leaves_a_consistent_index_and_the_rerun_resumes(tmp_path: Path, serve: Any, how: str) -> None:
    provider = DyingProvider(healthy=5, how=how)
    provider.url = serve(provider.app)
    corpus(tmp_path)
    profile(tmp_path, provider.url, timeout=1.5)

    died = index(tmp_path)
    assert died.code == 5, died.err
    lines = died.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in died.err, died.err
    assert lines[0].startswith(f"error: embed p/fake: POST {PATH}: ")
    assert ("HTTP 500: the model worker died" if how == "500" else "no response within 1.5s") in lines[0]
    assert "(gave up after 2 attempts)" in lines[0] and "re-run the same command to resume" in lines[0]

    # What was committed is whole, unique, and searchable by full text without the provider.
    ids = ids_in_store(tmp_path)
    assert 0 < len(ids) < FILES and len(ids) == len(set(ids))
    status = rag("status", "--json", cwd=tmp_path)
    assert status.code == 0, status.err
    assert status.json()["chunks"] == len(ids) and status.json()["fts_current"]
    first = sorted(f["source"] for f in status.json()["files"])[0]
    word = "marker" + Path(first).stem[-2:]
    hits = rag("query", word, "--mode", "fts", "--json", cwd=tmp_path).json()["hits"]
    assert [h["source"] for h in hits] == [first]
    if how == "500":  # dense retrieval needs the provider: one line, exit 5
        hybrid = rag("query", word, cwd=tmp_path)
        assert hybrid.code == 5 and hybrid.err.count("\n") == 1 and "HTTP 500" in hybrid.err

    # The provider comes back: the re-run sends only what was neither stored nor cached, each text once.
    before = cached_shas(tmp_path)
    provider.healthy, seen_before = 10**6, len(provider.seen)
    again = index(tmp_path)
    assert_complete(tmp_path, again)
    resent = sent_texts(provider, seen_before)
    assert resent and len(resent) == len(set(resent))
    assert not {sha(t) for t in resent} & before
    assert len(before) + len(resent) == FILES
    assert again.json()["embedded_texts"] == len(resent)


@pytest.mark.parametrize(
    "fault_case",
    [
        "500 then healthy",
        "429 with Retry-After",
        "slow past the timeout",
        "413 batch too big",
        "malformed JSON, fallback",
        "NaN in a vector, fallback",
        "primary down",
    ],
)
def test_transient_faults_during_index_are_survived(tmp_path: Path, fault: FaultServer, fault_backup: FaultServer, fault_case: str) -> None:
    corpus(tmp_path)
    url, fallback = fault.url, None
    if fault_case == "500 then healthy":
        fault.then(PATH, Reply(500, {"error": "overloaded"}))
    elif fault_case == "429 with Retry-After":
        fault.then(PATH, Reply(429, {"error": {"message": "rate limited"}}, headers={"Retry-After": "0"}))
    elif fault_case == "slow past the timeout":
        fault.then(PATH, Reply(200, {"data": []}, delay=3.0))
    elif fault_case == "413 batch too big":
        fault.max_batch = 1
    elif fault_case == "malformed JSON, fallback":
        fault.then(PATH, Reply(200, text='{"data": [{"embedding": [0.1, '))
        fallback = fault_backup.url
    elif fault_case == "NaN in a vector, fallback":
        vector = "[" + ", ".join(["NaN"] + ["0.5"] * 7) + "]"
        fault.then(PATH, Reply(200, text=f'{{"data": [{{"index": 0, "embedding": {vector}}}, {{"index": 1, "embedding": {vector}}}]}}'))
        fallback = fault_backup.url
    else:
        url, fallback = "http://127.0.0.1:9", fault_backup.url  # nothing listens on port 9
    profile(tmp_path, url, timeout=1.5, fallback=fallback)

    result = index(tmp_path)
    assert_complete(tmp_path, result)
    embedded = sent_texts(fault) + sent_texts(fault_backup)
    assert len(set(embedded)) == FILES
    if fault_case == "413 batch too big":
        too_big = [seen for seen in fault.seen if len(seen.body["input"]) > 1]
        assert 1 <= len(too_big) <= 2  # the batches in flight when the first 413 came back; then one text per request
    if fallback is not None:
        assert fault_backup.count(PATH) >= 1
    else:
        assert fault_backup.count() == 0


def test_an_http_embedder_reindexes_incrementally_and_refuses_a_changed_size(tmp_path: Path, fault: FaultServer) -> None:
    docs = corpus(tmp_path)
    profile(tmp_path, fault.url)
    assert_complete(tmp_path, index(tmp_path))
    again = index(tmp_path)  # the model's size is known only from its answers; the index recorded it
    assert again.code == 0, again.err
    assert again.json()["embedding_calls"] == 0 and again.json()["files_unchanged"] == FILES

    fault.dims = 16  # the model behind the name changed
    write(docs / "late.md", "# Late\n\nA note that arrived after the model changed.\n")
    changed = index(tmp_path)
    assert changed.code == 4 and changed.err.count("\n") == 1, changed.err
    assert "p/fake now returns 16-dimensional vectors, but the index" in changed.err and "rag index --rebuild" in changed.err
    query = rag("query", "late note", "--mode", "dense", cwd=tmp_path)
    assert query.code == 4 and query.err.count("\n") == 1, query.err
    assert len(ids_in_store(tmp_path)) == FILES


def test_ctrl_c_while_a_provider_call_hangs_exits_at_once_and_the_rerun_resumes(tmp_path: Path, serve: Any) -> None:
    provider = HangingProvider(healthy=5)
    provider.url = serve(provider.app)
    corpus(tmp_path)
    profile(tmp_path, provider.url, timeout=300)  # a slow model's generous timeout, and retries after it
    env = {k: v for k, v in os.environ.items() if k != "RAG_PROFILE"}
    proc = subprocess.Popen([sys.executable, "-m", "rag", "index", "docs"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while provider.calls <= provider.healthy:  # until a call hangs
            assert proc.poll() is None and time.monotonic() < deadline, "the index never reached the hanging provider"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)  # not the 300 s timeout, nor its retries: the worker threads are not waited for
    finally:
        provider.release.set()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "error: interrupted; the index is consistent, re-run the same command to finish"
    assert "Traceback" not in err
    ids = ids_in_store(tmp_path)
    assert 0 < len(ids) < FILES and len(ids) == len(set(ids))

    before, seen_before = cached_shas(tmp_path), len(provider.seen)
    again = index(tmp_path)
    assert_complete(tmp_path, again)
    resent = sent_texts(provider, seen_before)
    assert not {sha(t) for t in resent} & before and len(before) + len(resent) == FILES
