"""``rag rerank``: score documents against a query with the profile's reranker."""

from __future__ import annotations

from typing import Any

import typer

from rag.commands.common import JsonOption, ProfileOption, emit_json


def command(
    query: str = typer.Argument(..., help="The query to score the documents against."),
    files: list[str] = typer.Argument(None, help="Text files to rerank; each file is one document."),
    documents: str | None = typer.Option(None, "--documents", "-d", help='JSON list of {"text", "id"?, "meta"?} to rerank.'),
    top_n: int | None = typer.Option(None, "--top-n", "-n", help="How many results to keep (default: rerank.top_n)."),
    return_documents: bool = typer.Option(False, "--return-documents", help="Include each document's id and text."),
    max_tokens_per_doc: int | None = typer.Option(
        None, "--max-tokens-per-doc", help="Truncate documents to this many tokens (default: rerank.max_tokens_per_doc)."
    ),
    model: str | None = typer.Option(None, "--model", "-m", help="provider/model (default: rerank.model, else local/minilm-cosine)."),
    json_output: bool = JsonOption,
    profile_path: str | None = ProfileOption,
) -> None:
    """Rerank documents against a query: rag rerank "query" FILE... or --documents docs.json."""
    from rag.profile import load_profile
    from rag.rerank import load_documents, rerank
    from rag.text import clean_text

    profile = load_profile(profile_path)
    query = clean_text(query)  # bytes that are not UTF-8 arrive as surrogates
    docs = load_documents(files or [], documents)
    answer = rerank(
        profile,
        query,
        docs,
        top_n=top_n,
        return_documents=return_documents,
        max_tokens_per_doc=max_tokens_per_doc,
        model=model,
    )
    if json_output:
        emit_json(answer)
    else:
        _table(answer, [d.id for d in docs], [d.text for d in docs])


def _table(answer: dict[str, Any], ids: list[str | None], texts: list[str]) -> None:
    """Rank, score and document on one line, a snippet under it (fits 80 columns; names are never cut)."""
    from rich.console import Console

    from rag.render import display_path, hit_lines, score_text

    out, err = Console(highlight=False, soft_wrap=True), Console(stderr=True, highlight=False, soft_wrap=True)
    for rank, item in enumerate(answer["results"], 1):
        index = item["index"]
        name = display_path(ids[index]) if ids[index] else f"document {index}"
        first, second = hit_lines(rank, score_text(item["relevance_score"]), name, texts[index], out.width)
        out.print(first, markup=False, soft_wrap=True)
        if second:
            out.print(second, style="dim", markup=False, soft_wrap=True)
    usage = answer["usage"]
    footer = f"{answer['model']} · {usage['input_tokens']:,} tokens · {answer['extra_fields']['latency']:.2f} s"
    err.print(footer, style="dim", markup=False, soft_wrap=True)
