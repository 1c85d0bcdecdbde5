"""When to retry a provider call, and how long to wait first."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

# 501 is absent on purpose: it means "not implemented", which waiting will not fix.
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 507, 508, 522, 524, 529})


def is_retryable_status(status: int) -> bool:
    return status in RETRY_STATUSES


def is_retryable_error(exc: Exception) -> bool:
    """Connection failures and timeouts; not TLS or protocol misuse on our side."""
    return isinstance(exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError)


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` (OpenAI) or ``Retry-After`` (seconds or an HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter; ``Retry-After`` wins when the provider sends it."""

    max_retries: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 20.0

    def backoff(self, attempt: int) -> float:
        """Delay before attempt ``attempt + 1``: half fixed, half random, so clients spread out."""
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        return ceiling / 2 + random.uniform(0, ceiling / 2)
