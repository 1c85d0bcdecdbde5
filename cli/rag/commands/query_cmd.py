"""``rag query``: retrieve chunks for a query (or a stream of them with -), as lines a person reads or JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from rag.commands.common import JsonOption, ProfileOption, emit_json, stdin_batches

if TYPE_CHECKING:
    from rag.documents import Hit
    from rag.profile import RetrievalConfig

BATCH = 64  # queries searched together at most: their hits' rows are read in one go


def command(
    query: str = typer.Argument(..., help="The query text, or - to read one query per line from stdin (JSON lines out)."),
    mode: str | None = typer.Option(None, "--mode", "-m", help="hybrid (default), dense or fts."),
    top_k: int | None = typer.Option(None, "--top-k", "-k", help="How many hits (default: retrieval.top_k)."),
    where: str | None = typer.Option(None, "--where", help="SQL filter on columns, e.g. \"source LIKE '%guide%'\"."),
    profile: str | None = ProfileOption,
    json_out: bool = JsonOption,
) -> None:
    """Retrieve chunks: dense, full-text or hybrid, with scores and per-retriever ranks."""
    from rag.api import open_index
    from rag.retrieve import validate_options, validate_query
    from rag.text import clean_text
    from rag.trace import mark, query_fields

    # Bad arguments are usage errors whether or not an index exists: check them before opening it.
    validate_options(mode, top_k)
    if query != "-":
        query = validate_query(clean_text(query))  # bytes that are not UTF-8 arrive as surrogates
    index = open_index(profile).open()  # "no index" is an error before stdin is read
    if query == "-":
        for batch in stdin_batches(BATCH):
            since = mark(index.retriever)
            results = index.search_many(batch, mode=mode, top_k=top_k, where=where)
            fields = query_fields(index.retriever, since, len(batch))  # the index, model and latency: the batch's
            for text, hits in zip(batch, results, strict=True):
                emit_json({"query": text, "hits": [h.as_dict() for h in hits], **fields})
        return
    since = mark(index.retriever)
    hits = index.search(query, mode=mode, top_k=top_k, where=where)
    shown_mode = mode or index.profile.retrieval.mode
    if json_out:
        emit_json({"query": query, "mode": shown_mode, "hits": [h.as_dict() for h in hits], **query_fields(index.retriever, since)})
        return
    _print_hits(hits, shown_mode, query, index.profile.retrieval)


def _print_hits(hits: list[Hit], mode: str, query: str, retrieval: RetrievalConfig) -> None:
    """Rank, score and place on one line, a snippet under it: no column ever breaks a path at 80 columns."""
    from rich.console import Console

    from rag.render import HIT_INDENT, hit_lines, place, score_legend, score_text, shown_score

    out, err = Console(highlight=False, soft_wrap=True), Console(stderr=True, highlight=False, soft_wrap=True)
    if not hits:
        err.print(f"no hits for {query!r} ({mode})", markup=False)
        return
    out.print(f"{mode} · {query}", style="bold", markup=False, soft_wrap=True)
    for rank, hit in enumerate(hits, start=1):
        first, second = hit_lines(
            rank,
            score_text(shown_score(hit.scores, retrieval)),
            place(hit.source, hit.heading, hit.title, out.width - HIT_INDENT),
            hit.text,
            out.width,
        )
        out.print(first, markup=False, soft_wrap=True)
        if second:
            out.print(second, style="dim", markup=False, soft_wrap=True)
    err.print(score_legend(hits[0].scores, retrieval), style="dim", markup=False)
