"""The one exception hierarchy of rag.

Every expected failure is a subclass of :class:`RagError`. The CLI catches the
root once, prints ``message`` on one line of stderr and exits with
``exit_code``. Anything else escaping is a bug.

    RagError                      exit 1
    ├── UsageError                exit 2   bad arguments or input (empty query, --top-k 0, bad --where)
    ├── ConfigError               exit 3   profile: malformed YAML, unknown key, wrong type, missing env var
    ├── StoreError                exit 4   the index: missing, built with another model, locked
    │   ├── ModelMismatchError
    │   └── LockHeldError
    ├── ProviderError             exit 5   an HTTP provider failed after retries and fallbacks
    │   └── BudgetExceeded        exit 7   a call would pass a budget cap (budget:), refused before it was sent
    ├── SourceError               exit 6   paths to index: missing, empty, nothing indexable
    └── Interrupted               exit 130 Ctrl-C; the index stays consistent

``rag ask`` exits 10 when nothing in the index answers the question; that is
an outcome, not an error, and is not raised.
"""

from __future__ import annotations


class RagError(Exception):
    """Root of every expected failure. ``str(err)`` is one line a user can act on."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message.replace("\n", " ")


class UsageError(RagError):
    exit_code = 2


class ConfigError(RagError):
    exit_code = 3


class StoreError(RagError):
    exit_code = 4


class ModelMismatchError(StoreError):
    pass


class LockHeldError(StoreError):
    pass


class ProviderError(RagError):
    """A provider call failed. Carries what is safe to show: never a key."""

    exit_code = 5

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        path: str = "",
        status: int | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.path = path
        self.status = status
        self.retryable = retryable


class BudgetExceeded(ProviderError):
    """A call that would pass a ``budget:`` cap; nothing was sent. A provider error, so a run stops as it would on one."""

    exit_code = 7


class SourceError(RagError):
    exit_code = 6


class Interrupted(RagError):
    exit_code = 130


NO_ANSWER_EXIT = 10
