from __future__ import annotations

import typer

from rag.commands.common import JsonOption, ProfileOption, emit_json


def command(
    profile: str | None = ProfileOption,
    json_out: bool = JsonOption,
    files: bool = typer.Option(False, "--files", help="List every indexed source with its chunk count."),
) -> None:
    """Show what is indexed: sources, chunk count, embedding model, table version."""
    from rag.profile import load_profile
    from rag.status import status

    info = status(load_profile(profile))
    if json_out:
        emit_json(info)
        return
    from rich.console import Console

    from rag.calibrate import describe_threshold
    from rag.render import display_path

    console = Console()
    emb = info["embedding"]
    console.print(f"[bold]index[/bold]      {info['store']} (table {info['table']}, version {info['version']})")
    console.print(f"[bold]chunks[/bold]     {info['chunks']} from {info['sources']} sources")
    console.print(f"[bold]embedding[/bold]  {emb.get('model')} {emb.get('version')} · {emb.get('dimensions')} dims")
    ch = info["chunking"]
    console.print(f"[bold]chunking[/bold]   {ch.get('max_tokens')} tokens, overlap {ch.get('overlap')}, {ch.get('encoding')}")
    console.print(f"[bold]full-text[/bold]  {'current' if info['fts_current'] else 'stale: run rag index again'}")
    console.print(f"[bold]no-answer[/bold]  {describe_threshold(info['threshold'])}", highlight=False)
    if files:
        for f in info["files"]:
            console.print(f"  {f['chunks']:>5}  {display_path(f['source'])}")
