"""An API key set in the environment never shows up anywhere rag writes.

A whole session with debug logging (-v), every stage on a provider over real
HTTP on 127.0.0.1 that requires or echoes the key, and errors on purpose:
embeddings from ``rag serve`` behind a bearer token, chat and rerank from the
fault server, including providers that echo the key in an error, redirect to
a URL holding it, or answer malformed JSON that quotes it. Then stdout,
stderr, the trace, both caches, the eval run file and every file under the
store are searched for the key and its base64 forms.
"""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

from clirun import Result, rag_process, write
from fault_server import FaultServer, Reply

KEY_ENV = "RAG_HARDENING_API_KEY"
# Shaped like no known key format, so only real redaction (not a pattern) can hide it.
SECRET = f"Zq{uuid.uuid4().hex}{uuid.uuid4().hex[:12]}"
WRONG_SECRET = f"Wx{uuid.uuid4().hex}{uuid.uuid4().hex[:12]}"
CHAT = "/v1/chat/completions"
RERANK = "/v1/rerank"


def needles(secret: str) -> list[bytes]:
    """The secret, and its base64 at each of the three alignments it can take inside a longer base64 string."""
    raw = secret.encode()
    found = [raw]
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + raw)
        start = (pad * 8 + 5) // 6 + 1  # characters that mix in the padding bytes
        found.append(encoded[start:-4])  # the end may mix in what follows
    return found


def leaks(blob: bytes, secret: str) -> list[bytes]:
    return [n for n in needles(secret) if n in blob]


def test_the_needles_find_a_planted_secret() -> None:
    """The search below can fail: it finds the key plain and base64-encoded inside other text."""
    for prefix in (b"", b"x", b"xy"):
        planted = b"data: " + base64.b64encode(prefix + b"Bearer " + SECRET.encode() + b" trailing") + b"\n"
        assert leaks(planted, SECRET)
    assert leaks(f"header {SECRET}".encode(), SECRET) and not leaks(b"nothing here", SECRET)


def make_beir(root: Path) -> Path:
    folder = root / "beir"
    corpus = [("d1", "Cats", "Cats purr when content."), ("d2", "Rivers", "Rivers flow to the sea."), ("d3", "Bread", "Bread needs yeast.")]
    write(folder / "corpus.jsonl", "".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in corpus))
    write(
        folder / "queries.jsonl", json.dumps({"_id": "q1", "text": "purring cats"}) + "\n" + json.dumps({"_id": "q2", "text": "sea"}) + "\n"
    )
    write(folder / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n")
    return folder


def test_an_api_key_never_appears_in_output_traces_caches_or_the_index(tmp_path: Path, serve: Any, fault: FaultServer) -> None:
    from rag.server import create_app

    embed_url = serve(create_app(token=SECRET))  # rag serve, requiring the key as its bearer token
    write(tmp_path / "docs" / "cats.md", "# Cats\n\nCats purr when they are content. A cat sleeps most of the day.\n")
    write(tmp_path / "docs" / "rivers.md", "# Rivers\n\nRivers carry water from the hills down to the sea.\n")
    write(
        tmp_path / "rag.yaml",
        f"providers:\n"
        f"  rs:\n    kind: openai\n    base_url: {embed_url}\n    api_key_env: {KEY_ENV}\n    max_retries: 1\n"
        f"  fs:\n    kind: openai\n    base_url: {fault.url}\n    api_key_env: {KEY_ENV}\n    max_retries: 1\n"
        "embedding:\n  model: rs/all-MiniLM-L6-v2\n"
        "rerank:\n  model: fs/rerank-x\n"
        "chat:\n  model: fs/chat-x\n"
        "trace:\n  path: traces.jsonl\n"
        "http:\n  backoff_base: 0\n",
    )
    fault.chat_reply = "Cats purr when they are content [1]."
    runs: list[tuple[str, Result]] = []

    def run(*args: str, code: int = 0, key: str = SECRET) -> Result:
        result = rag_process("-v", *args, cwd=tmp_path, env={KEY_ENV: key})
        runs.append((" ".join(args), result))
        assert result.code == code, (args, result.err)
        assert "Traceback" not in result.err
        return result

    # A session that works.
    run("index", "docs", "--json")
    run("query", "why do cats purr", "--json")
    assert not run("ask", "why do cats purr", "--json").json()["cache"]["hit"]
    assert run("ask", "why do cats purr", "--json").json()["cache"]["hit"]
    run("ask", "why do cats purr")  # the terminal rendering, answered from the cache
    run("rerank", "cats", "docs/cats.md", "docs/rivers.md", "--return-documents", "--json")
    run("eval", str(make_beir(tmp_path)), "--save", "run.json", "--json")
    run("status", "--json")

    # Providers that fail, quoting the key back, redirecting to it, or garbling it into JSON.
    fault.then(CHAT, Reply(401, {"error": {"message": f"Incorrect API key provided: Bearer {SECRET}", "key": SECRET}}))
    failed_ask = run("ask", "what do rivers carry", "--no-cache", code=5)
    assert "HTTP 401" in failed_ask.err
    fault.then(RERANK, *[Reply(500, text=f"upstream error for key={SECRET} (Authorization: Bearer {SECRET})")] * 2)
    assert "HTTP 500" in run("rerank", "cats", "docs/cats.md", code=5).err
    fault.then(RERANK, Reply(302, headers={"location": f"http://127.0.0.1:9/login?api_key={SECRET}&user={SECRET}"}))
    assert "redirects to" in run("rerank", "cats", "docs/cats.md", code=5).err
    fault.then(CHAT, Reply(200, text=f'{{"echo": "{SECRET}", "choices": [{{"message"'))
    assert "not valid JSON" in run("ask", "what do rivers carry", "--no-cache", "--no-stream", code=5).err
    write(tmp_path / "docs" / "bread.md", "# Bread\n\nBread needs flour, water and yeast.\n")
    assert "HTTP 401" in run("index", "docs", code=5, key=WRONG_SECRET).err  # rag serve refuses a wrong token

    # The key was really in use: providers received it.
    assert any(seen.headers.get("authorization") == f"Bearer {SECRET}" for seen in fault.seen if seen.path == CHAT)
    assert any(seen.headers.get("authorization") == f"Bearer {SECRET}" for seen in fault.seen if seen.path == RERANK)

    # Nowhere in what rag printed or wrote.
    for args, result in runs:
        for secret in (SECRET, WRONG_SECRET):
            assert not leaks(result.out.encode(), secret), f"key in stdout of rag {args}"
            assert not leaks(result.err.encode(), secret), f"key in stderr of rag {args}"
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    names = {p.relative_to(tmp_path).as_posix() for p in written}
    assert {"traces.jsonl", "run.json", ".rag/embed-cache.sqlite", ".rag/answer-cache.sqlite"} <= names, sorted(names)
    assert any(n.startswith(".rag/chunks.lance/") for n in names)
    for path in written:
        for secret in (SECRET, WRONG_SECRET):
            assert not leaks(path.read_bytes(), secret), f"key in {path.relative_to(tmp_path)}"
    assert len(Path(tmp_path / "traces.jsonl").read_text().splitlines()) >= 4  # query, asks (the failed ones too)
    assert all("DEBUG rag.http: " in r.err for args, r in runs if args != "status --json")  # -v logged every provider call
