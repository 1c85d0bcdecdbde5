"""``rag reindex``: build a new generation beside the live one, compare both on an eval set, switch if the gates pass."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from rag.commands.common import JsonOption, ProfileOption, emit_json, warn


def command(
    paths: list[Path] = typer.Argument(None, help="Folders to index (default: those the live generation was built from)."),
    model: str | None = typer.Option(None, "--model", help="Embedding model provider/model for the new generation."),
    eval_set: Path | None = typer.Option(None, "--eval", help="Eval set (BEIR folder or questions file; default: lifecycle.eval)."),
    split: str | None = typer.Option(None, "--split", help="BEIR qrels split (default: lifecycle.split)."),
    gates: list[str] = typer.Option([], "--min", help="Gate: the new generation reaches VALUE, e.g. ndcg@10=0.6. Repeatable."),
    regressions: list[str] = typer.Option(
        [], "--max-regression", help="Gate: a metric may drop at most VALUE against the live one, e.g. ndcg@10=0.01."
    ),
    ceilings: list[str] = typer.Option([], "--max", help="Gate: a stage's latency stays below VALUE, e.g. latency.rerank.p95=300ms."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Build and compare, but leave the live generation live."),
    profile: str | None = ProfileOption,
    json_out: bool = JsonOption,
) -> None:
    """Rebuild the index beside the live one (new model or chunking), evaluate both, switch only if the gates pass."""
    from rag.profile import load_profile
    from rag.reindex import ReindexRequest, reindex

    request = ReindexRequest(
        model=model,
        paths=list(paths or []),
        eval=eval_set,
        split=split,
        min=gates,
        max_regression=regressions,
        max=ceilings,
        dry_run=dry_run,
    )
    result = reindex(load_profile(profile), request, events=_events())
    if json_out:
        emit_json(result)
    else:
        _render(result)
    for line in result["gates"]["failed"]:
        sys.stderr.write(line + "\n")
    if result["gates"]["failed"]:
        raise typer.Exit(1)


def _events() -> Any:
    """The indexer's events: warnings only (a rebuild's progress is the summary that follows)."""
    from rag.events import Silent

    class Warnings(Silent):
        def warn(self, *args: object) -> None:
            warn(str(args[0]))

    return Warnings()


def _render(r: dict[str, Any]) -> None:
    b, live, new = r["build"], r["live"], r["new"]
    live_chunks = f"{b['live_chunks']:,}" if b.get("live_chunks") is not None else "?"
    print(f"built generation {new} beside generation {live} in {b['seconds']:.1f} s")
    print(f"  {b['files_indexed']:,} files ({b['failures']} failed), {b['chunks']:,} chunks (live: {live_chunks})")
    print(f"  {b['embedded']:,} embedded, {b['from_cache']:,} from cache, embedding cost ${b['embed_cost_usd']:.6f}")
    print(f"live  generation {live}: {_model(r['model']['live'])}")
    print(f"new   generation {new}: {_model(r['model']['new'])}")
    if r.get("eval"):
        _comparison(r)
    else:
        print("no eval set (--eval or lifecycle.eval): compared on completeness only")
    print(_verdict(r))


def _model(m: dict[str, Any]) -> str:
    return f"{m.get('model')} {m.get('version') or ''}".rstrip()


def _comparison(r: dict[str, Any]) -> None:
    from rag.commands.eval_cmd import MEASURE_LABELS

    old, new = r["eval"]["live"], r["eval"]["new"]
    from rag.render import display_path

    print(
        f"eval  {display_path(r['dataset'])}: {new['queries']} quer{'y' if new['queries'] == 1 else 'ies'}, {r['eval']['mode']}, stage {new['stage']}"
    )
    print(f"{'':<18}{'live':>10}{'new':>10}{'change':>10}")
    for metric, value in new["metrics"].items():
        before = old["metrics"].get(metric)
        name, _, k = metric.partition("@")
        label = MEASURE_LABELS.get(name, name) + (f"@{k}" if k else "")
        change = f"{value - before:+.4f}" if before is not None else ""
        print(f"{label:<18}{_num(before, 4):>10}{_num(value, 4):>10}{change:>10}")
    for stage, stats in new["latency_ms"].items():
        before = old["latency_ms"].get(stage, {})
        for stat in ("p50", "p95"):
            b, a = before.get(stat), stats[stat]
            change = f"{a - b:+.1f}" if b is not None else ""
            print(f"{f'{stage} {stat} ms':<18}{_num(b, 1):>10}{_num(a, 1):>10}{change:>10}")
    print(f"{'cost/query $':<18}{old['cost_per_query_usd']:>10.6f}{new['cost_per_query_usd']:>10.6f}")


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _verdict(r: dict[str, Any]) -> str:
    live, new = r["live"], r["new"]
    failed = len(r["gates"]["failed"])
    checked = "; ".join(r["gates"]["checked"])
    lines = [f"gates: {checked} ({f'{failed} failed' if failed else 'passed'})" if checked else "gates: none"]
    if r["switched"]:
        lines.append(f"generation {new} is live; rag rollback returns to generation {live}")
    else:
        why = "a gate failed" if failed else "dry run"
        lines += [f"{why}: generation {live} stays live", f"generation {new} is kept: rag rollback {new} makes it live"]
    return "\n".join(lines)
