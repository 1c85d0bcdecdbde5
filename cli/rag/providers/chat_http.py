"""Chat over the OpenAI-compatible ``/v1/chat/completions`` API, optionally streamed (SSE).

Streaming asks for usage in the final chunk (``stream_options.include_usage``);
servers that ignore it get their tokens counted here with tiktoken.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from rag.errors import ProviderError
from rag.http import Endpoint, StreamInterrupted
from rag.providers.base import ChatResult, Usage
from rag.tokens import count_tokens
from rag.usage import reported_usage

CHAT_PATHS = {
    "openai": "/v1/chat/completions",
    "vllm": "/v1/chat/completions",
    "cohere": "/compatibility/v1/chat/completions",
}

_PER_MESSAGE = 4  # role and separators, as OpenAI's own counting recipe adds


class HttpChat:
    """:class:`rag.providers.base.ChatModel` over HTTP. Thread-safe."""

    def __init__(self, ref: str, endpoint: Endpoint, model: str, *, path: str) -> None:
        self.ref = ref
        self._endpoint = endpoint
        self._model = model
        self._path = path

    def complete(
        self,
        messages: list[dict[str, str]],
        *,
        temperature: float = 0.0,
        max_tokens: int = 512,
        on_delta: Callable[[str], None] | None = None,
    ) -> ChatResult:
        body: dict[str, Any] = {"model": self._model, "messages": messages, "temperature": temperature, "max_tokens": max_tokens}
        if on_delta is None:
            data = self._endpoint.post_json(self._path, body, stage="chat", model=self.ref)
            text, finish, usage = self._parse(data)
        else:
            body.update(stream=True, stream_options={"include_usage": True})
            lines = self._endpoint.stream_lines(self._path, body, stage="chat", model=self.ref)
            text, finish, usage = self._consume(lines, on_delta)
        return ChatResult(text, self.ref, usage or _counted(messages, text), finish)

    def _parse(self, data: Any) -> tuple[str, str | None, Usage | None]:
        choices = data.get("choices") if isinstance(data, dict) else None
        if not choices or not isinstance(choices[0], dict):
            raise self._bad("has no choices")
        message = choices[0].get("message") or {}
        return str(message.get("content") or ""), choices[0].get("finish_reason"), reported_usage(data)

    def _consume(self, lines: Iterable[str], on_delta: Callable[[str], None]) -> tuple[str, str | None, Usage | None]:
        parts: list[str] = []
        finish: str | None = None
        usage: Usage | None = None
        for line in lines:
            if not line.startswith("data:"):
                continue  # blank separators, comments, event names
            payload = line[len("data:") :].strip()
            if payload == "[DONE]":
                break
            try:
                chunk = json.loads(payload)
            except ValueError:
                raise self._broken(parts, f"sent a malformed event: {payload[:80]!r}") from None
            if isinstance(chunk, dict) and chunk.get("error"):
                raise self._broken(parts, f"sent an error: {self._endpoint.redact(str(chunk['error']))[:200]}")
            for choice in chunk.get("choices") or []:
                delta = (choice.get("delta") or {}).get("content")
                if delta:
                    parts.append(delta)
                    on_delta(delta)
                finish = choice.get("finish_reason") or finish
            usage = reported_usage(chunk) or usage
        return "".join(parts), finish, usage

    def _bad(self, what: str) -> ProviderError:
        return ProviderError(f"chat {self.ref}: POST {self._path}: the response {what}", provider=self._endpoint.name, path=self._path)

    def _broken(self, parts: list[str], what: str) -> ProviderError:
        """Once text was shown, a fallback would repeat it: the error says so and is final."""
        if parts:
            return StreamInterrupted(
                f"chat {self.ref}: POST {self._path}: the stream {what} after output began", provider=self._endpoint.name, path=self._path
            )
        return self._bad(f"stream {what}")


def _counted(messages: list[dict[str, str]], text: str) -> Usage:
    prompt = sum(count_tokens(str(m.get("content", ""))) + _PER_MESSAGE for m in messages)
    return Usage(input_tokens=prompt, output_tokens=count_tokens(text), calls=1, counted=True)
