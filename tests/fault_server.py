"""A scriptable, fault-injecting provider on 127.0.0.1 for tests.

By default every path answers like a healthy provider of the dialect it
belongs to (OpenAI embeddings and chat, Cohere ``/v2/rerank``, Jina/vLLM/
Infinity ``/v1/rerank``, TEI ``/rerank``). A test scripts faults per path::

    fault.then("/v1/rerank", Reply(429, headers={"Retry-After": "2"}), Reply(500))

Scripted replies are used once each, in order; then the default answer
resumes. Every request is recorded, so tests assert how many attempts happened.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Reply:
    status: int = 200
    json: Any = None
    text: str | None = None  # a raw body, e.g. malformed JSON
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering: past a client's timeout, it is a slow provider
    stream: list[Any] | None = None  # server-sent events: dicts (sent as JSON) or raw strings
    done: bool = True  # end the stream with [DONE]
    cut: bool = False  # drop the connection after the events


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: Any


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def overlap(query: str, doc: str) -> float:
    """A deterministic relevance score: the share of query words in the document."""
    q = words(query)
    return len(q & words(doc)) / max(1, len(q))


def fake_vector(text: str, dims: int) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    vec = np.random.default_rng(seed).standard_normal(dims).astype(np.float32)
    return [float(x) for x in vec / np.linalg.norm(vec)]


class FaultServer:
    """Knobs (all optional): ``dims``, ``usage`` (report token usage), ``base64`` (answer embeddings in base64
    whatever was asked), ``max_batch`` and ``too_big`` (413 or 400 for bigger embedding batches),
    ``rerank_shape`` (jina, vllm, infinity or infinity-data for ``/v1/rerank``), ``chat_reply``."""

    def __init__(self) -> None:
        self.reset()
        self.url = ""  # set by whoever serves it
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["GET", "POST"])])

    def reset(self) -> FaultServer:
        """Back to a healthy provider with no history (the test session reuses servers)."""
        self.script: dict[str, deque[Reply]] = defaultdict(deque)
        self.seen: list[Seen] = []
        self.dims = 8
        self.usage = True
        self.base64 = False
        self.max_batch: int | None = None
        self.too_big = 413
        self.rerank_shape = "jina"
        self.chat_reply = "Paris is the capital of France."
        return self

    # ------------------------------------------------------------------ scripting and counting

    def then(self, path: str, *replies: Reply) -> FaultServer:
        self.script[path].extend(replies)
        return self

    def count(self, path: str | None = None) -> int:
        return sum(1 for s in self.seen if path is None or s.path == path)

    def bodies(self, path: str) -> list[Any]:
        return [s.body for s in self.seen if s.path == path]

    # ------------------------------------------------------------------ serving

    async def _handle(self, request: Request) -> Response:
        path = request.url.path
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self.seen.append(Seen(path, dict(request.headers), body))
        queue = self.script.get(path)
        reply = queue.popleft() if queue else self._default(path, body or {})
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.stream is not None:
            return StreamingResponse(sse(reply.stream, reply.done, reply.cut), reply.status, media_type="text/event-stream")
        if reply.text is not None:
            return Response(reply.text, reply.status, headers=reply.headers, media_type="application/json")
        return JSONResponse(reply.json, reply.status, headers=reply.headers)

    def _default(self, path: str, body: dict[str, Any]) -> Reply:
        if path.endswith("/embeddings"):
            return self._embeddings(body)
        if path == "/v2/rerank":
            return self._cohere(body)
        if path in ("/v1/rerank", "/rerank"):
            return self._tei(body) if "texts" in body else self._rerank(body)
        if path.endswith("/chat/completions"):
            return self._chat(body)
        return Reply(404, {"error": {"message": f"no route {path}"}})

    def _embeddings(self, body: dict[str, Any]) -> Reply:
        texts = body.get("input") or []
        if self.max_batch is not None and len(texts) > self.max_batch:
            message = f"batch size {len(texts)} > maximum allowed batch size {self.max_batch}"
            return Reply(self.too_big, {"error": {"message": message}})
        dims = body.get("dimensions") or self.dims
        encode_b64 = self.base64 or body.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(texts):
            vec = fake_vector(text, dims)
            value: Any = base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode() if encode_b64 else vec
            data.append({"object": "embedding", "index": i, "embedding": value})
        data.reverse()  # clients must order by index
        out: dict[str, Any] = {"object": "list", "data": data, "model": body.get("model")}
        if self.usage:
            out["usage"] = {"prompt_tokens": 7 * len(texts), "total_tokens": 7 * len(texts)}
        return Reply(json=out)

    def _scored(self, body: dict[str, Any], docs: list[str]) -> list[tuple[int, float]]:
        ranked = sorted(((i, overlap(body.get("query", ""), d)) for i, d in enumerate(docs)), key=lambda p: -p[1])
        return ranked[: body.get("top_n") or len(ranked)]

    def _cohere(self, body: dict[str, Any]) -> Reply:
        results = [{"index": i, "relevance_score": s} for i, s in self._scored(body, body.get("documents", []))]
        return Reply(json={"id": "c-1", "results": results, "meta": {"billed_units": {"search_units": 1}}})

    def _rerank(self, body: dict[str, Any]) -> Reply:
        docs = [d if isinstance(d, str) else d.get("text", "") for d in body.get("documents", [])]
        results: list[dict[str, Any]] = [
            {"index": i, "relevance_score": s, "document": {"text": docs[i]}} for i, s in self._scored(body, docs)
        ]
        usage = {"total_tokens": 11 * len(docs)} if self.usage else None
        key = "data" if self.rerank_shape == "infinity-data" else "results"
        out: dict[str, Any] = {key: results, "model": body.get("model")}
        if self.rerank_shape.startswith("infinity"):
            out.update(object="rerank", id="inf-1", created=0)
        if usage:
            out["usage"] = usage
        return Reply(json=out)

    def _tei(self, body: dict[str, Any]) -> Reply:
        return Reply(json=[{"index": i, "score": s} for i, s in self._scored({**body, "top_n": None}, body.get("texts", []))])

    def _chat(self, body: dict[str, Any]) -> Reply:
        usage = {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27} if self.usage else None
        if not body.get("stream"):
            message = {"role": "assistant", "content": self.chat_reply}
            out: dict[str, Any] = {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
            if usage:
                out["usage"] = usage
            return Reply(json=out)
        return Reply(stream=chat_chunks(self.chat_reply, usage if _wants_usage(body) else None))


def _wants_usage(body: dict[str, Any]) -> bool:
    return bool((body.get("stream_options") or {}).get("include_usage"))


def chat_chunks(text: str, usage: dict[str, int] | None) -> list[dict[str, Any]]:
    """OpenAI's streamed shape: a role chunk, one chunk per word, a finish chunk, then usage with no choices."""
    chunks: list[dict[str, Any]] = [{"choices": [{"index": 0, "delta": {"role": "assistant"}}]}]
    pieces = re.findall(r"\S+\s*", text)
    chunks += [{"choices": [{"index": 0, "delta": {"content": p}}]} for p in pieces]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if usage:
        chunks.append({"choices": [], "usage": usage})
    return chunks


class Cut(Exception):
    """Raised inside a streamed body: uvicorn drops the connection mid-response."""


async def sse(chunks: list[Any], done: bool = True, cut: bool = False) -> Any:
    for chunk in chunks:
        yield f"data: {chunk if isinstance(chunk, str) else json.dumps(chunk)}\n\n"
        await asyncio.sleep(0)
    if cut:
        raise Cut("connection dropped on purpose")
    if done:
        yield "data: [DONE]\n\n"
