"""``rag eval``: parse arguments, run :func:`rag.evaluate.evaluate`, render, gate."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from rag.commands.common import JsonOption, ProfileOption, emit_json
from rag.commands.progress import Bar

if TYPE_CHECKING:
    from rich.progress import ProgressColumn

HELP_MIN = "Gate: fail (exit 1) when a metric of the last stage is below VALUE, e.g. ndcg@10=0.70. Repeatable."
HELP_MAX = "Gate: fail (exit 1) when a stage's latency is above VALUE, e.g. latency.rerank.p95=300ms. Repeatable."


def command(
    dataset: Path | None = typer.Argument(None, help="A BEIR folder (corpus.jsonl, queries.jsonl, qrels/) or a .yaml/.jsonl of questions."),
    split: str = typer.Option("test", "--split", help="BEIR qrels split: qrels/<split>.tsv."),
    mode: str | None = typer.Option(None, "--mode", help="dense, fts or hybrid (default: retrieval.mode of the profile)."),
    k: str = typer.Option("1,3,5,10,100", "--k", help="Cut-offs for every metric, comma-separated."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Evaluate only the first N queries."),
    rerank_depth: int | None = typer.Option(
        None, "--rerank-depth", min=1, help="Rerank this many retrieved documents (default: ask.top_k)."
    ),
    reranker: str | None = typer.Option(None, "--reranker", help="Reranker provider/model overriding rerank.model."),
    no_rerank: bool = typer.Option(False, "--no-rerank", help="Skip the rerank stage even when a reranker is configured."),
    extractive: bool = typer.Option(False, "--extractive", help="Own-docs sets: also answer extractively and check the citations."),
    no_answers: bool = typer.Option(False, "--no-answers", help="Own-docs sets: skip answering even when a chat model is configured."),
    save: Path | None = typer.Option(None, "--save", help="Save the run (with per-query metrics) as JSON, for --compare."),
    compare: Path | None = typer.Option(None, "--compare", help="A run saved with --save: print deltas against it."),
    trec_run: Path | None = typer.Option(None, "--trec-run", help="Write the last stage's ranking as a TREC run file."),
    gates: list[str] = typer.Option([], "--min", help=HELP_MIN),
    max_gates: list[str] = typer.Option([], "--max", help=HELP_MAX),
    ann_recall: bool = typer.Option(
        False, "--ann-recall", help="Recall@10 of the index's ANN search against exact search, on your own index (no DATASET needed)."
    ),
    profile: str | None = ProfileOption,
    as_json: bool = JsonOption,
) -> None:
    """Measure retrieval (and rerank) quality, latency and cost on a labelled set; gate CI on it."""
    from rag.evaluate import EvalRequest, run
    from rag.profile import load_profile

    if ann_recall:
        _ann_recall(load_profile(profile), gates, as_json)
        return
    if dataset is None:
        from rag.errors import UsageError

        raise UsageError("missing DATASET: rag eval DATASET (a BEIR folder or a questions file), or rag eval --ann-recall")

    request = EvalRequest(
        dataset,
        split=split,
        mode=mode,
        ks=k,
        limit=limit,
        rerank_depth=rerank_depth,
        reranker=reranker,
        rerank=not no_rerank,
        answers=not no_answers,
        extractive=extractive and not no_answers,
        gates=gates,
        max_gates=max_gates,
        compare=compare,
        save=save,
        trec_run=trec_run,
    )
    with _Bars() as bars:
        report = run(load_profile(profile), request, events=bars)
    out = report.as_dict()
    if as_json:
        emit_json(out)
    else:
        _render(out)
    for line in report.failures:
        sys.stderr.write(line + "\n")
    if report.failures:
        raise typer.Exit(1)


def _ann_recall(profile: Any, gates: list[str], as_json: bool) -> None:
    from rag.status import ann_recall

    out = ann_recall(profile)
    failures = [
        f"ann recall@{out['k']} {out['recall']} is below {v}" for g in gates for _, v in [g.split("=", 1)] if out["recall"] < float(v)
    ]
    if as_json:
        emit_json(out)
    else:
        sys.stdout.write(
            f"dense search: {out['type']}; recall@{out['k']} against exact search: {out['recall']:.3f} over {out['queries']} of the index's own vectors\n"
        )
    for line in failures:
        sys.stderr.write(line + "\n")
    if failures:
        raise typer.Exit(1)


class _Bars(Bar):
    """Progress bars on stderr for the runner's phases (indexing, queries); silent off a terminal."""

    task: Any = None

    def columns(self, width: int) -> list[ProgressColumn]:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        return [TextColumn("{task.description:>9}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()]

    def phase(self, name: str, total: int) -> None:
        if self.progress is not None:
            self.task = self.progress.add_task(name, total=total)

    def advance(self, n: int = 1) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.advance(self.task, n)


MEASURE_LABELS = {"ndcg": "nDCG", "recall": "Recall", "precision": "P", "mrr": "MRR", "map": "MAP"}


def _render(out: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from rag.metrics import signed

    console = Console()
    ds, cfg, index = out["dataset"], out["config"], out["index"]
    split = f" split {ds['split']}" if ds.get("split") else ""
    console.print(
        f"[bold]{ds['name']}[/]{split}: {ds['judged_queries']} judged queries, mode {cfg['mode']}, {cfg['embedding']}"
        + (f", reranker {cfg['reranker']} (top {cfg['rerank_depth']})" if cfg.get("reranker") else ""),
        highlight=False,
    )
    compared = (out.get("compare") or {}).get("stages", {})
    for name, stage in out["stages"].items():
        deltas = compared.get(name, {}).get("metrics", {})
        title = name
        if name in compared:
            old_cfg = out["compare"]["config"]
            title += f" (vs {out['compare']['against']}: mode {old_cfg.get('mode')}, {old_cfg.get('reranker') or 'no reranker'})"
        table = Table(title=title, title_justify="left")
        table.add_column("metric")
        for k in cfg["ks"]:
            table.add_column(f"@{k}", justify="right")
        for measure, label in MEASURE_LABELS.items():
            cells = []
            for k in cfg["ks"]:
                metric = f"{measure}@{k}"
                cell = f"{stage['metrics'].get(metric, 0.0):.4f}"
                if metric in deltas:
                    cell += f" {_colored(signed(deltas[metric]['delta']))}"
                cells.append(cell)
            table.add_row(label, *cells)
        console.print(table)
        map_delta = f" {_colored(signed(deltas['map']['delta']))}" if "map" in deltas else ""
        console.print(f"MAP (over {cfg['ks'][-1]} documents): {stage['metrics'].get('map', 0.0):.4f}{map_delta}", highlight=False)
    console.print(_cost_table(out, compared))
    if "rerank_lift" in out:
        lift = out["rerank_lift"]
        shown = [f"{m} {_colored(signed(lift[m]))}" for m in (f"ndcg@{cfg['ks'][-1]}", "ndcg@10", "recall@10", "mrr@10") if m in lift]
        latency = out.get("rerank_latency_ms") or {}
        cost = f" · rerank p50 {latency['p50']:.1f} ms, p95 {latency['p95']:.1f} ms" if latency else ""
        console.print("rerank lift: " + ", ".join(dict.fromkeys(shown)) + cost, highlight=False)
    answers = out.get("answers")
    if answers:
        console.print(
            f"answers ({answers['mode']}, {answers['questions']} questions): cite an expected source {answers['cites_expected']:.1%}, "
            f"no valid citation {answers['no_valid_citation']:.1%}, no answer {answers['no_answer']:.1%}; "
            f"p50 {answers['latency_ms']['p50']:.0f} ms, {answers['chat_tokens_per_query']:.0f} chat tokens and "
            f"${answers['chat_cost_per_query_usd']:.6f} per question",
            highlight=False,
        )
    seconds, idx = out["seconds"], index
    reuse = "reused" if idx.get("reused") else f"indexed {idx.get('documents', 0)} docs, embedded {idx.get('embedded', 0)} chunks"
    console.print(
        f"table {idx['table']}: {reuse}; wall {seconds['total']:.1f}s (index {seconds['index']:.1f}s, queries {seconds['queries']:.1f}s)",
        highlight=False,
    )


def _cost_table(out: dict[str, Any], compared: dict[str, Any]) -> Any:
    from rich.table import Table

    from rag.metrics import signed

    table = Table(title="latency and spend per query", title_justify="left")
    for column in ("stage", "p50 ms", "p95 ms", "tokens", "cost $"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for name, stage in out["stages"].items():
        latency = stage["latency_ms"]
        delta = compared.get(name, {}).get("latency_ms", {})
        p50 = f"{latency['p50']:.1f}" + (f" ({signed(delta['p50']['delta'], 1)})" if "p50" in delta else "")
        p95 = f"{latency['p95']:.1f}" + (f" ({signed(delta['p95']['delta'], 1)})" if "p95" in delta else "")
        table.add_row(name, p50, p95, f"{stage['tokens_per_query']:.1f}", f"{stage['cost_per_query_usd']:.6f}")
    return table


def _colored(text: str) -> str:
    if text.startswith("+"):
        return f"[green]{text}[/]"
    if text.startswith("-"):
        return f"[red]{text}[/]"
    return text
