"""Gateway mode of ``rag serve``: requests for ``provider/model`` go to the profile's providers.

Per request, in order:

1. the caller's team, from its bearer token (``gateway.tokens``); keys to the providers stay here;
2. the exact-match cache (``gateway.cache``, on by default): the same stage, model and request body is
   answered from ``<state>/cache.sqlite``. ``"cache": false`` in the body, or an ``x-rag-cache: off``
   header, skips it; the ``x-rag-cache`` response header says ``hit``, ``miss`` or ``off``;
3. the budget: the call is priced from its tokens and refused with 429 when it would pass ``budget.per_run``
   (this process), ``budget.per_day`` or the team's ``per_day``;
4. the chain: the model, then the profile's fallbacks for it (when it is the stage's configured model), then
   the request's own ``fallbacks``, each with the provider's retries, behind one circuit breaker per gateway;
5. accounting: tokens and cost per stage, model (the one that answered, also in ``x-rag-model``), team and
   tag (``metadata.tags`` in the body, or ``x-rag-tags: a,b``) in ``<state>/spend.sqlite``, read back by
   ``GET /v1/usage``.

Provider calls are blocking (httpx); they run in worker threads.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from rag.answer_cache import AnswerCache, cache_key
from rag.budget import Budget, Entry, SpendLedger, chat_tokens, embed_tokens, price, priced, rerank_tokens
from rag.errors import BudgetExceeded, ConfigError, ProviderError, RagError
from rag.http import CircuitBreaker
from rag.profile import Profile, provider_config, split_model
from rag.providers.base import ChatResult, EmbedResult, RerankResult
from rag.usage import Usage

CACHE_HEADER = "x-rag-cache"
TAGS_HEADER = "x-rag-tags"
MODEL_HEADER = "x-rag-model"
# Keys of a request that say how to serve it, not what to compute: never part of the cache key.
_NOT_KEYED = ("cache", "metadata", "fallbacks", "stream", "stream_options", "user", "priority")


class GatewayError(RagError):
    """Answered with ``status`` and an OpenAI-style error body."""

    def __init__(self, message: str, status: int, kind: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


def gateway_enabled(profile: Profile | None) -> bool:
    """Gateway mode needs a profile that declares providers (or a gateway section) with one to route to."""
    if profile is None or not any(key in profile.lines for key in ("providers", "gateway")):
        return False
    return bool(routable_providers(profile))


def routable_providers(profile: Profile) -> set[str]:
    """Providers the profile declares, and those its stages name; never the local ones (rag serve serves those)."""
    p = profile
    refs = [p.embedding.model, *p.embedding.fallbacks, p.rerank.model, *p.rerank.fallbacks, p.chat.model, *p.chat.fallbacks]
    names = set(p.providers) | {split_model(r)[0] for r in refs if r}
    return {n for n in names if provider_config(p, n).kind != "local"}


def state_dir(profile: Profile) -> Path:
    return profile.resolve_path(profile.gateway.state) if profile.gateway.state else profile.store_path / "gateway"


def team_tokens(profile: Profile) -> dict[str, str]:
    """token -> team, read from each team's ``token_env`` now: a missing one is a profile error at start-up."""
    tokens: dict[str, str] = {}
    for team, cfg in profile.gateway.tokens.items():
        value = os.environ.get(cfg.token_env, "").strip()
        if not value:
            raise ConfigError(f"{profile.where(f'gateway.tokens.{team}')}: {cfg.token_env} is not set; export team {team}'s token in it")
        tokens[value] = team
    return tokens


class Call:
    """What one request asks of the gateway: the stage, the chain of models, who pays and how to cache."""

    def __init__(self, stage: str, body: dict[str, Any], headers: Any, team: str) -> None:
        self.stage = stage
        self.body = body
        self.model = str(body.get("model") or "")
        self.team = team
        self.tags = _tags(body, headers)
        self.use_cache = body.get("cache") is not False and headers.get(CACHE_HEADER, "").lower() not in ("off", "no", "false", "0")
        self.use_cache = self.use_cache and "no-cache" not in headers.get("cache-control", "").lower()
        fallbacks = body.get("fallbacks") or []
        if not isinstance(fallbacks, list) or not all(isinstance(f, str) for f in fallbacks):
            raise GatewayError("fallbacks must be a list of provider/model names", 400, "invalid_request_error")
        self.fallbacks: list[str] = fallbacks

    def key(self) -> str:
        return cache_key(kind=f"gateway-{self.stage}", **{k: v for k, v in self.body.items() if k not in _NOT_KEYED})


