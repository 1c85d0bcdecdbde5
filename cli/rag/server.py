"""``rag serve``: an OpenAI-compatible HTTP server over the local models.

    GET  /health            liveness
    GET  /v1/models         local/all-MiniLM-L6-v2 (embed), local/minilm-cosine (rerank)
    POST /v1/embeddings     OpenAI shape; encoding_format float or base64
    POST /v1/rerank         Jina/vLLM shape; also at /rerank

Concurrent requests share model calls through a :class:`MicroBatcher`. An
optional bearer token guards everything but ``/health``.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from rag.errors import RagError, UsageError
from rag.microbatch import MicroBatcher
from rag.providers.local import DIMENSIONS, MODEL_ALIASES, MODEL_NAME, LocalCosineReranker, cosine_hits
from rag.text import clean_text

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

log = logging.getLogger("rag.server")

EMBED_ID = f"local/{MODEL_NAME}"
RERANK_ID = f"local/{LocalCosineReranker.NAME}"
_EMBED_NAMES = {EMBED_ID, *MODEL_ALIASES, *(f"local/{a}" for a in MODEL_ALIASES)}
_RERANK_NAMES = {RERANK_ID, LocalCosineReranker.NAME, "cosine", f"local/{MODEL_NAME}", MODEL_NAME}

Handler = Callable[["Request"], Awaitable["Response"]]


class BadRequest(RagError):
    """Answered as an OpenAI-style error body with ``status``."""

    def __init__(self, message: str, status: int = 400, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


def create_app(*, token: str | None = None, max_batch: int = 256, max_wait: float = 0.005, max_inputs: int = 2048) -> Starlette:
    """The ASGI app. The model loads at start-up, so the first request is not slow."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        from rag.providers.local import shared_model

        model = shared_model()
        batcher = MicroBatcher(model.encode_counted, max_batch=max_batch, max_wait=max_wait)
        await batcher.start()
        app.state.batcher = batcher
        try:
            yield
        finally:
            await batcher.stop()

    async def embeddings(request: Request) -> Response:
        body = await _json_body(request)
        texts = _inputs(body, max_inputs)
        _check_model(body.get("model"), _EMBED_NAMES, EMBED_ID)
        if body.get("dimensions") not in (None, DIMENSIONS):
            raise BadRequest(f"dimensions must be {DIMENSIONS} for {EMBED_ID} (it cannot be shortened)")
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise BadRequest("encoding_format must be float or base64")
        vectors, counts = await _batcher(request).encode(texts)
        data = [{"object": "embedding", "index": i, "embedding": _encode_vector(vector, encoding)} for i, vector in enumerate(vectors)]
        tokens = sum(counts)
        return _json({"object": "list", "data": data, "model": EMBED_ID, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    async def rerank(request: Request) -> Response:
        from rag.rerank import validate

        body = await _json_body(request)
        query, documents, top_n = body.get("query"), body.get("documents"), body.get("top_n")
        texts = [_doc_text(d) for d in documents] if isinstance(documents, list) else []
        if top_n is not None and not isinstance(top_n, int):
            raise BadRequest("top_n must be a whole number")
        validate(query, texts, top_n)
        _check_model(body.get("model"), _RERANK_NAMES, RERANK_ID)
        query, texts = clean_text(str(query)), [clean_text(t) for t in texts]  # JSON may escape lone surrogates
        scored = texts
        max_tokens = body.get("max_tokens_per_doc")
        if isinstance(max_tokens, int) and max_tokens > 0:
            from rag.tokens import truncate_tokens

            scored = [truncate_tokens(t, max_tokens) for t in texts]
        vectors, counts = await _batcher(request).encode([str(query), *scored])
        results = []
        for hit in cosine_hits(vectors, top_n):
            item: dict[str, Any] = {"index": hit.index, "relevance_score": hit.score}
            if body.get("return_documents"):
                item["document"] = {"text": texts[hit.index]}
            results.append(item)
        tokens = sum(counts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return _json({"id": f"rerank-{uuid.uuid4().hex}", "model": RERANK_ID, "results": results, "usage": usage})

    async def models(request: Request) -> Response:
        data = [
            {"id": EMBED_ID, "object": "model", "owned_by": "rag", "task": "embed", "dimensions": DIMENSIONS},
            {"id": RERANK_ID, "object": "model", "owned_by": "rag", "task": "rerank"},
        ]
        return _json({"object": "list", "data": data})

    async def health(request: Request) -> Response:
        return _json({"status": "ok"})

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/v1/models", _guarded(models, token), methods=["GET"]),
        Route("/v1/embeddings", _guarded(embeddings, token), methods=["POST"]),
        Route("/v1/rerank", _guarded(rerank, token), methods=["POST"]),
        Route("/rerank", _guarded(rerank, token), methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def bind(host: str, port: int) -> socket.socket:
    """Listen before serving: a busy port is one clear error, and clients that connect while the model loads wait."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say they are TCP;
    # without it every response waits ~40 ms for a delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port or --host") from None
    return sock


def run(app: Starlette, sock: socket.socket) -> None:
    """Serve until Ctrl-C."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    server.run(sockets=[sock])


# --------------------------------------------------------------------------- helpers


def _batcher(request: Request) -> MicroBatcher:
    batcher: MicroBatcher = request.app.state.batcher
    return batcher


def _guarded(handler: Handler, token: str | None) -> Handler:
    async def guarded(request: Request) -> Response:
        try:
            if token is not None:
                given = request.headers.get("authorization", "")
                if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                    raise BadRequest("missing or wrong bearer token", 401, "authentication_error")
            return await handler(request)
        except RagError as err:
            status = err.status if isinstance(err, BadRequest) else 400
            kind = err.kind if isinstance(err, BadRequest) else "invalid_request_error"
            return _json({"error": {"message": str(err), "type": kind, "code": status}}, status)
        except Exception as exc:  # report, do not crash the connection
            log.exception("request to %s failed", request.url.path)
            return _json({"error": {"message": f"internal error: {type(exc).__name__}", "type": "server_error", "code": 500}}, 500)

    return guarded


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise BadRequest("the request body must be JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def _inputs(body: dict[str, Any], limit: int) -> list[str]:
    value = body.get("input")
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts:
        raise BadRequest("input is required: a string or a list of strings")
    if not all(isinstance(t, str) for t in texts):
        raise BadRequest("input must hold strings; token arrays are not supported")
    if len(texts) > limit:
        raise BadRequest(f"batch too large: {len(texts)} inputs, at most {limit} per request", 413)
    return texts


def _doc_text(doc: Any) -> Any:
    return doc.get("text") if isinstance(doc, dict) else doc


def _check_model(name: Any, accepted: set[str], served: str) -> None:
    if name not in (None, "") and name not in accepted:
        raise BadRequest(f"model '{name}' is not served here; this server serves {served} (see /v1/models)")


def _encode_vector(vector: Any, encoding: str) -> Any:
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()


def _json(payload: Any, status: int = 200) -> Response:
    from starlette.responses import JSONResponse

    return JSONResponse(payload, status_code=status)
