"""The HTTP layer against a real fault-injecting server: retries, Retry-After, timeouts, errors, redaction."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from fault_server import FaultServer, Reply
from rag.errors import ConfigError, ProviderError
from rag.http import CircuitBreaker, Endpoint, Redactor, parse_retry_after
from rag.http.endpoint import normalise_base_url
from rag.profile import HttpConfig, ProviderConfig

KEY = "sk-test-0123456789abcdefSECRET"
PATH = "/v1/embeddings"
BODY = {"model": "m", "input": ["hello"]}


def endpoint(url: str, slept: list[float] | None = None, **overrides: Any) -> Endpoint:
    http = HttpConfig(backoff_base=overrides.pop("backoff_base", 0.0), backoff_max=overrides.pop("backoff_max", 20.0))
    cfg = ProviderConfig(kind="openai", base_url=url, **overrides)
    return Endpoint("fake", cfg, http, sleep=(slept.append if slept is not None else lambda s: None))


def post(ep: Endpoint) -> Any:
    return ep.post_json(PATH, BODY, stage="embed", model="fake/m")


def test_retries_500_then_succeeds(fault: FaultServer) -> None:
    fault.then(PATH, Reply(500, {"error": {"message": "boom"}}), Reply(502))
    assert post(endpoint(fault.url))["data"]
    assert fault.count(PATH) == 3


def test_retry_after_is_honoured(fault: FaultServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="rag.http")
    fault.then(PATH, Reply(429, {"error": "slow down"}, headers={"Retry-After": "3"}))
    slept: list[float] = []
    post(endpoint(fault.url, slept))
    assert slept == [3.0]
    assert fault.count(PATH) == 2
    retry = [r for r in caplog.records if getattr(r, "sleep", None) is not None]
    assert [(r.sleep, r.reason) for r in retry] == [(3.0, "Retry-After")]  # type: ignore[attr-defined]
    attempts = [r for r in caplog.records if getattr(r, "attempt", None) and getattr(r, "latency_ms", None) is not None]
    assert [(r.stage, r.model, r.status) for r in attempts] == [("embed", "fake/m", 429), ("embed", "fake/m", 200)]  # type: ignore[attr-defined]


def test_retry_after_beyond_backoff_max_gives_up_at_once(fault: FaultServer) -> None:
    fault.then(PATH, Reply(429, {"error": "quota"}, headers={"Retry-After": "600"}))
    with pytest.raises(ProviderError, match=r"asks to wait 600s, more than http.backoff_max \(20s\)") as info:
        post(endpoint(fault.url))
    assert info.value.status == 429
    assert fault.count(PATH) == 1


def test_backoff_is_exponential_with_jitter(fault: FaultServer) -> None:
    fault.then(PATH, Reply(503), Reply(503), Reply(503))
    slept: list[float] = []
    post(endpoint(fault.url, slept, backoff_base=0.1, max_retries=3))
    assert len(slept) == 3
    for attempt, delay in enumerate(slept, 1):
        ceiling = 0.1 * 2 ** (attempt - 1)
        assert ceiling / 2 <= delay <= ceiling


def test_gives_up_after_max_retries_with_a_useful_error(fault: FaultServer) -> None:
    fault.then(PATH, *[Reply(503, {"error": {"message": "overloaded, try later"}})] * 3)
    with pytest.raises(ProviderError) as info:
        post(endpoint(fault.url, max_retries=2))
    err = info.value
    assert fault.count(PATH) == 3
    assert (err.provider, err.path, err.status, err.retryable) == ("fake", PATH, 503, True)
    assert str(err) == "embed fake/m: POST /v1/embeddings: HTTP 503: overloaded, try later (gave up after 3 attempts)"


def test_client_errors_are_not_retried(fault: FaultServer) -> None:
    fault.then(PATH, Reply(400, {"detail": [{"msg": "input must not be empty"}]}))
    with pytest.raises(ProviderError, match=r"HTTP 400: input must not be empty$"):
        post(endpoint(fault.url))
    assert fault.count(PATH) == 1


def test_a_redirect_is_reported_not_followed(fault: FaultServer) -> None:
    fault.then(PATH, Reply(301, {}, headers={"location": "https://elsewhere.example/v1/embeddings"}))
    with pytest.raises(
        ProviderError,
        match=r"HTTP 301: Moved Permanently; it redirects to https://elsewhere.example/v1/embeddings; set providers.fake.base_url",
    ):
        post(endpoint(fault.url))
    assert fault.count(PATH) == 1


def test_timeout_is_retried_then_reported(fault: FaultServer) -> None:
    fault.then(PATH, Reply(delay=0.5), Reply(delay=0.5))
    with pytest.raises(ProviderError, match=r"no response within 0.1s \(gave up after 2 attempts\); raise providers.fake.timeout"):
        post(endpoint(fault.url, timeout=0.1, max_retries=1))
    assert fault.count(PATH) == 2


def test_slow_first_answer_then_success(fault: FaultServer) -> None:
    fault.then(PATH, Reply(delay=0.5))
    assert post(endpoint(fault.url, timeout=0.1, max_retries=1))["data"]
    assert fault.count(PATH) == 2


def test_connection_refused_is_retried(caplog: pytest.LogCaptureFixture) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    caplog.set_level(logging.DEBUG, logger="rag.http")
    with pytest.raises(ProviderError, match=r"cannot connect to http://127.0.0.1:\d+ \(gave up after 3 attempts\); is the server running"):
        post(endpoint(url, max_retries=2))
    assert len([r for r in caplog.records if getattr(r, "latency_ms", None) is not None]) == 3


def test_malformed_json_is_a_provider_error(fault: FaultServer) -> None:
    fault.then(PATH, Reply(text='{"data": [1, 2'))
    with pytest.raises(ProviderError, match=r"HTTP 200 but the body is not valid JSON: '\{\"data\": \[1, 2'"):
        post(endpoint(fault.url))
    assert fault.count(PATH) == 1


def test_key_is_sent_but_never_shown(fault: FaultServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("FAKE_KEY", KEY)
    fault.then(PATH, Reply(401, {"error": {"message": f"Incorrect API key provided: {KEY}. Header was Bearer {KEY}"}}))
    with pytest.raises(ProviderError) as info:
        post(endpoint(fault.url, api_key_env="FAKE_KEY"))
    assert fault.seen[0].headers["authorization"] == f"Bearer {KEY}"
    message = str(info.value)
    assert KEY not in message and KEY[:12] not in message
    assert "HTTP 401: Incorrect API key provided: ***" in message
    assert message.endswith("check the API key in FAKE_KEY")
    assert KEY not in caplog.text


def test_missing_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FAKE_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"provider 'fake' needs an API key: export FAKE_KEY"):
        endpoint("http://127.0.0.1:9", api_key_env="FAKE_KEY")


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480.0) == 10.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_redactor_masks_secrets_and_key_shapes() -> None:
    redact = Redactor(["hunter2-long-secret"])
    text = "key hunter2-long-secret; Authorization: Bearer abcdefgh12345678; api_key=zzzzzzzzzzzz; sk-proj-AAAAAAAAAAAAAAAAAAAA"
    assert redact(text) == "key ***; Authorization: Bearer ***; api_key=***; ***"
    assert redact("cannot connect to https://me:pw@example.com/v1") == "cannot connect to https://***@example.com/v1"
    assert redact("Invalid api key provided") == "Invalid api key provided"


def test_base_url_may_end_in_v1() -> None:
    assert normalise_base_url("https://api.openai.com/v1/") == "https://api.openai.com"
    assert normalise_base_url("http://h:1/gateway") == "http://h:1/gateway"


def test_breaker_opens_then_half_opens() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failures=2, cooldown=10, clock=lambda: now[0])
    assert breaker.record_failure("a") is False
    assert breaker.record_failure("a") is True
    assert breaker.blocked_for("a") == 10
    now[0] = 9.5
    assert breaker.blocked_for("a") == pytest.approx(0.5)
    now[0] = 10.0
    assert breaker.blocked_for("a") == 0  # half-open: one more failure re-opens
    assert breaker.record_failure("a") is True
    breaker.record_success("a")
    assert breaker.blocked_for("a") == 0 and breaker.failures_of("a") == 0
