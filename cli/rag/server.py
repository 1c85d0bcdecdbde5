"""``rag serve``: an OpenAI-compatible HTTP server over the local models.

    GET  /health            liveness
    GET  /v1/models         local/all-MiniLM-L6-v2 (embed), local/minilm-cosine (rerank),
                            and the profile's model folders (see rag.providers.local.served)
    POST /v1/embeddings     OpenAI shape; encoding_format float or base64
    POST /v1/rerank         Jina/vLLM shape; also at /rerank

With a profile that declares providers (or a ``gateway:`` section), requests
naming one of its ``provider/model`` are routed there instead (see
:mod:`rag.gateway`), and two more routes appear:

    POST /v1/chat/completions   OpenAI shape; server-sent events with "stream": true
    GET  /v1/usage              tokens and cost by stage, model, team and tag

Concurrent embedding requests share model calls through one
:class:`MicroBatcher` per model. An optional bearer token (and the gateway's
team tokens) guards everything but ``/health``.
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
from rag.providers.local import cosine_hits
from rag.providers.local.served import EMBED_ID, RERANK_ID, ServedModel, ServedModels, served_models
from rag.text import clean_text

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from rag.gateway import Gateway
    from rag.profile import Profile

log = logging.getLogger("rag.server")

__all__ = ["EMBED_ID", "RERANK_ID", "bind", "create_app", "model_ids", "run"]

Handler = Callable[["Request"], Awaitable["Response"]]


class BadRequest(RagError):
    """Answered as an OpenAI-style error body with ``status``."""

    def __init__(self, message: str, status: int = 400, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


def model_ids(profile: Profile | None = None) -> list[str]:
    """The ids ``rag serve`` lists for ``profile`` (folders resolved, nothing loaded)."""
    return served_models(profile).ids()


def create_app(
    *,
    profile: Profile | None = None,
    token: str | None = None,
    max_batch: int = 256,
    max_wait: float = 0.005,
    max_inputs: int = 2048,
    gateway: Gateway | None = None,
) -> Starlette:
    """The ASGI app. Models load here, before serving: the first request is not slow, and a bad folder is one error."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    from rag.providers.local import served as local_served

    served = served_models(profile)
    local_served.load(served)
    teams = {}
    if gateway is not None:
        from rag.gateway import team_tokens

        teams = team_tokens(gateway.profile)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        batchers = {
            m.id: MicroBatcher(m.loaded.encode_counted, max_batch=max_batch, max_wait=max_wait) for m in served.models if m.task == "embed"
        }
        for batcher in batchers.values():
            await batcher.start()
        app.state.batchers = batchers
        try:
            yield
        finally:
            for batcher in batchers.values():
                await batcher.stop()
            served.close()
            if gateway is not None:
                gateway.close()

    async def embeddings(request: Request) -> Response:
        body = await _json_body(request)
        texts = _inputs(body, max_inputs)
        if gateway is not None and served.pick("embed", body.get("model")) is None and gateway.routes(body.get("model")):
            from rag import gateway as gw

            return _json(*await gw.embeddings(gateway, _call(request, "embed", body), texts))
        model = _pick(served, "embed", body.get("model"))
        if body.get("dimensions") not in (None, model.dimensions):
            raise BadRequest(f"dimensions must be {model.dimensions} for {model.id} (it cannot be shortened)")
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise BadRequest("encoding_format must be float or base64")
        vectors, counts = await _batcher(request, model.id).encode(texts)
        data = [{"object": "embedding", "index": i, "embedding": _encode_vector(vector, encoding)} for i, vector in enumerate(vectors)]
        tokens = sum(counts)
        return _json({"object": "list", "data": data, "model": model.id, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    async def rerank(request: Request) -> Response:
        from rag.rerank import validate

        body = await _json_body(request)
        query, documents, top_n = body.get("query"), body.get("documents"), body.get("top_n")
        texts = [_doc_text(d) for d in documents] if isinstance(documents, list) else []
        if top_n is not None and not isinstance(top_n, int):
            raise BadRequest("top_n must be a whole number")
        validate(query, texts, top_n)
        if gateway is not None and served.pick("rerank", body.get("model")) is None and gateway.routes(body.get("model")):
            from rag import gateway as gw

            return _json(*await gw.rerank(gateway, _call(request, "rerank", body), clean_text(str(query)), texts, top_n))
        model = _pick(served, "rerank", body.get("model"))
        query, texts = clean_text(str(query)), [clean_text(t) for t in texts]  # JSON may escape lone surrogates
        scored = texts
        max_tokens = body.get("max_tokens_per_doc")
        if isinstance(max_tokens, int) and max_tokens > 0:
            from rag.tokens import truncate_tokens

            scored = [truncate_tokens(t, max_tokens) for t in texts]
        hits, tokens = await _rerank(request, model, query, scored, top_n)
        results = []
        for hit in hits:
            item: dict[str, Any] = {"index": hit.index, "relevance_score": hit.score}
            if body.get("return_documents"):
                item["document"] = {"text": texts[hit.index]}
            results.append(item)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return _json({"id": f"rerank-{uuid.uuid4().hex}", "model": model.id, "results": results, "usage": usage})

    async def models(request: Request) -> Response:
        routed = gateway.models() if gateway is not None else []
        return _json({"object": "list", "data": [m.entry() for m in served.models] + routed})

    async def health(request: Request) -> Response:
        return _json({"status": "ok"})

    async def chat(request: Request) -> Response:
        from starlette.responses import StreamingResponse

        from rag import gateway as gw

        assert gateway is not None
        body = await _json_body(request)
        if not gateway.routes(body.get("model")):
            raise BadRequest(f"model '{body.get('model')}' is not routed here; see /v1/models")
        answer, headers = await gw.chat(gateway, _call(request, "chat", body))
        if isinstance(answer, dict):
            return _json(answer, headers=headers)
        return StreamingResponse(answer, media_type="text/event-stream", headers=headers)

    async def usage(request: Request) -> Response:
        assert gateway is not None
        return _json(gateway.usage(request.state.team, all_time=request.query_params.get("scope") == "all"))

    auth = _authenticator(token, teams)
    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/v1/models", _guarded(models, auth), methods=["GET"]),
        Route("/v1/embeddings", _guarded(embeddings, auth), methods=["POST"]),
        Route("/v1/rerank", _guarded(rerank, auth), methods=["POST"]),
        Route("/rerank", _guarded(rerank, auth), methods=["POST"]),
    ]
    if gateway is not None:
        routes += [
            Route("/v1/chat/completions", _guarded(chat, auth), methods=["POST"]),
            Route("/v1/usage", _guarded(usage, auth), methods=["GET"]),
        ]
    return Starlette(routes=routes, lifespan=lifespan)


def _call(request: Request, stage: str, body: dict[str, Any]) -> Any:
    from rag.gateway import Call

    return Call(stage, body, request.headers, request.state.team)


async def _rerank(request: Request, model: ServedModel, query: str, texts: list[str], top_n: int | None) -> tuple[list[Any], int]:
    """A cross-encoder's scores, or the embedded cosine (through the MiniLM batcher)."""
    if model.loaded is not None:
        from rag.providers.local.folder_models import ranked

        scores, tokens = await model.score(query, texts)
        return ranked(scores, top_n), tokens
    vectors, counts = await _batcher(request, EMBED_ID).encode([query, *texts])
    return cosine_hits(vectors, top_n), sum(counts)


def _pick(served: ServedModels, task: str, name: Any) -> ServedModel:
    model = served.pick(task, name)
    if model is None:
        listed = ", ".join(served.ids(task))
        raise BadRequest(f"model '{name}' is not served here; this server serves {listed} (see /v1/models)")
    return model


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


def _batcher(request: Request, model_id: str) -> MicroBatcher:
    batcher: MicroBatcher = request.app.state.batchers[model_id]
    return batcher


def _authenticator(token: str | None, teams: dict[str, str]) -> Callable[[Request], str]:
    """The caller's team from its bearer token: "" for the server's own token (or when no token is required)."""
    secrets = [(token, "")] if token else []
    secrets += list(teams.items())

    def team_of(request: Request) -> str:
        if not secrets:
            return ""
        given = request.headers.get("authorization", "").encode()
        found = None
        for secret, team in secrets:  # every one compared, in constant time: which matched leaks nothing
            if hmac.compare_digest(given, f"Bearer {secret}".encode()) and found is None:
                found = team
        if found is None:
            raise BadRequest("missing or wrong bearer token", 401, "authentication_error")
        return found

    return team_of


def _guarded(handler: Handler, auth: Callable[[Request], str]) -> Handler:
    async def guarded(request: Request) -> Response:
        try:
            request.state.team = auth(request)
            return await handler(request)
        except RagError as err:
            status, kind = getattr(err, "status", 400), getattr(err, "kind", "invalid_request_error")
            return _json({"error": {"message": str(err), "type": kind, "code": status}}, status=status)
        except Exception as exc:  # report, do not crash the connection
            log.exception("request to %s failed", request.url.path)
            return _json({"error": {"message": f"internal error: {type(exc).__name__}", "type": "server_error", "code": 500}}, status=500)

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


def _encode_vector(vector: Any, encoding: str) -> Any:
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()


def _json(payload: Any, headers: dict[str, str] | None = None, status: int = 200) -> Response:
    from starlette.responses import JSONResponse

    return JSONResponse(payload, status_code=status, headers=headers)
