"""``rag status``: what is indexed, by which model, and what upkeep is owed."""

from __future__ import annotations

from typing import Any

import typer

from rag.commands.common import JsonOption, ProfileOption, emit_json


def command(
    profile: str | None = ProfileOption,
    json_out: bool = JsonOption,
    files: bool = typer.Option(False, "--files", help="List every indexed source with its chunk count."),
    history: bool = typer.Option(False, "--history", help="List the index's generations: model, chunking, date, chunks, eval scores."),
) -> None:
    """Show what is indexed: sources, chunk count, embedding model, generation and table version."""
    from rag.api import open_index

    index = open_index(profile)
    if history:
        from rag.lifecycle import history as generations

        info = generations(index.profile)
        if json_out:
            emit_json(info)
        else:
            _history(info)
        return
    info = index.status()
    if json_out:
        emit_json(info)
        return
    from rich.console import Console

    from rag.calibrate import describe_threshold
    from rag.render import display_path
    from rag.store.ann import describe_ann

    console = Console(highlight=False, soft_wrap=True)  # soft: a long path is never broken at 80 columns
    emb, ch = info["embedding"], info["chunking"]
    table = f"table {info['table']}, generation {info['generation']}, version {info['version']}"
    rows = [
        ("index", f"{display_path(info['store'])} ({table})"),
        ("chunks", f"{info['chunks']:,} from {info['sources']:,} sources"),
        ("embedding", f"{emb.get('model')} {emb.get('version')} · {emb.get('dimensions')} dims"),
        *(
            [("rebuild", f"the model is now {info['embedding_now']}: rag index on the indexed folders")]
            if info.get("embedding_now")
            else []
        ),
        ("chunking", f"{ch.get('max_tokens')} tokens, overlap {ch.get('overlap')}, {ch.get('encoding')}"),
        ("full-text", "current" if info["fts_current"] else "stale: run rag index again"),
        ("dense", describe_ann(info["ann"])),
        ("no-answer", describe_threshold(info["threshold"])),
    ]
    if info.get("spend"):
        rows.append(("spend", _spend(info["spend"])))
    if info.get("maintenance_owed"):
        rows.append(("upkeep", f"owed: {', '.join(info['maintenance_owed'])} (the next rag index finishes it)"))
    for label, value in rows:
        console.print(f"{label:<11}", style="bold", end="", markup=False)
        console.print(value, markup=False)
    if files:
        width = max((len(f"{f['chunks']:,}") for f in info["files"]), default=1)
        for f in info["files"]:
            console.print(f"  {f['chunks']:>{width},}  {display_path(f['source'])}", markup=False)


def _history(info: dict[str, Any]) -> None:
    """Up to four short lines per generation, newest first: never wider than 80 columns for the usual model names."""
    from rich.console import Console

    from rag.render import display_path, duration

    console = Console(highlight=False, soft_wrap=True)
    console.print(f"{display_path(info['store'])} · table {info['table']} · live: generation {info['live']}", style="bold", markup=False)
    for g in info["generations"]:
        when = _date(g.get("published") or g.get("built") or g.get("created"))
        console.print(f"generation {g['id']} · {g.get('state', '?')} · {when} · {g.get('reason', '')}", markup=False)
        emb, ch = g.get("embedding") or {}, g.get("chunking") or {}
        parts = [f"{emb.get('model') or (g.get('config') or {}).get('model')} {emb.get('version', '')}".rstrip()]
        if ch:
            parts.append(f"{ch.get('max_tokens')}/{ch.get('overlap')} tokens")
        console.print("  " + " · ".join(parts), markup=False)
        facts = []
        if g.get("chunks") is not None:  # with the build facts: the model line stays within 80 columns
            files = f" from {g['files']:,} files" if g.get("files") is not None else ""
            facts.append(f"{g['chunks']:,} chunks{files}")
        if g.get("seconds") is not None:
            seconds = float(g["seconds"])
            facts.append("built in " + (duration(seconds) if seconds >= 60 else f"{seconds:.1f} s"))
        if g.get("disk_bytes") is not None:
            facts.append(f"{g['disk_bytes'] / 1e6:.1f} MB on disk")
        if facts:
            console.print("  " + " · ".join(facts), style="dim", markup=False)
        scores = (g.get("eval") or {}).get("metrics") or {}
        if scores:  # a line of its own: every line stays within 80 columns
            shown = " · ".join(f"{_label(m)} {scores[m]:.3f}" for m in ("ndcg@10", "recall@10", "mrr@10") if m in scores)
            console.print("  " + shown, style="dim", markup=False)


def _label(metric: str) -> str:
    name, _, k = metric.partition("@")
    return {"ndcg": "nDCG", "recall": "Recall", "mrr": "MRR"}.get(name, name) + (f"@{k}" if k else "")


def _date(ts: float | None) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if ts else "?"


def _spend(spend: dict[str, object]) -> str:
    if "error" in spend:
        return str(spend["error"])
    c = spend["currency"]
    caps = [f"{k} {spend[k]:g} {c}" for k in ("per_day", "per_run") if isinstance(spend.get(k), int | float)]
    line = f"{spend['spent']:.4g} {c} since {spend['window_start']}"
    return line + (f" (budget: {', '.join(caps)})" if caps else "")
