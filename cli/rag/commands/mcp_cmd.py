"""``rag mcp``: the index as MCP tools (search, ask, status, index) for agents, over stdio or streamable HTTP."""

from __future__ import annotations

import typer

from rag.commands.common import ProfileOption


def command(
    http: bool = typer.Option(False, "--http", help="Serve streamable HTTP at http://HOST:PORT/mcp instead of stdio."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on with --http (loopback by default)."),
    port: int = typer.Option(8765, "--port", help="Port to listen on with --http."),
    profile_path: str | None = ProfileOption,
) -> None:
    """Serve the index to agents over the Model Context Protocol: tools search, ask, status and index (mcp.allow_index)."""
    from rag.errors import ConfigError
    from rag.profile import load_profile

    try:
        from rag import mcp_server
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith(("mcp", "pydantic")):
            raise
        raise ConfigError("rag mcp needs the MCP SDK: pip install 'rag[mcp]' (or pip install 'mcp>=2.3,<3')") from None
    profile = load_profile(profile_path)
    if http:
        typer.echo(f"rag mcp: http://{host}:{port}/mcp (streamable HTTP); Ctrl-C stops", err=True)
    mcp_server.run(profile, http=http, host=host, port=port)
