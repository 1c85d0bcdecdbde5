"""Gateway mode of ``rag serve``, end to end over 127.0.0.1 against the fault-injecting providers (tests/fault_server.py):
fallbacks on 5xx and timeouts, vLLM's /v1/rerank -> /rerank, the cache, usage by tag, team tokens and budgets."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.clirun import write

from fault_server import Reply
from rag.gateway import Gateway
from rag.profile import load_profile
from rag.server import create_app

ADMIN, TEAM_A, TEAM_B = "admin-token-0001", "team-a-token-0001", "team-b-token-0001"


@pytest.fixture
def gateway_url(tmp_path: Path, fault: Any, fault_backup: Any, serve: Callable[[Any], str], monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("RAG_TEST_TEAM_A", TEAM_A)
    monkeypatch.setenv("RAG_TEST_TEAM_B", TEAM_B)
    monkeypatch.setenv("RAG_TEST_UP_KEY", "sk-upstream-secret-0123456789")
    write(
        tmp_path / "rag.yaml",
        f"""providers:
  up: {{kind: openai, base_url: "{fault.url}", api_key_env: RAG_TEST_UP_KEY, max_retries: 1, timeout: 1}}
  backup: {{kind: openai, base_url: "{fault_backup.url}", max_retries: 0}}
  vl: {{kind: vllm, base_url: "{fault.url}", max_retries: 0}}
chat:
  model: up/chat
  fallbacks: [backup/chat]
  price_in_per_1m_tokens: 1000
  price_out_per_1m_tokens: 2000
http:
  backoff_base: 0
gateway:
  tokens:
    team-a: {{token_env: RAG_TEST_TEAM_A}}
    team-b: {{token_env: RAG_TEST_TEAM_B, per_day: 0.0001}}
  prices:
    up/emb: {{input_per_1m_tokens: 1000}}
    backup/emb: {{input_per_1m_tokens: 1000}}
  state: gw
