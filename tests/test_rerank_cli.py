"""``rag rerank`` end to end: every dialect's wire format, the vLLM path retry, fallbacks, validation, key hygiene."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from clirun import rag, rag_process, write
from fault_server import FaultServer, Reply
from rag.tokens import count_tokens

KEY = "sk-rerank-test-9f8e7d6c5b4a39281706"
QUERY = "solar panels energy"
DOCS = {"a.txt": "Wind turbines generate energy.", "b.txt": "Solar panels convert sunlight into energy.", "c.txt": "Bananas are yellow."}
PATHS = {"cohere": "/v2/rerank", "tei": "/rerank", "jina": "/v1/rerank", "vllm": "/v1/rerank", "infinity": "/v1/rerank"}


@pytest.fixture
def docs(tmp_path: Path) -> list[str]:
    for name, text in DOCS.items():
        write(tmp_path / name, text)
    return list(DOCS)


def profile(tmp_path: Path, kind: str, url: str, *, fallback_url: str | None = None, retries: int = 0) -> str:
    text = f"providers:\n  rr:\n    kind: {kind}\n    base_url: {url}\n    api_key_env: RAG_TEST_KEY\n    max_retries: {retries}\n"
    if fallback_url:
        text += f"  backup:\n    kind: {kind}\n    base_url: {fallback_url}\n    max_retries: 0\n"
    text += "rerank:\n  model: rr/rerank-x\n"
    if fallback_url:
        text += "  fallbacks: [backup/rerank-y]\n"
    text += "http:\n  backoff_base: 0\n"
    return str(write(tmp_path / f"{kind}.yaml", text))


def run(tmp_path: Path, *args: str) -> Any:
    return rag("rerank", *args, cwd=tmp_path, env={"RAG_TEST_KEY": KEY})


@pytest.mark.parametrize("kind", ["cohere", "jina", "vllm", "infinity", "tei"])
def test_each_dialect_answers_in_one_shape(tmp_path: Path, docs: list[str], fault: FaultServer, kind: str) -> None:
    result = run(tmp_path, QUERY, *docs, "--top-n", "2", "--return-documents", "--json", "--profile", profile(tmp_path, kind, fault.url))
    assert result.code == 0, result.err
    out = result.json()
    assert [r["index"] for r in out["results"]] == [1, 0]
    assert [r["document"] for r in out["results"]] == [{"id": "b.txt", "text": DOCS["b.txt"]}, {"id": "a.txt", "text": DOCS["a.txt"]}]
    assert [round(r["relevance_score"], 4) for r in out["results"]] == [1.0, 0.3333]
    assert out["model"] == "rr/rerank-x"
    assert out["extra_fields"]["provider"] == "rr" and out["extra_fields"]["request_type"] == "rerank"
    assert out["extra_fields"]["latency"] >= 0
    assert set(out["usage"]) == {"input_tokens", "output_tokens", "calls", "counted_locally", "cost_usd"}
    assert fault.count() == 1 and fault.seen[0].path == PATHS[kind]
    assert fault.seen[0].headers["authorization"] == f"Bearer {KEY}"


def test_cohere_body_and_counted_usage(tmp_path: Path, docs: list[str], fault: FaultServer) -> None:
    args = [QUERY, *docs, "--top-n", "2", "--max-tokens-per-doc", "3", "--json", "--profile", profile(tmp_path, "cohere", fault.url)]
    out = run(tmp_path, *args).json()
    body = fault.bodies("/v2/rerank")[0]
    assert body == {"model": "rerank-x", "query": QUERY, "documents": list(DOCS.values()), "top_n": 2, "max_tokens_per_doc": 3}
    q = count_tokens(QUERY)
    assert out["usage"]["counted_locally"] is True  # Cohere bills search units, not tokens
    assert out["usage"]["input_tokens"] == sum(q + count_tokens(d) for d in DOCS.values())


@pytest.mark.parametrize("kind", ["jina", "vllm", "infinity"])
def test_openai_style_body_and_reported_usage(tmp_path: Path, docs: list[str], fault: FaultServer, kind: str) -> None:
    out = run(tmp_path, QUERY, *docs, "--top-n", "2", "--json", "--profile", profile(tmp_path, kind, fault.url)).json()
    body = fault.bodies("/v1/rerank")[0]
    assert body == {"model": "rerank-x", "query": QUERY, "documents": list(DOCS.values()), "top_n": 2, "return_documents": False}
    assert out["usage"]["input_tokens"] == 33 and out["usage"]["counted_locally"] is False
    assert "document" not in out["results"][0]


def test_infinity_legacy_data_shape(tmp_path: Path, docs: list[str], fault: FaultServer) -> None:
    fault.rerank_shape = "infinity-data"
    out = run(tmp_path, QUERY, *docs, "--json", "--profile", profile(tmp_path, "infinity", fault.url)).json()
    assert [r["index"] for r in out["results"]] == [1, 0, 2]


def test_tei_body_and_truncation_on_our_side(tmp_path: Path, fault: FaultServer) -> None:
    long = "solar " + "word " * 200
    write(tmp_path / "long.txt", long)
    write(tmp_path / "short.txt", "panels")
    args = [QUERY, "long.txt", "short.txt", "--top-n", "1", "--max-tokens-per-doc", "5", "--json", "--profile"]
    out = run(tmp_path, *args, profile(tmp_path, "tei", fault.url)).json()
    body = fault.bodies("/rerank")[0]
    assert set(body) == {"query", "texts", "raw_scores", "truncate"} and body["raw_scores"] is False and body["truncate"] is True
    assert count_tokens(body["texts"][0]) == 5 and body["texts"][1] == "panels"
    assert len(out["results"]) == 1  # TEI has no top_n: we cut


@pytest.mark.parametrize("status", [404, 405, 501])
def test_vllm_retries_on_the_unversioned_path(tmp_path: Path, docs: list[str], fault: FaultServer, status: int) -> None:
    fault.then("/v1/rerank", Reply(status, {"detail": "Not Found"}))
    result = run(tmp_path, QUERY, *docs, "--json", "--profile", profile(tmp_path, "vllm", fault.url))
    assert result.code == 0, result.err
    assert [s.path for s in fault.seen] == ["/v1/rerank", "/rerank"]
    assert result.json()["results"][0]["index"] == 1


def test_other_dialects_do_not_guess_paths(tmp_path: Path, docs: list[str], fault: FaultServer) -> None:
    fault.then("/v1/rerank", Reply(404, {"detail": "Not Found"}))
    result = run(tmp_path, QUERY, *docs, "--profile", profile(tmp_path, "jina", fault.url))
    assert result.code == 5
    assert result.err == "error: rerank rr/rerank-x: POST /v1/rerank: HTTP 404: Not Found; check the base_url and the model name\n"
    assert fault.count() == 1


def test_retries_then_falls_back(tmp_path: Path, docs: list[str], fault: FaultServer, fault_backup: FaultServer) -> None:
    fault.then("/v1/rerank", Reply(500), Reply(503))
    path = profile(tmp_path, "jina", fault.url, fallback_url=fault_backup.url, retries=1)
    result = run(tmp_path, QUERY, *docs, "--json", "--profile", path)
    assert result.code == 0, result.err
    assert result.json()["model"] == "backup/rerank-y" and result.json()["extra_fields"]["provider"] == "backup"
    assert (fault.count(), fault_backup.count()) == (2, 1)


def test_every_model_failing_is_one_line(tmp_path: Path, docs: list[str], fault: FaultServer, fault_backup: FaultServer) -> None:
    fault.then("/v1/rerank", Reply(500, {"error": {"message": "primary down"}}))
    fault_backup.then("/v1/rerank", Reply(text="<html>oops"))
    result = run(tmp_path, QUERY, *docs, "--profile", profile(tmp_path, "jina", fault.url, fallback_url=fault_backup.url))
    assert result.code == 5 and result.out == ""
    assert result.err.count("\n") == 1
    assert result.err.startswith("error: rerank: every model failed: rerank rr/rerank-x: POST /v1/rerank: HTTP 500: primary down | ")
    assert "rerank backup/rerank-y: POST /v1/rerank: HTTP 200 but the body is not valid JSON: '<html>oops'" in result.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["", "a.txt"], "query is required for rerank"),
        (["  ", "a.txt"], "query is required for rerank"),
        ([QUERY], "documents are required for rerank"),
        ([QUERY, "a.txt", "empty.txt"], "document text is required for rerank at index 1 (empty.txt has none)"),
        ([QUERY, "a.txt", "--top-n", "0"], "top_n must be at least 1"),
        ([QUERY, "--documents", "bad.json"], "document text is required for rerank at index 2"),
    ],
)
def test_validation_before_any_call(tmp_path: Path, docs: list[str], fault: FaultServer, args: list[str], message: str) -> None:
    write(tmp_path / "empty.txt", "\n")
    write(tmp_path / "bad.json", json.dumps([{"text": "x"}, "y", {"id": "no-text"}]))
    result = run(tmp_path, *args, "--profile", profile(tmp_path, "jina", fault.url))
    assert (result.code, result.out, result.err) == (2, "", f"error: {message}\n")
    assert fault.count() == 0


def test_documents_json_keeps_ids_and_meta(tmp_path: Path, fault: FaultServer) -> None:
    items = [{"text": "Bananas are yellow.", "id": "fruit", "meta": {"k": 1}}, {"text": "Solar panels and energy", "id": 7}]
    write(tmp_path / "docs.json", json.dumps(items))
    args = [QUERY, "--documents", "docs.json", "--return-documents", "--json", "--profile", profile(tmp_path, "jina", fault.url)]
    out = run(tmp_path, *args).json()
    assert [r["document"] for r in out["results"]] == [
        {"id": "7", "text": "Solar panels and energy"},
        {"id": "fruit", "text": "Bananas are yellow.", "meta": {"k": 1}},
    ]


def test_table_output(tmp_path: Path, docs: list[str], fault: FaultServer) -> None:
    result = run(tmp_path, QUERY, *docs, "--profile", profile(tmp_path, "jina", fault.url))
    assert result.code == 0
    lines = [line for line in result.out.splitlines() if ".txt" in line]
    assert [next(d for d in docs if d in line) for line in lines] == ["b.txt", "a.txt", "c.txt"]
    assert "rr/rerank-x" in result.err  # who scored them: beside the results, not in them


@pytest.mark.parametrize("kind", ["vllm", "jina", "infinity", "openai"])
def test_against_rag_serve(tmp_path: Path, docs: list[str], rag_serve_url: str, kind: str) -> None:
    write(
        tmp_path / "serve.yaml",
        f"providers:\n  srv:\n    kind: {kind}\n    base_url: {rag_serve_url}\nrerank:\n  model: srv/minilm-cosine\n",
    )
    remote = run(tmp_path, "solar power", *docs, "--json", "--profile", "serve.yaml")
    local = run(tmp_path, "solar power", *docs, "--json", "--model", "local/minilm-cosine")
    assert remote.code == 0, remote.err
    got, want = remote.json(), local.json()
    assert got["model"] == "srv/minilm-cosine" and got["usage"]["counted_locally"] is False
    assert [r["index"] for r in got["results"]] == [r["index"] for r in want["results"]] == [1, 0, 2]
    for a, b in zip(got["results"], want["results"], strict=True):
        assert a["relevance_score"] == pytest.approx(b["relevance_score"], abs=1e-5)


def test_rag_serve_validation_reaches_the_user(tmp_path: Path, rag_serve_url: str) -> None:
    write(tmp_path / "serve.yaml", f"providers:\n  srv:\n    kind: jina\n    base_url: {rag_serve_url}\nrerank:\n  model: srv/nope\n")
    write(tmp_path / "a.txt", "x")
    result = run(tmp_path, "q", "a.txt", "--profile", "serve.yaml")
    assert result.code == 5
    assert "HTTP 400: model 'nope' is not served here; this server serves local/minilm-cosine" in result.err


def test_the_key_never_shows(tmp_path: Path, docs: list[str], fault: FaultServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    path = profile(tmp_path, "cohere", fault.url, retries=1)
    ok = run(tmp_path, QUERY, *docs, "--json", "--return-documents", "--profile", path)
    fault.then("/v2/rerank", Reply(401, {"message": f"invalid api token {KEY}; got header Authorization: Bearer {KEY}"}))
    bad = run(tmp_path, QUERY, *docs, "--profile", path)
    assert ok.code == 0 and bad.code == 5
    assert "HTTP 401: invalid api token ***; got header Authorization: Bearer ***; check the API key in RAG_TEST_KEY" in bad.err
    assert any(r.name == "rag.http" and getattr(r, "status", None) == 401 for r in caplog.records)
    for text in (ok.out, ok.err, bad.out, bad.err, caplog.text):
        assert KEY not in text and KEY[-12:] not in text
    assert all(s.headers["authorization"] == f"Bearer {KEY}" for s in fault.seen)


def test_the_key_never_shows_at_debug_level_in_a_real_process(tmp_path: Path, docs: list[str], fault: FaultServer) -> None:
    fault.then("/v2/rerank", Reply(503, {"message": f"upstream said {KEY}"}, headers={"Retry-After": "0"}))
    path = profile(tmp_path, "cohere", fault.url, retries=1)
    result = rag_process("-v", "rerank", QUERY, *docs, "--json", "--profile", path, cwd=tmp_path, env={"RAG_TEST_KEY": KEY}, timeout=60)
    assert result.code == 0, result.err
    assert "rerank rr/rerank-x POST /v2/rerank attempt 1: 503" in result.err
    assert "retrying in 0.00s (Retry-After)" in result.err
    assert KEY not in result.out + result.err
