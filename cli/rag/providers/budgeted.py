"""Providers behind a budget: each call is priced and checked before it is sent, and recorded once answered.

:func:`guarded` wraps what :mod:`rag.providers` builds for a command run when
the stage has a price; the wrapper presents the inner model's identity, so
an index records the same model either way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from rag.budget import Budget, Entry, budget_for, chat_tokens, embed_tokens, price, priced, rerank_tokens
from rag.profile import Profile
from rag.providers.base import ChatResult, EmbedResult, RerankResult
from rag.usage import Usage

T = TypeVar("T")


def guarded(profile: Profile, stage: str, model: T) -> T:
    """``model`` behind the profile's budget, or ``model`` itself when its stage costs nothing."""
    rates = price(profile, stage)
    if rates == (0.0, 0.0):
        return model
    wrapper = {"embed": BudgetedEmbedder, "rerank": BudgetedReranker, "chat": BudgetedChat}[stage]
    wrapped: Any = wrapper(model, budget_for(profile), rates)
    return wrapped


class _Budgeted:
    stage = ""

    def __init__(self, inner: Any, budget: Budget, rates: tuple[float, float]) -> None:
        self._inner = inner
        self._budget = budget
        self._rates = rates

    def __getattr__(self, name: str) -> Any:  # ref, version, dimensions, max_concurrency: the inner model's
        return getattr(self._inner, name)

    def _call(self, estimate: Usage, call: Callable[[], T], usage_of: Callable[[T], Usage]) -> T:
        what = f"{self.stage} {self._inner.ref}"
        with self._budget.reserve(what, priced(self._rates, estimate)):
            result = call()
        usage = usage_of(result)
        self._budget.record(Entry(self.stage, str(self._inner.ref), usage, priced(self._rates, usage)))
        return result


class BudgetedEmbedder(_Budgeted):
    stage = "embed"

    def embed_batch(self, texts: list[str]) -> EmbedResult:
        result: EmbedResult = self._call(embed_tokens(texts), lambda: self._inner.embed_batch(texts), lambda r: r.usage)
        return result


class BudgetedReranker(_Budgeted):
    stage = "rerank"

    def rerank(self, query: str, documents: list[str], top_n: int | None = None) -> RerankResult:
        call = lambda: self._inner.rerank(query, documents, top_n)  # noqa: E731
        result: RerankResult = self._call(rerank_tokens(query, documents), call, lambda r: r.usage)
        return result


class BudgetedChat(_Budgeted):
    stage = "chat"

    def complete(
        self,
        messages: list[dict[str, str]],
        *,
        temperature: float = 0.0,
        max_tokens: int = 512,
        on_delta: Callable[[str], None] | None = None,
    ) -> ChatResult:
        call = lambda: self._inner.complete(messages, temperature=temperature, max_tokens=max_tokens, on_delta=on_delta)  # noqa: E731
        result: ChatResult = self._call(chat_tokens(messages, max_tokens), call, lambda r: r.usage)
        return result
