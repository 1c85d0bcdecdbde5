"""``rag serve``: endpoints over real HTTP, validation as 400s, the bearer token, micro-batching, the command."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from clirun import rag
from rag.microbatch import MicroBatcher
from rag.providers.local import shared_model
from rag.server import create_app


def post(url: str, path: str, body: Any, **headers: str) -> httpx.Response:
    return httpx.post(url + path, json=body, headers=headers, timeout=30)


def test_health_and_models(rag_serve_url: str) -> None:
    assert httpx.get(rag_serve_url + "/health").json() == {"status": "ok"}
    ids = [m["id"] for m in httpx.get(rag_serve_url + "/v1/models").json()["data"]]
    assert ids == ["local/all-MiniLM-L6-v2", "local/minilm-cosine"]


def test_embeddings_float_and_base64_match_the_model(rag_serve_url: str) -> None:
    texts = ["first text", "a second, longer text"]
    plain = post(rag_serve_url, "/v1/embeddings", {"input": texts, "model": "all-MiniLM-L6-v2"}).json()
    packed = post(rag_serve_url, "/v1/embeddings", {"input": texts, "encoding_format": "base64"}).json()
    want, counts = shared_model().encode_counted(texts)
    got = np.array([d["embedding"] for d in sorted(plain["data"], key=lambda d: d["index"])], dtype=np.float32)
    np.testing.assert_allclose(got, want, atol=1e-6)
    unpacked = np.array([np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in packed["data"]])
    np.testing.assert_array_equal(unpacked, got)
    assert plain["usage"] == {"prompt_tokens": sum(counts), "total_tokens": sum(counts)}
    assert plain["model"] == "local/all-MiniLM-L6-v2" and plain["object"] == "list"
    single = post(rag_serve_url, "/v1/embeddings", {"input": "first text"}).json()
    np.testing.assert_allclose(single["data"][0]["embedding"], got[0], atol=1e-6)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({}, 400, "input is required: a string or a list of strings"),
        ({"input": [[1, 2, 3]]}, 400, "input must hold strings; token arrays are not supported"),
        ({"input": ["x"], "model": "text-embedding-3-small"}, 400, "model 'text-embedding-3-small' is not served here"),
        ({"input": ["x"], "dimensions": 128}, 400, "dimensions must be 384 for local/all-MiniLM-L6-v2"),
        ({"input": ["x"], "encoding_format": "int8"}, 400, "encoding_format must be float or base64"),
    ],
)
def test_embedding_errors(rag_serve_url: str, body: Any, status: int, message: str) -> None:
    response = post(rag_serve_url, "/v1/embeddings", body)
    assert response.status_code == status
    assert response.json()["error"]["message"].startswith(message)


def test_too_many_inputs_is_413(serve: Any) -> None:
    url = serve(create_app(max_inputs=2))
    response = post(url, "/v1/embeddings", {"input": ["a", "b", "c"]})
    assert response.status_code == 413
    assert response.json()["error"]["message"] == "batch too large: 3 inputs, at most 2 per request"


@pytest.mark.parametrize("path", ["/v1/rerank", "/rerank"])
def test_rerank_shape(rag_serve_url: str, path: str) -> None:
    docs = ["Bananas are yellow.", {"text": "Solar panels make electricity."}, "Wind power"]
    body = {"model": "minilm-cosine", "query": "solar energy", "documents": docs, "top_n": 2, "return_documents": True}
    out = post(rag_serve_url, path, body).json()
    assert out["model"] == "local/minilm-cosine"
    assert [r["index"] for r in out["results"]] == [1, 2]
    assert out["results"][0]["document"] == {"text": "Solar panels make electricity."}
    assert out["results"][0]["relevance_score"] > out["results"][1]["relevance_score"]
    assert out["usage"]["total_tokens"] > 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"documents": ["a"]}, "query is required for rerank"),
        ({"query": "q"}, "documents are required for rerank"),
        ({"query": "q", "documents": []}, "documents are required for rerank"),
        ({"query": "q", "documents": ["a", {"text": ""}]}, "document text is required for rerank at index 1"),
        ({"query": "q", "documents": ["a", {"id": 3}]}, "document text is required for rerank at index 1"),
        ({"query": "q", "documents": ["a"], "top_n": 0}, "top_n must be at least 1"),
    ],
)
def test_rerank_validation_is_400(rag_serve_url: str, body: Any, message: str) -> None:
    for path in ("/v1/rerank", "/rerank"):
        response = post(rag_serve_url, path, body)
        assert response.status_code == 400
        assert response.json()["error"] == {"message": message, "type": "invalid_request_error", "code": 400}


def test_not_json_is_400(rag_serve_url: str) -> None:
    response = httpx.post(rag_serve_url + "/v1/rerank", content=b"{nope", timeout=10)
    assert response.status_code == 400 and response.json()["error"]["message"] == "the request body must be JSON"


def test_bearer_token(serve: Any) -> None:
    url = serve(create_app(token="s3cret-token"))
    body = {"query": "q", "documents": ["a"]}
    assert httpx.get(url + "/health").status_code == 200
    assert post(url, "/v1/rerank", body).status_code == 401
    wrong = post(url, "/v1/rerank", body, authorization="Bearer nope")
    assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "missing or wrong bearer token"
    assert "s3cret" not in wrong.text
    assert post(url, "/v1/rerank", body, authorization="Bearer s3cret-token").status_code == 200
    assert httpx.get(url + "/v1/models", headers={"authorization": "Bearer s3cret-token"}).status_code == 200


def test_concurrent_requests_share_one_model_call() -> None:
    model = shared_model()

    async def scenario() -> tuple[list[Any], MicroBatcher]:
        batcher = MicroBatcher(model.encode_counted, max_batch=64, max_wait=0.05)
        await batcher.start()
        try:
            # all five are queued before the worker runs, so they form one batch
            answers = await asyncio.gather(*(batcher.encode([f"text {i}", f"other {i}"]) for i in range(5)))
        finally:
            await batcher.stop()
        return answers, batcher

    answers, batcher = asyncio.run(scenario())
    assert (batcher.batches, batcher.requests) == (1, 5)
    for i, (vectors, counts) in enumerate(answers):
        want, want_counts = model.encode_counted([f"text {i}", f"other {i}"])
        np.testing.assert_allclose(vectors, want, atol=1e-5)
        assert counts == want_counts


def test_a_failing_model_fails_each_request_not_the_batcher() -> None:
    calls: list[int] = []

    def encode(texts: list[str]) -> Any:
        calls.append(len(texts))
        if len(calls) == 1:
            raise RuntimeError("model fell over")
        return shared_model().encode_counted(texts)

    async def scenario() -> tuple[list[Any], Any]:
        batcher = MicroBatcher(encode, max_wait=0.01)
        await batcher.start()
        try:
            first = await asyncio.gather(batcher.encode(["a"]), batcher.encode(["b"]), return_exceptions=True)
            second = await batcher.encode(["c"])
        finally:
            await batcher.stop()
        return first, second

    first, second = asyncio.run(scenario())
    assert [str(e) for e in first] == ["model fell over", "model fell over"]
    assert second[0].shape == (1, 384) and calls == [2, 1]


def test_serve_command_needs_its_token_env(tmp_path: Path) -> None:
    result = rag("serve", "--token-env", "RAG_TEST_UNSET_TOKEN", cwd=tmp_path)
    assert (result.code, result.err) == (
        3,
        "error: --token-env RAG_TEST_UNSET_TOKEN: RAG_TEST_UNSET_TOKEN is not set; export it to the token clients must send\n",
    )


def test_serve_command_reports_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = rag("serve", "--port", str(port), cwd=tmp_path)
    assert result.code == 2
    assert re.fullmatch(rf"error: cannot listen on 127\.0\.0\.1:{port}: .+; pick another --port or --host\n", result.err)


def test_serve_command_runs_a_server(tmp_path: Path) -> None:
    env = {**os.environ, "RAG_SERVE_TOKEN": "tok-123456"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rag", "serve", "--port", "0", "--token-env", "RAG_SERVE_TOKEN"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.match(
            r"rag serve: (http://127\.0\.0\.1:\d+) \(models: local/all-MiniLM-L6-v2, local/minilm-cosine\); Ctrl-C stops", line
        )
        assert match, line
        url = match.group(1)
        # the socket listens before the model loads: this request waits rather than being refused
        response = post(url, "/v1/rerank", {"query": "cats", "documents": ["dogs", "cats"]}, authorization="Bearer tok-123456")
        assert response.status_code == 200 and response.json()["results"][0]["index"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=20)
