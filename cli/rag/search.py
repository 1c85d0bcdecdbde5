"""Search as the CLI, a script or an agent calls it: queries searched together, each one traced.

``search(profile, ["q1", "q2"])`` opens the published index once (or uses the
given :class:`rag.retrieve.Retriever`), embeds the queries in batches, runs
dense search over vectors held in memory and full text on the one opened
index, and appends one trace line per query when ``trace.path`` is set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rag.trace import mark, trace_queries

if TYPE_CHECKING:
    from rag.documents import Hit
    from rag.profile import Profile
    from rag.retrieve import Retriever


def search(
    profile: Profile,
    queries: list[str],
    *,
    mode: str | None = None,
    top_k: int | None = None,
    where: str | None = None,
    retriever: Retriever | None = None,
) -> list[list[Hit]]:
    """Hits for each of ``queries``, in order."""
    if retriever is None:
        from rag.retrieve import Retriever

        retriever = Retriever(profile)
    since = mark(retriever)
    results = retriever.search_many(queries, mode=mode, top_k=top_k, where=where)
    trace_queries(profile, retriever, queries, results, mode=mode, top_k=top_k, where=where, since=since)
    return results