class Gateway:
    """Routes, caches, budgets and accounts provider calls for ``rag serve``. Thread-safe."""

    def __init__(self, profile: Profile, *, state: Path | None = None) -> None:
        self.profile = profile
        self.state = state or state_dir(profile)
        self.breaker = CircuitBreaker(profile.http.breaker_failures, profile.http.breaker_cooldown)
        self.cache = AnswerCache(self.state / "cache.sqlite") if profile.gateway.cache else None
        self.budget = Budget(profile.budget, SpendLedger(self.state / "spend.sqlite"))
        self.providers = routable_providers(profile)
        self._members: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ routing

    def routes(self, model: Any) -> bool:
        return isinstance(model, str) and model.partition("/")[0] in self.providers and "/" in model

    def models(self) -> list[dict[str, Any]]:
        p = self.profile
        listed: dict[str, list[str | None]] = {
            "embed": [p.embedding.model, *p.embedding.fallbacks],
            "rerank": [p.rerank.model, *p.rerank.fallbacks],
            "chat": [p.chat.model, *p.chat.fallbacks],
        }
        out = []
        for task, refs in listed.items():
            for ref in dict.fromkeys(r for r in refs if r and self.routes(r)):
                out.append({"id": ref, "object": "model", "owned_by": split_model(ref)[0], "task": task, "gateway": True})
        return out

    def chain(self, call: Call) -> list[str]:
        p = self.profile
        primary, fallbacks = {
            "embed": (p.embedding.model, p.embedding.fallbacks),
            "rerank": (p.rerank.model, p.rerank.fallbacks),
            "chat": (p.chat.model, p.chat.fallbacks),
        }[call.stage]
        configured = fallbacks if call.model == primary else []
        refs = list(dict.fromkeys([call.model, *configured, *call.fallbacks]))
        for ref in refs:
            if not self.routes(ref):
                raise GatewayError(
                    f"model '{ref}' is not routed here; this gateway routes providers {', '.join(sorted(self.providers))}",
                    400,
                    "invalid_request_error",
                )
        return refs

    def member(self, stage: str, ref: str) -> Any:
        from rag.providers import make_single

        with self._lock:
            if (stage, ref) not in self._members:
                self._members[(stage, ref)] = make_single(self.profile, stage, ref)
            return self._members[(stage, ref)]

    # ------------------------------------------------------------------ one call

    def run(self, call: Call, estimate: Usage, fn: Callable[[Any], Any], usage_of: Callable[[Any], Usage]) -> tuple[Any, str, bool]:
        """``fn(member)`` along the chain, budgeted and accounted: (result, the model that answered, cache hit)."""
        from rag.providers.fallback import Chain

        refs = self.chain(call)
        rates = price(self.profile, call.stage, call.model)
        with self.budget.reserve(f"{call.stage} {call.model}", priced(rates, estimate), team=call.team, team_cap=self._team_cap(call.team)):
            members = [self.member(call.stage, ref) for ref in refs]
            answered, result = Chain(call.stage, members, self.breaker).call(lambda m: (m.ref, fn(m)))
        usage = usage_of(result)
        self.budget.record(Entry(call.stage, answered, usage, priced(rates, usage), team=call.team, tags=call.tags))
        return result, answered, False

    def cached(self, call: Call) -> dict[str, Any] | None:
        if self.cache is None or not call.use_cache:
            return None
        hit = self.cache.get(call.key())
        if hit is not None:
            self.budget.record(Entry(call.stage, str(hit.get("model", call.model)), Usage(), 0.0, team=call.team, tags=call.tags, cached=1))
        return hit

    def keep(self, call: Call, value: dict[str, Any]) -> None:
        if self.cache is not None and call.use_cache:
            self.cache.put(call.key(), value)

    def cache_state(self, call: Call, hit: bool) -> str:
        if self.cache is None or not call.use_cache:
            return "off"
        return "hit" if hit else "miss"

    def _team_cap(self, team: str) -> float | None:
        cfg = self.profile.gateway.tokens.get(team)
        return cfg.per_day if cfg is not None else None

    def usage(self, team: str, all_time: bool = False) -> dict[str, Any]:
        """``GET /v1/usage``: a team sees its own spend; the server's own token (or no token) sees every team's."""
        window = None if all_time else self.budget.window()
        out = self.budget.status(team or None)
        if team:
            out["team"] = team
            out["team_per_day"] = self._team_cap(team)
        out["scope"] = "all" if all_time else "window"
        out.update(self.budget.ledger.summary(window, team or None))
        if team:
            out.pop("by_team", None)
        return out

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
        self.budget.ledger.close()


# --------------------------------------------------------------------------- the three stages, as JSON in and out


