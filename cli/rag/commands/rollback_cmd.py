"""``rag rollback``: make an earlier generation live again, in one step, with no re-embedding."""

from __future__ import annotations

import typer

from rag.commands.common import JsonOption, ProfileOption, emit_json, warn


def command(
    generation: int | None = typer.Argument(None, help="The generation to make live (default: the one live before the live one)."),
    profile: str | None = ProfileOption,
    json_out: bool = JsonOption,
) -> None:
    """Switch queries back to an earlier generation of the index (rag status --history lists them)."""
    from rag.lifecycle import rollback
    from rag.profile import load_profile

    done = rollback(load_profile(profile), generation, warn=warn)
    if json_out:
        emit_json(done)
        return
    g = done["generation"]
    model = (g.get("embedding") or {}).get("model") or (g.get("config") or {}).get("model")
    chunks = f", {g['chunks']:,} chunks" if g.get("chunks") is not None else ""
    print(f"generation {done['to']} is live ({model}{chunks})")
    print(f"generation {done['from']} is kept: rag rollback {done['from']} returns to it")
