"""The chat client: plain and streamed (SSE) completions, usage, fallbacks, broken streams."""

from __future__ import annotations

import re
from typing import Any

import pytest

from fault_server import FaultServer, Reply, chat_chunks
from rag.errors import ConfigError, ProviderError
from rag.http import StreamInterrupted
from rag.profile import parse_profile
from rag.providers import make_chat
from rag.tokens import count_tokens

PATH = "/v1/chat/completions"
MESSAGES = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Capital of France?"}]
ANSWER = "Paris is the capital of France."


def profile_for(*urls: str) -> Any:
    providers = "".join(f"  p{i}:\n    kind: openai\n    base_url: {url}\n    max_retries: 0\n" for i, url in enumerate(urls))
    fallbacks = ", ".join(f"p{i}/chat-m" for i in range(1, len(urls)))
    return parse_profile(f"providers:\n{providers}chat:\n  model: p0/chat-m\n  fallbacks: [{fallbacks}]\n")


def test_no_chat_model_configured() -> None:
    assert make_chat(parse_profile("")) is None


def test_local_chat_is_a_config_error() -> None:
    with pytest.raises(
        ConfigError, match=r"no local chat model ships with rag \(local/x\); point chat.model at an OpenAI-compatible server"
    ):
        make_chat(parse_profile(""), "local/x")


def test_plain_completion_reads_usage(fault: FaultServer) -> None:
    chat = make_chat(profile_for(fault.url))
    assert chat is not None
    result = chat.complete(MESSAGES, temperature=0.2, max_tokens=64)
    assert (result.text, result.model, result.finish_reason) == (ANSWER, "p0/chat-m", "stop")
    assert (result.usage.input_tokens, result.usage.output_tokens, result.usage.counted) == (20, 7, False)
    assert fault.bodies(PATH) == [{"model": "chat-m", "messages": MESSAGES, "temperature": 0.2, "max_tokens": 64}]


def test_streaming_calls_on_delta_and_reads_usage_from_the_final_chunk(fault: FaultServer) -> None:
    chat = make_chat(profile_for(fault.url))
    assert chat is not None
    deltas: list[str] = []
    result = chat.complete(MESSAGES, on_delta=deltas.append)
    assert "".join(deltas) == ANSWER and len(deltas) == 6
    assert result.text == ANSWER and result.finish_reason == "stop"
    assert (result.usage.input_tokens, result.usage.output_tokens, result.usage.counted) == (20, 7, False)
    body = fault.bodies(PATH)[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_streaming_without_usage_counts_with_tiktoken(fault: FaultServer) -> None:
    fault.usage = False
    chat = make_chat(profile_for(fault.url))
    assert chat is not None
    result = chat.complete(MESSAGES, on_delta=lambda _: None)
    assert result.usage.counted
    assert result.usage.output_tokens == count_tokens(ANSWER)
    assert result.usage.input_tokens == sum(count_tokens(m["content"]) + 4 for m in MESSAGES)


def test_fallback_before_any_output(fault: FaultServer, fault_backup: FaultServer) -> None:
    fault.then(PATH, Reply(503, {"error": {"message": "overloaded"}}))
    chat = make_chat(profile_for(fault.url, fault_backup.url))
    assert chat is not None
    deltas: list[str] = []
    result = chat.complete(MESSAGES, on_delta=deltas.append)
    assert result.model == "p1/chat-m" and "".join(deltas) == ANSWER
    assert (fault.count(PATH), fault_backup.count(PATH)) == (1, 1)


def test_a_stream_broken_after_output_is_final(fault: FaultServer, fault_backup: FaultServer) -> None:
    fault.then(PATH, Reply(stream=chat_chunks(ANSWER, None)[:3], done=False, cut=True))
    chat = make_chat(profile_for(fault.url, fault_backup.url))
    assert chat is not None
    deltas: list[str] = []
    with pytest.raises(StreamInterrupted, match=r"chat p0/chat-m: POST /v1/chat/completions: the stream broke after output began"):
        chat.complete(MESSAGES, on_delta=deltas.append)
    assert deltas == ["Paris ", "is "]
    assert fault_backup.count(PATH) == 0  # a fallback would have repeated the text


def test_an_error_event_mid_stream(fault: FaultServer) -> None:
    events: list[Any] = [*chat_chunks(ANSWER, None)[:2], {"error": {"message": "upstream died"}}]
    fault.then(PATH, Reply(stream=events))
    chat = make_chat(profile_for(fault.url))
    assert chat is not None
    with pytest.raises(StreamInterrupted, match=re.escape("the stream sent an error: {'message': 'upstream died'} after output began")):
        chat.complete(MESSAGES, on_delta=lambda _: None)


def test_a_malformed_event_before_output_is_a_provider_error(fault: FaultServer) -> None:
    fault.then(PATH, Reply(stream=["{not json"]))
    chat = make_chat(profile_for(fault.url))
    assert chat is not None
    with pytest.raises(ProviderError, match=r"the response stream sent a malformed event: '\{not json'") as info:
        chat.complete(MESSAGES, on_delta=lambda _: None)
    assert not isinstance(info.value, StreamInterrupted)