""",
    )
    monkeypatch.chdir(tmp_path)
    profile = load_profile(str(tmp_path / "rag.yaml"))
    return serve(create_app(profile=profile, token=ADMIN, gateway=Gateway(profile)))


def post(url: str, path: str, body: Any, token: str = TEAM_A, **headers: str) -> httpx.Response:
    return httpx.post(url + path, json=body, headers={"authorization": f"Bearer {token}", **headers}, timeout=30)


def get(url: str, path: str, token: str = ADMIN) -> Any:
    response = httpx.get(url + path, headers={"authorization": f"Bearer {token}"}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_embeddings_fall_back_on_5xx_and_are_cached(gateway_url: str, fault: Any, fault_backup: Any) -> None:
    fault.then("/v1/embeddings", Reply(500), Reply(503))  # the first attempt and its one retry
    body = {"model": "up/emb", "input": ["hello world", "second"], "fallbacks": ["backup/emb"], "metadata": {"tags": ["ci"]}}
    first = post(gateway_url, "/v1/embeddings", body)
    assert first.status_code == 200, first.text
    assert first.headers["x-rag-model"] == "backup/emb" and first.headers["x-rag-cache"] == "miss"
    out = first.json()
    assert [d["index"] for d in out["data"]] == [0, 1] and len(out["data"][0]["embedding"]) == 8
    assert (fault.count("/v1/embeddings"), fault_backup.count("/v1/embeddings")) == (2, 1)
    assert fault.seen[0].headers["authorization"] == "Bearer sk-upstream-secret-0123456789"  # the server's key, not the team's

    again = post(gateway_url, "/v1/embeddings", {**body, "fallbacks": []})  # how to serve it is not part of the key
    assert again.headers["x-rag-cache"] == "hit" and again.json()["data"] == out["data"]
    assert fault_backup.count("/v1/embeddings") == 1 and fault.count("/v1/embeddings") == 2
    skipped = post(gateway_url, "/v1/embeddings", {**body, "cache": False})
    assert skipped.headers["x-rag-cache"] == "off" and skipped.headers["x-rag-model"] == "up/emb"
    by_header = post(gateway_url, "/v1/embeddings", body, **{"x-rag-cache": "off"})
    assert by_header.headers["x-rag-cache"] == "off" and fault.count("/v1/embeddings") == 4


def test_chat_falls_back_on_a_timeout_and_streams(gateway_url: str, fault: Any, fault_backup: Any) -> None:
    fault.then("/v1/chat/completions", Reply(delay=3), Reply(delay=3))  # past providers.up.timeout, twice
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    answer = post(gateway_url, "/v1/chat/completions", {"model": "up/chat", "messages": messages})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-rag-model"] == "backup/chat"  # the profile's fallback for its chat model
    out = answer.json()
    assert out["choices"][0]["message"]["content"] == fault_backup.chat_reply and out["usage"]["completion_tokens"] == 7

    streamed = post(gateway_url, "/v1/chat/completions", {"model": "up/chat", "messages": messages, "stream": True, "cache": False})
    assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
    events = [line[len("data: ") :] for line in streamed.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == fault.chat_reply and chunks[-1]["usage"]["completion_tokens"] == 7
    assert fault.bodies("/v1/chat/completions")[-1]["stream"] is True

    cached = post(gateway_url, "/v1/chat/completions", {"model": "up/chat", "messages": messages, "stream": True})
    assert cached.headers["x-rag-cache"] == "hit" and fault.chat_reply in cached.text


def test_vllm_rerank_path_retry_through_the_gateway(gateway_url: str, fault: Any) -> None:
    fault.then("/v1/rerank", Reply(404))
    body = {"model": "vl/reranker", "query": "solar power", "documents": ["bananas", "solar power plants"], "top_n": 1}
    for path in ("/v1/rerank", "/rerank"):
        response = post(gateway_url, path, {**body, "return_documents": True, "cache": False})
        assert response.status_code == 200, response.text
        result = response.json()["results"]
        assert result == [{"index": 1, "relevance_score": 1.0, "document": {"text": "solar power plants"}}]
    assert fault.count("/v1/rerank") == 2 and fault.count("/rerank") == 1  # 404 then /rerank; the second on /v1/rerank
    local = post(gateway_url, "/v1/rerank", {"query": "solar", "documents": ["solar", "moon"]})  # the local model, as before
    assert local.status_code == 200 and local.json()["model"] == "local/minilm-cosine"


def test_usage_by_stage_model_team_and_tag(gateway_url: str, fault: Any) -> None:
    post(gateway_url, "/v1/embeddings", {"model": "up/emb", "input": ["a b c"], "metadata": {"tags": ["ci", "nightly"]}})
    post(gateway_url, "/v1/embeddings", {"model": "up/emb", "input": ["d e f"]}, **{"x-rag-tags": "ci"})
    post(gateway_url, "/v1/embeddings", {"model": "up/emb", "input": ["d e f"]}, **{"x-rag-tags": "ci"})  # a cache hit
    chat = {"model": "up/chat", "messages": [{"role": "user", "content": "hi"}], "metadata": {"tags": ["web"]}}
    assert post(gateway_url, "/v1/chat/completions", chat, token=ADMIN).status_code == 200

    usage = get(gateway_url, "/v1/usage")
    assert usage["by_tag"]["ci"]["calls"] == 2 and usage["by_tag"]["ci"]["cache_hits"] == 1
    assert usage["by_tag"]["nightly"]["input_tokens"] == 7 and usage["by_tag"]["web"]["output_tokens"] == 7
    assert usage["by_stage"]["embed"]["cost"] == pytest.approx(14 * 1000 / 1e6)
    assert usage["by_stage"]["chat"]["cost"] == pytest.approx((20 * 1000 + 7 * 2000) / 1e6)
    assert set(usage["by_model"]) == {"up/emb", "up/chat"} and set(usage["by_team"]) == {"team-a", ""}
    assert usage["spent"] == pytest.approx(usage["total"]["cost"]) and usage["currency"] == "USD"
    mine = get(gateway_url, "/v1/usage", token=TEAM_A)
    assert mine["team"] == "team-a" and set(mine["by_stage"]) == {"embed"} and "by_team" not in mine


def test_wrong_token_and_team_budget(gateway_url: str, fault: Any) -> None:
    body = {"model": "up/emb", "input": ["hello"]}
    for token in ("nope", TEAM_A + "x"):
        wrong = post(gateway_url, "/v1/embeddings", body, token=token)
        assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "missing or wrong bearer token"
    assert httpx.get(gateway_url + "/v1/usage").status_code == 401
    assert fault.count() == 0

    refused = post(gateway_url, "/v1/embeddings", {"model": "up/emb", "input": ["a long enough text " * 20]}, token=TEAM_B)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["type"] == "budget_exceeded" and "gateway.tokens.team-b.per_day" in error["message"]
    assert "nothing was sent" in error["message"] and fault.count() == 0
    assert post(gateway_url, "/v1/embeddings", body, token=TEAM_A).status_code == 200  # another team's budget is its own

    unknown = post(gateway_url, "/v1/embeddings", {"model": "elsewhere/emb", "input": ["x"]})
    assert unknown.status_code == 400 and "is not served here" in unknown.json()["error"]["message"]
    bad = post(gateway_url, "/v1/embeddings", {"model": "up/emb", "input": ["x"], "fallbacks": ["elsewhere/emb"]})
    assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("model 'elsewhere/emb' is not routed here")


def test_provider_failure_is_502_without_secrets(gateway_url: str, fault: Any) -> None:
    fault.then("/v1/embeddings", Reply(401, {"error": {"message": "bad key sk-upstream-secret-0123456789"}}))
    response = post(gateway_url, "/v1/embeddings", {"model": "up/emb", "input": ["x"]})
    assert response.status_code == 502 and response.json()["error"]["type"] == "provider_error"
    assert "sk-upstream" not in response.text and "HTTP 401" in response.text


def test_serve_command_starts_the_gateway(tmp_path: Path, fault: Any) -> None:
    write(tmp_path / "rag.yaml", f'providers:\n  up: {{kind: openai, base_url: "{fault.url}"}}\n')
    proc = subprocess.Popen([sys.executable, "-m", "rag", "serve", "--port", "0"], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.match(r"rag serve: (http://127\.0\.0\.1:\d+) \(models: .*; gateway to up\); Ctrl-C stops", line)
        assert match, line
        response = post(match.group(1), "/v1/embeddings", {"model": "up/emb", "input": ["x"]})
        assert response.status_code == 200 and response.headers["x-rag-model"] == "up/emb"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_the_circuit_breaker_skips_a_failing_provider(gateway_url: str, fault: Any, fault_backup: Any) -> None:
    fault.then("/v1/embeddings", *[Reply(500)] * 6)  # three requests, each tried twice (max_retries: 1)
    body = {"model": "up/emb", "fallbacks": ["backup/emb"], "cache": False}
    for i in range(3):
        response = post(gateway_url, "/v1/embeddings", {**body, "input": [f"text {i}"]})
        assert response.status_code == 200 and response.headers["x-rag-model"] == "backup/emb"
    assert fault.count("/v1/embeddings") == 6
    skipped = post(gateway_url, "/v1/embeddings", {**body, "input": ["text 4"]})  # http.breaker_failures (3) in a row: open
    assert skipped.status_code == 200 and skipped.headers["x-rag-model"] == "backup/emb"
    assert fault.count("/v1/embeddings") == 6 and fault_backup.count("/v1/embeddings") == 4


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/v1/embeddings", {"model": "up/emb", "input": ["x"], "dimensions": 4}, "dimensions cannot be chosen per request here"),
        ("/v1/embeddings", {"model": "up/emb", "input": ["x"], "encoding_format": "int8"}, "encoding_format must be float or base64"),
        ("/v1/chat/completions", {"model": "up/chat", "messages": []}, "messages is required"),
        (
            "/v1/chat/completions",
            {"model": "up/chat", "messages": [{"role": "user", "content": "x"}], "tools": [{}]},
            "tools cannot be passed",
        ),
        (
            "/v1/chat/completions",
            {"model": "nowhere/chat", "messages": [{"role": "user", "content": "x"}]},
            "model 'nowhere/chat' is not routed",
        ),
    ],
)
def test_requests_it_cannot_serve_are_400(gateway_url: str, fault: Any, path: str, body: Any, message: str) -> None:
    response = post(gateway_url, path, body)
    assert response.status_code == 400 and response.json()["error"]["message"].startswith(message)
    assert fault.count() == 0
