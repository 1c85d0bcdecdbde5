"""``rag status``: what is indexed, by which model, and what upkeep is owed."""

from __future__ import annotations

import typer

from rag.commands.common import JsonOption, ProfileOption, emit_json


def command(
    profile: str | None = ProfileOption,
    json_out: bool = JsonOption,
    files: bool = typer.Option(False, "--files", help="List every indexed source with its chunk count."),
) -> None:
    """Show what is indexed: sources, chunk count, embedding model, table version."""
    from rag.api import open_index

    info = open_index(profile).status()
    if json_out:
        emit_json(info)
        return
    from rich.console import Console

    from rag.calibrate import describe_threshold
    from rag.render import display_path
    from rag.store.ann import describe_ann

    console = Console(highlight=False, soft_wrap=True)  # soft: a long path is never broken at 80 columns
    emb, ch = info["embedding"], info["chunking"]
    rows = [
        ("index", f"{display_path(info['store'])} (table {info['table']}, version {info['version']})"),
        ("chunks", f"{info['chunks']:,} from {info['sources']:,} sources"),
        ("embedding", f"{emb.get('model')} {emb.get('version')} · {emb.get('dimensions')} dims"),
        ("chunking", f"{ch.get('max_tokens')} tokens, overlap {ch.get('overlap')}, {ch.get('encoding')}"),
        ("full-text", "current" if info["fts_current"] else "stale: run rag index again"),
        ("dense", describe_ann(info["ann"])),
        ("no-answer", describe_threshold(info["threshold"])),
    ]
    if info.get("maintenance_owed"):
        rows.append(("upkeep", f"owed: {', '.join(info['maintenance_owed'])} (the next rag index finishes it)"))
    for label, value in rows:
        console.print(f"{label:<11}", style="bold", end="", markup=False)
        console.print(value, markup=False)
    if files:
        width = max((len(f"{f['chunks']:,}") for f in info["files"]), default=1)
        for f in info["files"]:
            console.print(f"  {f['chunks']:>{width},}  {display_path(f['source'])}", markup=False)
