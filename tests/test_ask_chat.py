"""`rag ask` with a chat model: a real OpenAI-compatible server on 127.0.0.1 (starlette under uvicorn).

The server returns one fixed completion with a valid citation [1] and an
invalid one [7], streamed (SSE) or not, and counts calls, so the tests see
that a cache hit and the no-answer path never reach it. The API key is
secret-looking; no output or file may contain it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from tests.clirun import rag, write
from tests.test_ask import corpus

SECRET = "sk-test-4f1c9a7e2b8d6053a1e9c7b5d3f10872"
REPLY = "Foxes are omnivores [1]. They eat mice and berries [1][7]. Some say foxes fly [7]."
CLEAN = "Foxes are omnivores [1]. They eat mice and berries [1]. Some say foxes fly."


class ChatServer:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.complete, methods=["POST"])])

    async def complete(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        if body.get("model") == "missing":
            return JSONResponse({"error": {"message": "model 'missing' not found"}}, 404)
        usage = {"prompt_tokens": 321, "completion_tokens": 17, "total_tokens": 338}
        if not body.get("stream"):
            message = {"role": "assistant", "content": REPLY}
            return JSONResponse(
                {"model": "fixed-1", "choices": [{"index": 0, "message": message, "finish_reason": "stop"}], "usage": usage}
            )
        return StreamingResponse(self.events(usage), media_type="text/event-stream")

    async def events(self, usage: dict[str, int]) -> Any:
        pieces = [REPLY[i : i + 5] for i in range(0, len(REPLY), 5)]  # splits markers across events
        for piece in pieces:
            yield "data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": piece}}]}) + "\n\n"
            await asyncio.sleep(0)
        yield "data: " + json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}) + "\n\n"
        yield "data: " + json.dumps({"choices": [], "usage": usage}) + "\n\n"
        yield "data: [DONE]\n\n"


@pytest.fixture
def chat(serve: Callable[[Any], str], tmp_path: Path) -> ChatServer:
    server = ChatServer()
    url = serve(server.app)
    corpus(tmp_path)
    write(
        tmp_path / "rag.yaml",
        f"providers:\n  testchat:\n    kind: openai\n    base_url: {url}\n    api_key_env: RAG_TEST_CHAT_KEY\n    max_retries: 0\n"
        "chat:\n  model: testchat/fixed-model\n  price_in_per_1m_tokens: 1.0\n  price_out_per_1m_tokens: 2.0\n"
        "trace:\n  path: trace.jsonl\n",
    )
    return server


ENV = {"RAG_TEST_CHAT_KEY": SECRET}


def test_streamed_answer_cache_and_trace(chat: ChatServer, tmp_path: Path) -> None:
    outputs = []
    first = rag("ask", "what do foxes eat?", cwd=tmp_path, env=ENV)
    outputs.append(first)
    assert first.code == 0, first.err
    assert len(chat.requests) == 1 and chat.requests[0]["stream"] is True
    assert chat.headers[0]["authorization"] == f"Bearer {SECRET}"
    answer = first.out.split("\n\nSources")[0].strip()
    assert answer == CLEAN
    assert "Extractive" not in first.out
    assert "removed citations [7]" in first.err
    sources = first.out.split("Sources\n")[1].splitlines()
    assert sources[0].startswith("[1] docs/animals.txt")
    prompt = chat.requests[0]["messages"][1]["content"]
    assert "[1] animals\nFile: docs/animals.txt\nFoxes are omnivores." in prompt
    assert prompt.endswith("Question: what do foxes eat?")
    assert chat.requests[0]["temperature"] == 0.0 and chat.requests[0]["max_tokens"] == 512

    second = rag("ask", "what do foxes eat?", cwd=tmp_path, env=ENV)
    outputs.append(second)
    assert second.code == 0 and len(chat.requests) == 1  # served from the cache
    assert second.out.split("\n\nSources")[0].strip() == CLEAN
    assert "cached answer" in second.err

    as_json = rag("ask", "what do foxes eat?", "--json", cwd=tmp_path, env=ENV)
    outputs.append(as_json)
    out = as_json.json()
    assert len(chat.requests) == 1 and out["cache"]["hit"] is True
    assert out["cache"]["saved"]["input_tokens"] == 321 and "chat" not in out["usage"]

    trace = [json.loads(line) for line in (tmp_path / "trace.jsonl").read_text().splitlines()]
    assert [t["cache"]["hit"] for t in trace] == [False, True, True]
    assert trace[0]["models"]["chat"] == {"alias": "testchat/fixed-model", "model": "testchat/fixed-model"}
    assert trace[0]["usage"]["chat"]["input_tokens"] == 321 and trace[0]["usage"]["chat"]["cost_usd"] > 0
    assert trace[0]["invalid_citations"] == [7] and trace[0]["cited"] == [1]
    assert trace[0]["latency_ms"]["chat"] > 0
    assert_no_secret(tmp_path, outputs)


def test_non_streamed_json_without_cache(chat: ChatServer, tmp_path: Path) -> None:
    result = rag("ask", "what do foxes eat?", "--json", "--no-cache", cwd=tmp_path, env=ENV)
    assert result.code == 0, result.err
    assert len(chat.requests) == 1 and not chat.requests[0].get("stream")
    out = result.json()
    assert out["answer"] == CLEAN and out["extractive"] is False
    assert out["invalid_citations"] == [7]
    assert [c["n"] for c in out["citations"] if c["cited"]] == [1]
    assert out["citations"][0]["source"].endswith("animals.txt")
    assert out["models"]["chat"]["alias"] == "testchat/fixed-model"
    assert out["usage"]["chat"] == {"input_tokens": 321, "output_tokens": 17, "calls": 1, "counted_locally": False}
    assert out["cost"]["chat"] == pytest.approx((321 * 1.0 + 17 * 2.0) / 1e6)
    assert out["cache"] == {"enabled": False, "hit": False, "chat": "off"}
    assert {"retrieve", "chat", "total"} <= set(out["latency_ms"])
    assert not (tmp_path / ".rag" / "answer-cache.sqlite").exists()

    again = rag("ask", "what do foxes eat?", "--no-cache", "--no-stream", cwd=tmp_path, env=ENV)
    assert again.code == 0 and len(chat.requests) == 2 and not chat.requests[1].get("stream")
    assert again.out.split("\n\nSources")[0].strip() == CLEAN
    assert_no_secret(tmp_path, [result, again])


def test_no_answer_never_calls_the_model(chat: ChatServer, tmp_path: Path) -> None:
    result = rag("ask", "what is the capital of Peru?", "--threshold", "0.9", cwd=tmp_path, env=ENV)
    assert result.code == 10 and chat.requests == []
    assert "do not answer" in result.out


def test_extractive_flag_and_provider_failure(chat: ChatServer, tmp_path: Path) -> None:
    extractive = rag("ask", "what do foxes eat?", "--extractive", "--json", cwd=tmp_path, env=ENV)
    assert extractive.code == 0 and extractive.json()["extractive"] and chat.requests == []
    missing_key = rag("ask", "what do foxes eat?", cwd=tmp_path, env={"RAG_TEST_CHAT_KEY": ""})
    assert missing_key.code == 3 and "RAG_TEST_CHAT_KEY" in missing_key.err
    gone = rag("ask", "what do foxes eat?", "--model", "testchat/missing", cwd=tmp_path, env=ENV)
    assert gone.code == 5 and gone.err.startswith("error: ") and gone.err.count("\n") == 1
    assert "404" in gone.err and chat.requests[-1]["model"] == "missing"
    last = json.loads((tmp_path / "trace.jsonl").read_text().splitlines()[-1])
    assert last["outcome"] == "error" and "404" in last["error"] and last["models"]["embedding"]["model"]
    assert_no_secret(tmp_path, [extractive, missing_key, gone])


def assert_no_secret(root: Path, outputs: list[Any]) -> None:
    for result in outputs:
        assert SECRET not in result.out and SECRET not in result.err
    for path in root.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
