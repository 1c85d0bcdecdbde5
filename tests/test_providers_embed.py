"""HTTP embedders through make_embedder: wire format, batch halving, threads, fallbacks, circuit breaker."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from fault_server import FaultServer, Reply, fake_vector
from rag.errors import ConfigError, ProviderError
from rag.profile import parse_profile
from rag.providers import make_embedder
from rag.providers.local import LocalEmbedder
from rag.tokens import count_tokens

PATH = "/v1/embeddings"
TEXTS = [f"text number {i}" for i in range(8)]


def profile_for(*urls: str, extra: str = "", kind: str = "openai") -> Any:
    providers = "".join(f"  p{i}:\n    kind: {kind}\n    base_url: {url}\n    max_retries: 0\n" for i, url in enumerate(urls))
    fallbacks = ", ".join(f"p{i}/m" for i in range(1, len(urls)))
    text = f"providers:\n{providers}embedding:\n  model: p0/m\n  fallbacks: [{fallbacks}]\n{extra}http:\n  backoff_base: 0\n"
    return parse_profile(text)


def expected(texts: list[str], dims: int = 8) -> np.ndarray:
    return np.array([fake_vector(t, dims) for t in texts], dtype=np.float32)


@pytest.mark.parametrize("kind", ["openai", "vllm", "infinity", "jina", "tei"])
def test_openai_wire_format(fault: FaultServer, kind: str) -> None:
    embedder = make_embedder(profile_for(fault.url, kind=kind))
    result = embedder.embed_batch(TEXTS[:3])
    assert embedder.ref == "p0/m" and embedder.dimensions == 8
    np.testing.assert_allclose(result.vectors, expected(TEXTS[:3]), rtol=1e-6)
    assert (result.usage.input_tokens, result.usage.calls, result.usage.counted) == (21, 1, False)
    assert fault.bodies(PATH) == [{"model": "m", "input": TEXTS[:3], "encoding_format": "float"}]


def test_base64_answers_are_decoded(fault: FaultServer) -> None:
    fault.base64 = True
    result = make_embedder(profile_for(fault.url)).embed_batch(TEXTS[:2])
    np.testing.assert_array_equal(result.vectors, expected(TEXTS[:2]))


def test_dimensions_are_sent_and_usage_counted_when_absent(fault: FaultServer) -> None:
    fault.usage = False
    embedder = make_embedder(profile_for(fault.url, extra="  dimensions: 4\n".join(["", ""])))
    result = embedder.embed_batch(["alpha beta", "gamma"])
    assert fault.bodies(PATH)[0]["dimensions"] == 4
    assert result.vectors.shape == (2, 4)
    assert result.usage.counted and result.usage.input_tokens == count_tokens("alpha beta") + count_tokens("gamma")


def test_wrong_vector_count_is_an_error(fault: FaultServer) -> None:
    fault.then(PATH, Reply(json={"data": [{"index": 0, "embedding": [0.1, 0.2]}]}))
    with pytest.raises(ProviderError, match=r"embed p0/m: POST /v1/embeddings: the response returned 1 vectors for 2 texts"):
        make_embedder(profile_for(fault.url)).embed_batch(["a", "b"])


@pytest.mark.parametrize("status", [413, 400])
def test_batch_too_big_is_halved_once_and_remembered(fault: FaultServer, caplog: pytest.LogCaptureFixture, status: int) -> None:
    fault.max_batch, fault.too_big = 3, status
    embedder = make_embedder(profile_for(fault.url))
    first = embedder.embed_batch(TEXTS)
    np.testing.assert_allclose(first.vectors, expected(TEXTS), rtol=1e-6)
    sizes = [len(b["input"]) for b in fault.bodies(PATH)]
    assert sizes == [8, 4, 2, 2, 2, 2]  # 8 and 4 rejected; the second half already goes in pairs
    fault.seen.clear()
    second = embedder.embed_batch(TEXTS)
    assert [len(b["input"]) for b in fault.bodies(PATH)] == [2, 2, 2, 2]  # no more rejections
    np.testing.assert_array_equal(second.vectors, first.vectors)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "too large" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].getMessage() == "p0/m rejected a batch of 8 texts as too large; sending at most 4 per request from now on"


def test_other_400s_are_not_halved(fault: FaultServer) -> None:
    fault.then(PATH, Reply(400, {"error": {"message": "model m does not exist"}}))
    with pytest.raises(ProviderError, match="HTTP 400: model m does not exist"):
        make_embedder(profile_for(fault.url)).embed_batch(TEXTS)
    assert fault.count(PATH) == 1


def test_thread_safe_under_concurrency(fault: FaultServer) -> None:
    embedder = make_embedder(profile_for(fault.url))
    batches = [[f"doc {b}-{i}" for i in range(5)] for b in range(12)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(embedder.embed_batch, batches))
    for batch, result in zip(batches, results, strict=True):
        np.testing.assert_allclose(result.vectors, expected(batch), rtol=1e-6)
    assert fault.count(PATH) == 12


def test_fallback_answers_when_primary_fails(fault: FaultServer, fault_backup: FaultServer) -> None:
    primary, backup = fault, fault_backup
    primary.then(PATH, Reply(500, {"error": "down"}))
    embedder = make_embedder(profile_for(primary.url, backup.url))
    result = embedder.embed_batch(TEXTS[:2])
    np.testing.assert_allclose(result.vectors, expected(TEXTS[:2]), rtol=1e-6)
    assert (primary.count(PATH), backup.count(PATH)) == (1, 1)
    assert embedder.ref == "p0/m"  # the chain keeps the primary's identity


def test_breaker_skips_a_failing_model_then_retries_after_cooldown(fault: FaultServer, fault_backup: FaultServer) -> None:
    primary, backup = fault, fault_backup
    primary.then(PATH, *[Reply(503)] * 10)
    extra = "http:\n  breaker_failures: 2\n  breaker_cooldown: 600\n"
    embedder = make_embedder(_with(profile_for(primary.url, backup.url), extra))
    for _ in range(4):
        embedder.embed_batch(["x"])
    assert primary.count(PATH) == 2  # skipped after two failures in a row
    assert backup.count(PATH) == 4
    cooled = make_embedder(_with(profile_for(primary.url, backup.url), "http:\n  breaker_failures: 2\n  breaker_cooldown: 0\n"))
    for _ in range(3):
        cooled.embed_batch(["x"])
    assert primary.count(PATH) == 5  # cool-down over at once: each call tries the primary again


def test_when_every_circuit_is_open_nothing_is_called(fault: FaultServer, fault_backup: FaultServer) -> None:
    fault.then(PATH, Reply(500, {"error": "a down"}))
    fault_backup.then(PATH, Reply(500, {"error": "b down"}))
    embedder = make_embedder(_with(profile_for(fault.url, fault_backup.url), "http:\n  breaker_failures: 1\n  breaker_cooldown: 600\n"))
    with pytest.raises(ProviderError, match=r"^embed: every model failed: embed p0/m: POST /v1/embeddings: HTTP 500: a down \| embed p1/m"):
        embedder.embed_batch(["x"])
    with pytest.raises(ProviderError) as info:
        embedder.embed_batch(["x"])
    assert str(info.value).startswith("embed: every model failed: embed p0/m: skipped after 1 failure in a row; tried again in 600s")
    assert (fault.count(), fault_backup.count()) == (1, 1)


def _with(profile: Any, http_yaml: str) -> Any:
    from rag.profile import parse_profile as parse

    merged = parse(http_yaml)
    profile.http = merged.http
    return profile


def test_fallback_with_other_dimensions_is_refused(fault: FaultServer, fault_backup: FaultServer) -> None:
    primary, backup = fault, fault_backup
    backup.dims = 16
    embedder = make_embedder(profile_for(primary.url, backup.url))
    embedder.embed_batch(["x"])
    primary.then(PATH, Reply(500))
    with pytest.raises(
        ProviderError, match=r"returned 16-dimensional vectors where p0/m gives 8; embedding fallbacks must be the same model"
    ):
        embedder.embed_batch(["y"])


def test_a_local_fallback_of_another_size_is_a_config_error(fault: FaultServer) -> None:
    profile = profile_for(fault.url, extra="  dimensions: 768\n")
    profile.embedding.fallbacks = ["local/all-MiniLM-L6-v2"]
    with pytest.raises(ConfigError, match=r"<string>:\d+: embedding.dimensions is 768, but local/all-MiniLM-L6-v2 gives 384$"):
        make_embedder(profile)


def test_rag_serve_is_an_openai_compatible_embedding_provider(rag_serve_url: str) -> None:
    profile = parse_profile(
        f"providers:\n  mine:\n    kind: openai\n    base_url: {rag_serve_url}/v1\nembedding:\n  model: mine/all-MiniLM-L6-v2\n"
    )
    embedder = make_embedder(profile)
    texts = ["a cat on a mat", "quantum chromodynamics"]
    remote = embedder.embed_batch(texts)
    local = LocalEmbedder().embed_batch(texts)
    np.testing.assert_allclose(remote.vectors, local.vectors, atol=1e-5)
    assert remote.usage.input_tokens == local.usage.input_tokens and not remote.usage.counted
    assert embedder.dimensions == 384
