"""The one HTTP layer every provider goes through.

- :func:`make_client`  the httpx client factory: connect and read timeouts, pooled connections
- :class:`Endpoint`    one provider: base URL, credentials, retries with backoff, error translation
- :class:`CircuitBreaker`  skip a model that failed N times in a row, for a cool-down
- :class:`Redactor`    scrub API keys from anything we show

Every attempt is logged on the ``rag.http`` logger at debug level with the
stage, model, status and latency; keys never reach a log, an error or output.
"""

from __future__ import annotations

from rag.http.breaker import CircuitBreaker
from rag.http.endpoint import Endpoint, StreamInterrupted, make_client
from rag.http.redact import Redactor
from rag.http.retry import RetryPolicy, parse_retry_after

__all__ = ["CircuitBreaker", "Endpoint", "Redactor", "RetryPolicy", "StreamInterrupted", "make_client", "parse_retry_after"]
