"""Rerank documents against a query: input, validation and the one output shape.

Used by ``rag rerank`` and, for validation, by ``rag serve``. Every dialect's
answer comes out as::

    {"results": [{"index", "relevance_score", "document": {"id", "text"}}],   # document with return_documents
     "model", "usage": {...}, "extra_fields": {"provider", "latency", "request_type": "rerank"}}
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.chunking import context_text
from rag.documents import Hit
from rag.errors import UsageError
from rag.profile import Profile, split_model
from rag.providers.base import Reranker, RerankResult
from rag.text import clean_text
from rag.usage import Ledger

DEFAULT_MODEL = "local/minilm-cosine"


@dataclass
class RerankDoc:
    text: str
    id: str | None = None
    meta: dict[str, Any] | None = None


def rerank_text(hit: Hit) -> str:
    """What a reranker judges: the chunk in context, exactly as it was embedded and full-text indexed."""
    return context_text(hit.title, hit.heading, hit.text)


def rerank_hits(reranker: Reranker, query: str, hits: list[Hit]) -> tuple[list[Hit], RerankResult]:
    """``hits`` reranked against ``query``, best first (the one rerank path of ``rag ask`` and ``rag eval``)."""
    result = reranker.rerank(query, [rerank_text(h) for h in hits], top_n=len(hits))
    return in_order(hits, [(h.index, h.score) for h in result.hits]), result


def in_order(hits: list[Hit], order: list[tuple[int, float]]) -> list[Hit]:
    """``hits`` by the reranker's ``(index, score)`` pairs, best first, with ``scores/ranks["rerank"]`` set and the
    rerank score as ``score``; hits it did not return follow in their old order, without a rerank score."""
    out: list[Hit] = []
    for rank, (index, score) in enumerate(sorted(order, key=lambda p: -p[1]), start=1):
        hit = hits[index]
        hit.ranks["rerank"], hit.scores["rerank"], hit.score = rank, score, score
        out.append(hit)
    returned = {index for index, _ in order}
    return out + [h for i, h in enumerate(hits) if i not in returned]


def validate(query: Any, texts: Sequence[Any], top_n: int | None) -> None:
    """The checks every rerank entry point makes before calling a model; messages are part of the API."""
    if not isinstance(query, str) or not query.strip():
        raise UsageError("query is required for rerank")
    if not texts:
        raise UsageError("documents are required for rerank")
    for index, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise UsageError(f"document text is required for rerank at index {index}")
    if top_n is not None and top_n < 1:
        raise UsageError("top_n must be at least 1")


def load_documents(files: Sequence[str] = (), documents_json: str | None = None) -> list[RerankDoc]:
    """FILE arguments (id = the path as given), then the items of a ``--documents`` JSON list."""
    docs = [RerankDoc(_read(path), id=path) for path in files]
    for index, doc in enumerate(docs):
        if not doc.text.strip():
            raise UsageError(f"document text is required for rerank at index {index} ({doc.id} has none)")
    if documents_json is not None:
        docs.extend(_parse_items(_load_json(documents_json), documents_json))
    return docs


def rerank(
    profile: Profile,
    query: str,
    documents: list[RerankDoc],
    *,
    top_n: int | None = None,
    return_documents: bool = False,
    max_tokens_per_doc: int | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    """Validate, rerank with ``model`` (or ``rerank.model`` with its fallbacks, or the local cosine) and shape the answer."""
    from rag.providers import make_reranker

    top_n = profile.rerank.top_n if top_n is None else top_n
    validate(query, [d.text for d in documents], top_n)
    query, texts = clean_text(query), [clean_text(d.text) for d in documents]
    if max_tokens_per_doc is not None:
        if max_tokens_per_doc < 1:
            raise UsageError("max_tokens_per_doc must be at least 1")
        profile = dataclasses.replace(profile, rerank=dataclasses.replace(profile.rerank, max_tokens_per_doc=max_tokens_per_doc))
    reranker = make_reranker(profile, model or profile.rerank.model or DEFAULT_MODEL)
    assert reranker is not None  # a model ref was given
    started = time.perf_counter()
    result = reranker.rerank(query, texts, top_n)
    latency = time.perf_counter() - started
    ledger = Ledger()
    ledger.add("rerank", result.usage)
    results = []
    for hit in sorted(result.hits, key=lambda h: h.score, reverse=True)[:top_n]:
        item: dict[str, Any] = {"index": hit.index, "relevance_score": hit.score}
        if return_documents:
            doc = documents[hit.index]
            item["document"] = {"id": doc.id, "text": texts[hit.index], **({"meta": doc.meta} if doc.meta else {})}
        results.append(item)
    return {
        "results": results,
        "model": result.model,
        "usage": ledger.as_dict(profile)["rerank"],
        "extra_fields": {"provider": split_model(result.model)[0], "latency": round(latency, 4), "request_type": "rerank"},
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text; rerank reads text files") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror})") from None


def _load_json(path: str) -> Any:
    text = _read(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None


def _parse_items(data: Any, source: str) -> list[RerankDoc]:
    if not isinstance(data, list):
        raise UsageError(f'{source}: expected a JSON list of {{"text", "id"?, "meta"?}} objects')
    docs = []
    for item in data:
        if isinstance(item, str):
            docs.append(RerankDoc(item))
            continue
        item = item if isinstance(item, dict) else {}
        text = item.get("text")
        meta = item.get("meta")
        doc_id = item.get("id")
        docs.append(
            RerankDoc(
                text if isinstance(text, str) else "",
                id=None if doc_id is None else str(doc_id),
                meta=meta if isinstance(meta, dict) else None,
            )
        )
    return docs
