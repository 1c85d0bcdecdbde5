"""Traces: one JSON line per ``rag ask`` or ``rag query``, appended to ``trace.path``.

A line holds what is needed to explain an answer afterwards — the query,
the index generation and table version that answered, model versions,
retrieved ids with their scores, rerank scores, threshold and cache decisions, usage and latency per stage — and nothing secret: no keys,
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


def index_info(retriever: Retriever) -> dict[str, Any]:
    """Which table answered: its generation and the Lance version read (what a rollback or a rebuild changes)."""
    return {"table": retriever.store.table_name, "generation": retriever.store.generation, "version": retriever.snapshot.version}


@dataclass
class Mark:
    """Taken before a query: when it started, what the retriever had spent, and its embedding time so far."""

    started: float
    spent: Usage
    embed_ms: float = 0.0


def mark(retriever: Retriever) -> Mark:
    return Mark(time.perf_counter(), retriever.usage.copy(), retriever.embed_ms)


def query_fields(retriever: Retriever, since: Mark, queries: int = 1) -> dict[str, Any]:
    """What ``rag query`` adds to its trace line and its ``--json``: the index read, the model, latency per stage
    (for queries searched as one batch, each one's share)."""
    total = (time.perf_counter() - since.started) * 1000 / max(1, queries)
    embed = (retriever.embed_ms - since.embed_ms) / max(1, queries)
    return {
        "index": index_info(retriever),
        "models": {"embedding": embedding_model(retriever)},
        "latency_ms": {"embed": round(embed, 2), "search": round(max(total - embed, 0.0), 2), "retrieve": round(total, 2)},
    }


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
    spent = retriever.usage - since.spent
    fields = query_fields(retriever, since, len(queries))
    for i, (query, hits) in enumerate(zip(queries, results, strict=True)):
        record = {
            "command": "query",
            "query": query,
            "mode": mode or profile.retrieval.mode,
            "top_k": top_k or profile.retrieval.top_k,
            "where": where,
            **fields,
            "retrieved": hit_scores(hits),
            "usage": {"embed": (spent if i == 0 else Usage()).as_dict()},
        }
        if len(queries) > 1:
            record["batch"] = len(queries)
        append_trace(profile, record)


def _rounded(scores: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 6) for k, v in scores.items()}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
