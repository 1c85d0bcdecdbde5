"""One provider endpoint: the shared httpx client, retries, logging and error translation."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from typing import Any

import httpx

from rag import __version__
from rag.errors import ConfigError, ProviderError
from rag.http.redact import Redactor
from rag.http.retry import RetryPolicy, is_retryable_error, is_retryable_status, parse_retry_after
from rag.profile import HttpConfig, ProviderConfig

log = logging.getLogger("rag.http")

_HINTS = {
    401: "check the API key",
    403: "check the API key and that it may use this model",
    404: "check the base_url and the model name",
}


class StreamInterrupted(ProviderError):
    """A streamed response broke after output had begun; it is neither retried nor sent to a fallback."""


def normalise_base_url(url: str) -> str:
    """Paths carry their version (``/v1/embeddings``), so a base URL ending in ``/v1`` loses it."""
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


@lru_cache(maxsize=1)
def _tls() -> ssl.SSLContext:
    """Loading the CA bundle costs ~0.1 s; every client shares one context."""
    return httpx.create_ssl_context()


def make_client(cfg: ProviderConfig, headers: Mapping[str, str] | None = None) -> httpx.Client:
    """The httpx client factory every stage uses. Thread-safe; share one per provider.

    TCP_NODELAY: httpx writes headers and body separately, and Nagle's
    algorithm with delayed ACKs would hold the body ~40 ms on a kept-alive
    connection.
    """
    transport = httpx.HTTPTransport(
        verify=_tls(),
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    )
    return httpx.Client(
        base_url=normalise_base_url(cfg.base_url),
        headers=dict(headers or {}),
        timeout=httpx.Timeout(cfg.timeout, connect=cfg.connect_timeout),
        transport=transport,
    )


def api_key(name: str, cfg: ProviderConfig) -> str | None:
    if not cfg.api_key_env:
        return None
    value = os.environ.get(cfg.api_key_env, "").strip()
    if not value:
        raise ConfigError(f"provider '{name}' needs an API key: export {cfg.api_key_env} (named by providers.{name}.api_key_env)")
    return value


class Endpoint:
    """A provider's base URL, credentials and connection pool, with retries. Thread-safe."""

    def __init__(self, name: str, cfg: ProviderConfig, http: HttpConfig, *, sleep: Callable[[float], None] = time.sleep) -> None:
        if not cfg.base_url:
            raise ConfigError(f"providers.{name}.base_url is not set; give the server's address, e.g. http://127.0.0.1:8000")
        key = api_key(name, cfg)
        headers = {"user-agent": f"rag/{__version__}"}
        if key:
            headers["authorization"] = f"Bearer {key}"
        headers.update(cfg.headers)
        self.name = name
        self.kind = cfg.kind
        self.base_url = normalise_base_url(cfg.base_url)
        self.timeout = cfg.timeout
        self.connect_timeout = cfg.connect_timeout
        self.key_env = cfg.api_key_env
        self.redact = Redactor([key or "", *cfg.headers.values()])
        self.policy = RetryPolicy(cfg.max_retries, http.backoff_base, http.backoff_max)
        self.client = make_client(cfg, headers)
        self._sleep = sleep

    def post_json(self, path: str, body: Mapping[str, Any], *, stage: str, model: str) -> Any:
        response = self._send(path, body, stage=stage, model=model, stream=False)
        try:
            return response.json()
        except ValueError:
            excerpt = self.redact(response.text[:120]).replace("\n", " ")
            raise ProviderError(
                f"{stage} {model}: POST {path}: HTTP {response.status_code} but the body is not valid JSON: {excerpt!r}",
                provider=self.name,
                path=path,
                status=response.status_code,
            ) from None

    def stream_lines(self, path: str, body: Mapping[str, Any], *, stage: str, model: str) -> Iterator[str]:
        """Lines of a streamed response. Retries happen only before the first line."""
        response = self._send(path, body, stage=stage, model=model, stream=True)
        try:
            yield from response.iter_lines()
        except httpx.HTTPError as exc:
            raise StreamInterrupted(
                f"{stage} {model}: POST {path}: the stream broke after output began ({self._describe(exc)})",
                provider=self.name,
                path=path,
            ) from exc
        finally:
            response.close()

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------------ internals

    def _send(self, path: str, body: Mapping[str, Any], *, stage: str, model: str, stream: bool) -> httpx.Response:
        request = self.client.build_request("POST", path, json=body)
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            retry_after: float | None = None
            try:
                response = self.client.send(request, stream=stream)
            except httpx.HTTPError as exc:
                self._log(stage, model, path, attempt, None, started, self._describe(exc))
                if not is_retryable_error(exc) or attempt > self.policy.max_retries:
                    raise self._transport_error(exc, stage, model, path, attempt) from exc
            else:
                status = response.status_code
                self._log(stage, model, path, attempt, status, started, response.reason_phrase)
                if status < 300:
                    return response
                if stream:
                    with contextlib.suppress(httpx.HTTPError):  # the status alone is enough to report
                        response.read()
                    response.close()
                if not is_retryable_status(status) or attempt > self.policy.max_retries:
                    raise self._status_error(response, stage, model, path, attempt)
                retry_after = parse_retry_after(response.headers)
                if retry_after is not None and retry_after > self.policy.backoff_max:
                    raise ProviderError(
                        f"{stage} {model}: POST {path}: HTTP {status}: the provider asks to wait {retry_after:g}s, "
                        f"more than http.backoff_max ({self.policy.backoff_max:g}s); raise it or try later",
                        provider=self.name,
                        path=path,
                        status=status,
                        retryable=True,
                    )
            delay = retry_after if retry_after is not None else self.policy.backoff(attempt)
            reason = "Retry-After" if retry_after is not None else "backoff"
            log.debug(
                "%s %s: retrying in %.2fs (%s)",
                stage,
                model,
                delay,
                reason,
                extra={"stage": stage, "model": model, "attempt": attempt, "sleep": delay, "reason": reason},
            )
            self._sleep(delay)

    def _log(self, stage: str, model: str, path: str, attempt: int, status: int | None, started: float, outcome: str) -> None:
        latency_ms = (time.perf_counter() - started) * 1000
        log.debug(
            "%s %s POST %s attempt %d: %s %s in %.0f ms",
            stage,
            model,
            path,
            attempt,
            status if status is not None else "-",
            outcome,
            latency_ms,
            extra={"stage": stage, "model": model, "path": path, "attempt": attempt, "status": status, "latency_ms": latency_ms},
        )

    def _describe(self, exc: httpx.HTTPError) -> str:
        if isinstance(exc, httpx.ConnectTimeout):
            return f"no connection within {self.connect_timeout:g}s"
        if isinstance(exc, httpx.TimeoutException):
            return f"no response within {self.timeout:g}s"
        if isinstance(exc, httpx.ConnectError):
            return self.redact(f"cannot connect to {self.base_url}")
        return self.redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)

    def _transport_error(self, exc: httpx.HTTPError, stage: str, model: str, path: str, attempt: int) -> ProviderError:
        hint = ""
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
            hint = f"; raise providers.{self.name}.timeout if the model is slow"
        elif isinstance(exc, httpx.ConnectError):
            hint = f"; is the server running? (providers.{self.name}.base_url)"
        return ProviderError(
            f"{stage} {model}: POST {path}: {self._describe(exc)}{_attempts(attempt)}{hint}",
            provider=self.name,
            path=path,
            retryable=is_retryable_error(exc),
        )

    def _status_error(self, response: httpx.Response, stage: str, model: str, path: str, attempt: int) -> ProviderError:
        status = response.status_code
        message = self.redact(provider_message(response))
        hint = _HINTS.get(status, "")
        if hint and status in (401, 403) and self.key_env:
            hint += f" in {self.key_env}"
        if 300 <= status < 400:
            hint = self.redact(f"it redirects to {response.headers.get('location', '?')}; set providers.{self.name}.base_url to that")
        return ProviderError(
            f"{stage} {model}: POST {path}: HTTP {status}: {message}{_attempts(attempt)}{'; ' + hint if hint else ''}",
            provider=self.name,
            path=path,
            status=status,
            retryable=is_retryable_status(status),
        )


def _attempts(attempt: int) -> str:
    return f" (gave up after {attempt} attempts)" if attempt > 1 else ""


def provider_message(response: httpx.Response, limit: int = 300) -> str:
    """The provider's own words, from the usual error shapes, on one line."""
    try:
        data = response.json()
    except ValueError:
        text = response.text
    else:
        text = _pick_message(data)  # JSON without a message says nothing: fall back to the reason phrase
    text = " ".join(text.split())
    return (text[:limit] + "…" if len(text) > limit else text) or response.reason_phrase or "no message"


def _pick_message(data: Any) -> str:
    if isinstance(data, str):
        return data
    if isinstance(data, list):
        return "; ".join(filter(None, (_pick_message(item) for item in data[:3])))
    if not isinstance(data, dict):
        return ""
    for key in ("error", "message", "detail", "msg", "error_message"):
        if key in data:
            found = _pick_message(data[key])
            if found:
                return found
    return ""