async def embeddings(gw: Gateway, call: Call, texts: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    if call.body.get("dimensions") is not None:
        raise GatewayError(
            "dimensions cannot be chosen per request here; set embedding.dimensions in the gateway's profile", 400, "invalid_request_error"
        )
    if (call.body.get("encoding_format") or "float") not in ("float", "base64"):
        raise GatewayError("encoding_format must be float or base64", 400, "invalid_request_error")
    hit = gw.cached(call)
    if hit is not None:
        return hit["response"], _headers(gw, call, True, hit["model"])

    def fn(member: Any) -> EmbedResult:
        return member.embed_batch(texts)

    result, model = await _in_thread(gw, call, embed_tokens(texts), fn, lambda r: r.usage)
    encoding = call.body.get("encoding_format") or "float"
    data = [{"object": "embedding", "index": i, "embedding": _vector(v, encoding)} for i, v in enumerate(result.vectors)]
    tokens = result.usage.input_tokens
    response = {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    gw.keep(call, {"response": response, "model": model})
    return response, _headers(gw, call, False, model)


async def rerank(gw: Gateway, call: Call, query: str, texts: list[str], top_n: int | None) -> tuple[dict[str, Any], dict[str, str]]:
    hit = gw.cached(call)
    if hit is not None:
        return hit["response"], _headers(gw, call, True, hit["model"])
    max_tokens = call.body.get("max_tokens_per_doc")
    sent = texts
    if isinstance(max_tokens, int) and max_tokens > 0:
        from rag.tokens import truncate_tokens

        sent = [truncate_tokens(t, max_tokens) for t in texts]

    def fn(member: Any) -> RerankResult:
        return member.rerank(query, sent, top_n)

    result, model = await _in_thread(gw, call, rerank_tokens(query, sent), fn, lambda r: r.usage)
    results = []
    for h in result.hits:
        item: dict[str, Any] = {"index": h.index, "relevance_score": h.score}
        if call.body.get("return_documents"):
            item["document"] = {"text": texts[h.index]}
        results.append(item)
    tokens = result.usage.input_tokens
    response = {
        "id": f"rerank-{uuid.uuid4().hex}",
        "model": model,
        "results": results,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    gw.keep(call, {"response": response, "model": model})
    return response, _headers(gw, call, False, model)


async def chat(gw: Gateway, call: Call) -> tuple[dict[str, Any] | AsyncIterator[str], dict[str, str]]:
    """The completion, or (with ``"stream": true``) its server-sent events."""
    messages, temperature, max_tokens = _chat_args(call.body)
    hit = gw.cached(call)
    if hit is not None:
        result = ChatResult(hit["text"], hit["model"], Usage(), hit.get("finish_reason"))
        headers = _headers(gw, call, True, result.model)
        return (_replay(result) if call.body.get("stream") else _completion(result)), headers
    estimate = chat_tokens(messages, max_tokens)
    if not call.body.get("stream"):

        def fn(member: Any) -> ChatResult:
            return member.complete(messages, temperature=temperature, max_tokens=max_tokens)

        result, model = await _in_thread(gw, call, estimate, fn, lambda r: r.usage)
        _keep_chat(gw, call, result, model)
        return _completion(result, model), _headers(gw, call, False, model)
    return await _streamed(gw, call, estimate, messages, temperature, max_tokens)


async def _streamed(
    gw: Gateway, call: Call, estimate: Usage, messages: list[dict[str, str]], temperature: float, max_tokens: int
) -> tuple[AsyncIterator[str], dict[str, str]]:
    """Deltas flow from the provider's thread through a queue; a refusal or a failure before the first delta is an
    ordinary error response, one after it an error event (the text shown cannot be taken back)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def put(kind: str, value: Any) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

    def fn(member: Any) -> ChatResult:
        return member.complete(messages, temperature=temperature, max_tokens=max_tokens, on_delta=lambda d: put("delta", d))

    def work() -> None:
        try:
            result, model, _ = gw.run(call, estimate, fn, lambda r: r.usage)
        except Exception as exc:  # handed to the response, which reports it
            put("error", exc)
        else:
            put("done", (result, model))

    loop.run_in_executor(None, work)
    first = await queue.get()
    if first[0] == "error":
        raise _translated(first[1])
    model = call.model

    async def events() -> AsyncIterator[str]:
        nonlocal model
        ident = f"chatcmpl-{uuid.uuid4().hex}"
        yield _event(ident, model, {"role": "assistant"})
        item = first
        while True:
            kind, value = item
            if kind == "delta":
                yield _event(ident, model, {"content": value})
            elif kind == "done":
                result, model = value
                _keep_chat(gw, call, result, model)
                yield _event(ident, model, {}, finish=result.finish_reason or "stop", usage=result.usage)
                yield "data: [DONE]\n\n"
                return
            else:
                error = _translated(value)
                kind, status = getattr(error, "kind", "server_error"), getattr(error, "status", 500)
                yield f"data: {json.dumps({'error': {'message': str(error), 'type': kind, 'code': status}})}\n\n"
                return
            item = await queue.get()

    return events(), _headers(gw, call, False, call.model)


# --------------------------------------------------------------------------- helpers


async def _in_thread(
    gw: Gateway, call: Call, estimate: Usage, fn: Callable[[Any], Any], usage_of: Callable[[Any], Usage]
) -> tuple[Any, str]:
    loop = asyncio.get_running_loop()
    try:
        result, model, _ = await loop.run_in_executor(None, lambda: gw.run(call, estimate, fn, usage_of))
    except Exception as exc:
        raise _translated(exc) from None
    return result, model


def _translated(exc: BaseException) -> Exception:
    if isinstance(exc, BudgetExceeded):
        return GatewayError(str(exc), 429, "budget_exceeded")
    if isinstance(exc, ProviderError):
        return GatewayError(str(exc), 502, "provider_error")
    if isinstance(exc, RagError | Exception):
        return exc
    return RuntimeError(str(exc))


def _headers(gw: Gateway, call: Call, hit: bool, model: str) -> dict[str, str]:
    return {CACHE_HEADER: gw.cache_state(call, hit), MODEL_HEADER: model}


def _tags(body: dict[str, Any], headers: Any) -> list[str]:
    metadata = body.get("metadata")
    tags = metadata.get("tags") if isinstance(metadata, dict) else None
    if isinstance(tags, str):
        tags = [tags]
    found = [str(t) for t in tags] if isinstance(tags, list) else []
    found += [t.strip() for t in headers.get(TAGS_HEADER, "").split(",") if t.strip()]
    return list(dict.fromkeys(found))


# Chat parameters the gateway cannot pass on (providers are called through rag's ChatModel protocol):
# refused, rather than dropped while the answer pretends to honour them.
_UNSUPPORTED_CHAT = ("tools", "tool_choice", "functions", "function_call", "response_format", "logprobs", "top_logprobs", "seed", "stop")


def _chat_args(body: dict[str, Any]) -> tuple[list[dict[str, str]], float, int]:
    unsupported = [k for k in _UNSUPPORTED_CHAT if body.get(k) is not None] + (["n"] if body.get("n") not in (None, 1) else [])
    if unsupported:
        raise GatewayError(
            f"{', '.join(unsupported)} cannot be passed through this gateway; it sends model, messages, temperature and max_tokens",
            400,
            "invalid_request_error",
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise GatewayError("messages is required: a list of {role, content} objects", 400, "invalid_request_error")
    temperature = body.get("temperature", 0.0)
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") or 512
    if not isinstance(temperature, int | float) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise GatewayError("temperature must be a number and max_tokens a whole number of at least 1", 400, "invalid_request_error")
    return messages, float(temperature), max_tokens


def _keep_chat(gw: Gateway, call: Call, result: ChatResult, model: str) -> None:
    if result.text.strip():
        gw.keep(call, {"text": result.text, "model": model, "finish_reason": result.finish_reason})


def _completion(result: ChatResult, model: str | None = None) -> dict[str, Any]:
    u = result.usage
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model or result.model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": result.text}, "finish_reason": result.finish_reason or "stop"}
        ],
        "usage": {"prompt_tokens": u.input_tokens, "completion_tokens": u.output_tokens, "total_tokens": u.input_tokens + u.output_tokens},
    }


async def _replay(result: ChatResult) -> AsyncIterator[str]:
    ident = f"chatcmpl-{hashlib.sha1(result.text.encode()).hexdigest()[:16]}"
    yield _event(ident, result.model, {"role": "assistant"})
    yield _event(ident, result.model, {"content": result.text})
    yield _event(ident, result.model, {}, finish=result.finish_reason or "stop", usage=Usage())
    yield "data: [DONE]\n\n"


def _event(ident: str, model: str, delta: dict[str, Any], *, finish: str | None = None, usage: Usage | None = None) -> str:
    chunk: dict[str, Any] = {
        "id": ident,
        "object": "chat.completion.chunk",
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        chunk["usage"] = {
            "prompt_tokens": usage.input_tokens,
            "completion_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens + usage.output_tokens,
        }
    return f"data: {json.dumps(chunk)}\n\n"


def _vector(vector: Any, encoding: str) -> Any:
    import base64

    import numpy as np

    if encoding == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]
