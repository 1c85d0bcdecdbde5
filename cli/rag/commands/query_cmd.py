from __future__ import annotations

import io
import sys

import typer

from rag.commands.common import JsonOption, ProfileOption, emit_json


def command(
    query: str = typer.Argument(..., help="The query text, or - to read one query per line from stdin (JSON lines out)."),
    mode: str | None = typer.Option(None, "--mode", "-m", help="hybrid (default), dense or fts."),
    top_k: int | None = typer.Option(None, "--top-k", "-k", help="How many hits (default: retrieval.top_k)."),
    where: str | None = typer.Option(None, "--where", help="SQL filter on columns, e.g. \"source LIKE '%guide%'\"."),
    profile: str | None = ProfileOption,
    json_out: bool = JsonOption,
) -> None:
    """Retrieve chunks: dense, full-text or hybrid, with scores and per-retriever ranks."""
    from rag.profile import load_profile
    from rag.retrieve import Retriever, validate_options, validate_query
    from rag.text import clean_text
    from rag.trace import mark, trace_query

    # Bad arguments are usage errors whether or not an index exists: check them before opening it.
    validate_options(mode, top_k)
    if query != "-":
        validate_query(query)
    prof = load_profile(profile)
    retriever = Retriever(prof)
    if query == "-":
        if isinstance(sys.stdin, io.TextIOWrapper):  # a line that is not UTF-8 is cleaned like an argument, not fatal
            sys.stdin.reconfigure(errors="surrogateescape")
        for line in sys.stdin:
            text = clean_text(line.rstrip("\n"))
            if not text.strip():
                continue
            since = mark(retriever)
            hits = retriever.search(text, mode=mode, top_k=top_k, where=where)
            trace_query(prof, retriever, text, hits, mode=mode, top_k=top_k, where=where, since=since)
            emit_json({"query": text, "hits": [h.as_dict() for h in hits]})
        return
    query = clean_text(query)  # bytes that are not UTF-8 arrive as surrogates
    since = mark(retriever)
    hits = retriever.search(query, mode=mode, top_k=top_k, where=where)
    trace_query(prof, retriever, query, hits, mode=mode, top_k=top_k, where=where, since=since)
    if json_out:
        emit_json({"query": query, "mode": mode or prof.retrieval.mode, "hits": [h.as_dict() for h in hits]})
        return
    from rich.console import Console
    from rich.table import Table

    from rag.render import display_path, snippet

    table = Table(title=f"{mode or prof.retrieval.mode} · {query}", title_justify="left")
    for name in ("#", "score", "source", "heading", "snippet"):
        table.add_column(name, overflow="fold")
    for rank, hit in enumerate(hits, start=1):
        table.add_row(str(rank), f"{hit.score:.4f}", display_path(hit.source), hit.heading, snippet(hit.text))
    Console().print(table)
    if not hits:
        Console(stderr=True).print("no hits")
