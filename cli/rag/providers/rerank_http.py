"""Reranking over HTTP. Each API's wire format is one :class:`RerankDialect` value.

- Cohere            ``POST /v2/rerank``  ``{model, query, documents, top_n, max_tokens_per_doc}``
- Jina, Infinity    ``POST /v1/rerank``  ``{model, query, documents, top_n, return_documents}``
- vLLM              the same, retried on ``/rerank`` when ``/v1/rerank`` answers 404, 405 or 501
- TEI               ``POST /rerank``     ``{query, texts, raw_scores, truncate}`` -> bare ``[{index, score}]``

Dialects without ``max_tokens_per_doc`` get documents truncated here with tiktoken.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rag.errors import ProviderError
from rag.http import Endpoint
from rag.providers.base import RerankHit, RerankResult, Usage
from rag.tokens import count_tokens, truncate_tokens
from rag.usage import reported_usage

log = logging.getLogger("rag.providers")

# A path answering one of these does not exist there; the dialect's next path is tried.
PATH_MISSING = frozenset({404, 405, 501})


@dataclass(frozen=True)
class RerankDialect:
    name: str
    paths: tuple[str, ...]  # tried in order
    documents_field: str = "documents"
    results_fields: tuple[str, ...] = ("results",)  # empty: the body is a bare array of results
    score_field: str = "relevance_score"
    sends_model: bool = True
    top_n_field: str | None = "top_n"
    max_tokens_field: str | None = None  # None: we truncate before sending
    fixed: Mapping[str, Any] = field(default_factory=dict)  # sent as is

    def body(self, model: str, query: str, documents: list[str], top_n: int | None, max_tokens: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {"query": query, self.documents_field: documents, **self.fixed}
        if self.sends_model:
            body["model"] = model
        if self.top_n_field and top_n:
            body[self.top_n_field] = top_n
        if self.max_tokens_field and max_tokens:
            body[self.max_tokens_field] = max_tokens
        return body

    def results(self, data: Any) -> list[Any] | None:
        if not self.results_fields:
            return data if isinstance(data, list) else None
        for key in self.results_fields:
            found = data.get(key) if isinstance(data, dict) else None
            if isinstance(found, list):
                return found
        return None


_OPENAI_STYLE = {"return_documents": False}

DIALECTS: dict[str, RerankDialect] = {
    "cohere": RerankDialect("cohere", ("/v2/rerank",), max_tokens_field="max_tokens_per_doc"),
    "jina": RerankDialect("jina", ("/v1/rerank",), fixed=_OPENAI_STYLE),
    "vllm": RerankDialect("vllm", ("/v1/rerank", "/rerank"), fixed=_OPENAI_STYLE),
    "infinity": RerankDialect("infinity", ("/v1/rerank",), results_fields=("results", "data"), fixed=_OPENAI_STYLE),
    "tei": RerankDialect(
        "tei",
        ("/rerank",),
        documents_field="texts",
        results_fields=(),
        score_field="score",
        sends_model=False,
        top_n_field=None,
        fixed={"raw_scores": False, "truncate": True},
    ),
    # gateways (LiteLLM, rag serve) speak the Jina/Cohere v1 shape
    "openai": RerankDialect("openai", ("/v1/rerank", "/rerank"), fixed=_OPENAI_STYLE),
}


class HttpReranker:
    """:class:`rag.providers.base.Reranker` over one dialect. Thread-safe."""

    version = "api"

    def __init__(self, ref: str, endpoint: Endpoint, model: str, dialect: RerankDialect, *, max_tokens_per_doc: int | None = None) -> None:
        self.ref = ref
        self._endpoint = endpoint
        self._model = model
        self._dialect = dialect
        self._max_tokens = max_tokens_per_doc

    def rerank(self, query: str, documents: list[str], top_n: int | None = None) -> RerankResult:
        dialect = self._dialect
        if self._max_tokens and not dialect.max_tokens_field:
            documents = [truncate_tokens(d, self._max_tokens) for d in documents]
        body = dialect.body(self._model, query, documents, top_n, self._max_tokens)
        data, path = self._post(body)
        hits = self._hits(data, path, len(documents))
        hits.sort(key=lambda h: h.score, reverse=True)
        usage = reported_usage(data) or _pair_tokens(query, documents)
        return RerankResult(hits[: top_n or len(hits)], self.ref, usage)

    def _post(self, body: dict[str, Any]) -> tuple[Any, str]:
        paths = self._dialect.paths
        for i, path in enumerate(paths):
            try:
                return self._endpoint.post_json(path, body, stage="rerank", model=self.ref), path
            except ProviderError as err:
                if err.status not in PATH_MISSING or i == len(paths) - 1:
                    raise
                log.debug("rerank %s: %s answered %s; trying %s", self.ref, path, err.status, paths[i + 1])
        raise AssertionError("unreachable: a dialect has at least one path")

    def _hits(self, data: Any, path: str, count: int) -> list[RerankHit]:
        items = self._dialect.results(data)
        if items is None:
            raise self._bad(path, "has no results list")
        hits = []
        for item in items:
            try:
                index, score = int(item["index"]), float(item[self._dialect.score_field])
            except (KeyError, TypeError, ValueError):
                raise self._bad(path, f"has a result without index and {self._dialect.score_field}: {str(item)[:80]}") from None
            if not 0 <= index < count:
                raise self._bad(path, f"has index {index} for {count} documents")
            hits.append(RerankHit(index, score))
        return hits

    def _bad(self, path: str, what: str) -> ProviderError:
        return ProviderError(f"rerank {self.ref}: POST {path}: the response {what}", provider=self._endpoint.name, path=path)


def _pair_tokens(query: str, documents: list[str]) -> Usage:
    """A cross-encoder reads the query once per document."""
    q = count_tokens(query)
    return Usage(input_tokens=sum(q + count_tokens(d) for d in documents), calls=1, counted=True)
