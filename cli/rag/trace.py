"""Traces: one JSON line per ``rag ask`` or ``rag query``, appended to ``trace.path``.

A line holds what is needed to explain an answer afterwards — the query,
model versions, retrieved ids with their scores, rerank scores, threshold and
cache decisions, usage and latency per stage — and nothing secret: no keys,
no headers, no provider settings. ``rag query`` traces with
:func:`trace_queries` (through :func:`rag.search.search`); ``rag ask`` builds its line in :mod:`rag.ask`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from rag import __version__
from rag.documents import Hit
from rag.errors import ConfigError
from rag.profile import Profile
from rag.usage import Usage

if TYPE_CHECKING:
    from rag.retrieve import Retriever


def append_trace(profile: Profile, record: dict[str, Any]) -> None:
    """Append ``record`` as one line to ``trace.path``; a no-op when tracing is off."""
    if not profile.trace.path:
        return
    path = profile.resolve_path(profile.trace.path)
    line = json.dumps({"ts": _now(), "rag": __version__, **record}, ensure_ascii=False, default=str) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write(line)  # one write of a whole line: concurrent writers do not interleave within it
    except OSError as exc:
        raise ConfigError(f"{profile.where('trace.path')}: cannot append to trace file {path} ({exc.strerror or exc})") from exc


def hit_scores(hits: list[Hit]) -> list[dict[str, Any]]:
    return [{"id": h.id, "source": h.source, "score": round(h.score, 6), "scores": _rounded(h.scores), "ranks": h.ranks} for h in hits]


def embedding_model(retriever: Retriever) -> dict[str, Any]:
    built = retriever.store.meta().get("embedding") or {}
    return {"alias": retriever.profile.embedding.model, "model": built.get("model"), "version": built.get("version")}


@dataclass
class Mark:
    """Taken before a query: when it started and what the retriever had spent."""

    started: float
    spent: Usage


def mark(retriever: Retriever) -> Mark:
    return Mark(time.perf_counter(), retriever.usage.copy())


def trace_queries(
    profile: Profile,
    retriever: Retriever,
    queries: list[str],
    results: list[list[Hit]],
    *,
    mode: str | None,
    top_k: int | None,
    where: str | None,
    since: Mark,
) -> None:
    """One line per query searched together; ``since`` is :func:`mark` taken just before the retrieval.

    Queries searched as one batch (``rag query -``) share its work: each line's latency is its share of the
    batch's, and the batch's usage is on its first line only (zeros after it), so sums over lines stay exact.
    """
    if not profile.trace.path:
        return
    share = (time.perf_counter() - since.started) * 1000 / max(1, len(queries))
    spent = retriever.usage - since.spent
    for i, (query, hits) in enumerate(zip(queries, results, strict=True)):
        record = {
            "command": "query",
            "query": query,
            "mode": mode or profile.retrieval.mode,
            "top_k": top_k or profile.retrieval.top_k,
            "where": where,
            "models": {"embedding": embedding_model(retriever)},
            "retrieved": hit_scores(hits),
            "usage": {"embed": (spent if i == 0 else Usage()).as_dict()},
            "latency_ms": {"retrieve": round(share, 2)},
        }
        if len(queries) > 1:
            record["batch"] = len(queries)
        append_trace(profile, record)


def _rounded(scores: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 6) for k, v in scores.items()}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
