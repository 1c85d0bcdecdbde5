"""``rag ask``: a grounded answer with checked citations, streamed, then its Sources."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from rag.commands.common import JsonOption, ProfileOption, emit_json, stdin_lines, warn

if TYPE_CHECKING:
    from rich.console import Console

    from rag.answer import AskResult
    from rag.profile import RetrievalConfig


def command(
    question: str = typer.Argument(
        ..., help="The question to answer from the indexed documents, or - for one per line (or JSON lines) on stdin, JSON lines out."
    ),
    top_k: int | None = typer.Option(None, "--top-k", "-k", help="Candidates to retrieve (default: ask.top_k)."),
    top_n: int | None = typer.Option(None, "--top-n", "-n", help="Sources to answer from (default: ask.top_n)."),
    threshold: float | None = typer.Option(
        None,
        "--threshold",
        "-t",
        help="Drop sources below this relevance: rerank score, else cosine (BM25 in fts mode). Default: ask.threshold.",
    ),
    mode: str | None = typer.Option(None, "--mode", "-m", help="Retrieval: hybrid, dense or fts (default: retrieval.mode)."),
    where: str | None = typer.Option(None, "--where", help="SQL filter on chunk columns, e.g. \"source LIKE '%guide%'\"."),
    model: str | None = typer.Option(None, "--model", help="Chat model provider/model (default: chat.model)."),
    no_rerank: bool = typer.Option(False, "--no-rerank", help="Skip the reranker even if rerank.model is set."),
    extractive: bool = typer.Option(False, "--extractive", help="Answer with source sentences even if a chat model is set."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the answer cache."),
    no_stream: bool = typer.Option(False, "--no-stream", help="Print the answer when it is complete (default: chat.stream)."),
    refresh: bool = typer.Option(False, "--refresh", help="Re-index files that changed or disappeared since indexing, then answer."),
    profile: str | None = ProfileOption,
    json_out: bool = JsonOption,
) -> None:
    """Answer a question from the indexed documents, citing them as \\[n]. Exits 10 when they do not answer it."""
    from rag.answer import Settings
    from rag.ask import Asker
    from rag.errors import NO_ANSWER_EXIT
    from rag.profile import load_profile
    from rag.text import clean_text

    prof = load_profile(profile)
    question = clean_text(question)  # bytes that are not UTF-8 arrive as surrogates
    settings = Settings.from_profile(
        prof,
        top_k=top_k,
        top_n=top_n,
        threshold=threshold,
        mode=mode,
        where=where,
        model=model,
        rerank=not no_rerank,
        cache=not no_cache and prof.cache.enabled,
        extractive=extractive,
        stream=False if no_stream else None,
        refresh=refresh,
    )
    settings.validate()
    if question == "-":
        _batch(prof, settings)
        return
    asker = Asker(prof, chat_model=model, rerank=settings.rerank, cache=settings.cache)
    try:
        if json_out:
            result = asker.ask(question, settings, on_warning=warn)
            emit_json(result.as_dict(prof))
        else:
            result = _answer_on_terminal(asker, question, settings)
    finally:
        asker.close()
    if result.no_answer:
        raise typer.Exit(NO_ANSWER_EXIT)


def _batch(prof: Any, settings: Any) -> None:
    """``rag ask -``: one JSON object per line; exits with the first failed line's code, else 0 (no-answers included)."""
    from rag.ask import ask_lines

    failed = 0
    for record in ask_lines(prof, stdin_lines(), settings, on_warning=warn):
        emit_json(record)
        failed = failed or int(record.get("exit_code", 0))
    if failed:
        raise typer.Exit(failed)


def _answer_on_terminal(asker: Any, question: str, settings: Any) -> AskResult:
    from rich.console import Console

    out, err = Console(), Console(stderr=True)
    out.soft_wrap, err.soft_wrap = not out.is_terminal, not err.is_terminal  # piped: no line is broken at 80 columns
    extractive = not asker.generative or settings.extractive
    shown: list[str] = []

    def on_delta(text: str) -> None:
        if not shown and extractive:
            out.print("Extractive answer (no chat model configured)", style="dim italic")
        shown.append(text)
        out.print(text, end="", markup=False, highlight=False, soft_wrap=True)

    result: AskResult = asker.ask(question, settings, on_delta=on_delta, on_warning=warn)
    if result.no_answer:
        out.print(result.answer, style="bold yellow", markup=False)
        _no_answer_hint(err, result)
        return result
    out.print()
    if result.weak:
        err.print("weak match: even the best sentence hardly relates to the question; the documents may not answer it", style="yellow")
    if result.invalid:
        listed = " ".join(f"[{n}]" for n in result.invalid)
        warn(f"removed citations {listed} from the answer: they name no source that was given (sources are 1-{len(result.sources)})")
    _sources(out, result, asker.profile.retrieval)
    err.print(_footer(result), style="dim", markup=False, highlight=False)
    return result


def _sources(console: Console, result: AskResult, retrieval: RetrievalConfig) -> None:
    """One line per file and heading, in rank order, with the score that ordered them (see render.shown_score)."""
    from rich.text import Text

    from rag.render import merge_sources, place, score_text, shown_score

    console.print()
    console.print("Sources", style="bold")
    hits = {s.n: s.hit for s in result.sources}
    entries = [(s.n, place(s.hit.source, s.hit.heading, s.hit.title), shown_score(s.hit.scores, retrieval)) for s in result.sources]
    for entry in merge_sources(entries):
        numbers = "".join(f"[{n}]" for n in entry.numbers)
        score = f" ({score_text(entry.score)})"
        hit = hits[entry.numbers[0]]
        where = place(hit.source, hit.heading, hit.title, console.width - len(numbers) - len(score) - 1)
        line = Text()
        for n in entry.numbers:
            line.append(f"[{n}]", style="bold cyan" if n in result.cited else "dim")
        line.append(" " + where, style="" if any(n in result.cited for n in entry.numbers) else "dim")
        line.append(score, style="dim")
        console.print(line, soft_wrap=True)


def _footer(result: AskResult) -> str:
    t = result.trail
    parts = []
    if result.extractive:
        parts.append(f"extractive · {len(result.cited)} of {len(result.sources)} sources cited")
    else:
        chat = t.models.get("chat") or {}
        parts.append(str(chat.get("model") or chat.get("alias")))
        usage = t.ledger.usage("chat")
        if result.cache_hit:
            parts.append("cached answer")
        elif usage.calls:
            parts.append(f"{usage.input_tokens:,} tokens in, {usage.output_tokens:,} out")
    if "rerank" in t.models:
        parts.append(f"reranked by {t.models['rerank']['model']}")
    parts.append(f"{t.latency_ms.get('total', 0.0) / 1000:.2f} s")
    return " · ".join(parts)


def _no_answer_hint(console: Console, result: AskResult) -> None:
    t = result.trail
    if not t.candidates:
        console.print("nothing was retrieved (is the --where filter too narrow, or the index empty?)", style="dim")
        return
    best = max((h.scores.get(t.threshold_kind, float("-inf")) for h in t.dropped), default=float("-inf"))
    shown = f"the best scored {best:.3f}" if best != float("-inf") else "none has such a score"
    console.print(
        f"no source reached the relevance threshold {t.threshold:g} ({t.threshold_kind}, {t.threshold_source}); {shown}. "
        "Lower --threshold or ask.threshold, or index documents that cover the question.",
        style="dim",
        markup=False,
    )
