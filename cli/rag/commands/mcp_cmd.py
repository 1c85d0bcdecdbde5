"""``rag mcp``: the index as MCP tools (search, ask, status, index) for agents, over stdio or streamable HTTP."""

from __future__ import annotations

import typer

from rag.commands.common import ProfileOption, warn


def command(
    http: bool = typer.Option(False, "--http", help="Serve streamable HTTP at http://HOST:PORT/mcp instead of stdio."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on with --http (loopback by default)."),
    port: int = typer.Option(8765, "--port", help="Port to listen on with --http (0: any free port, printed)."),
    token_env: str | None = typer.Option(
        None, "--token-env", help="With --http: name of an env var holding a bearer token clients must send (e.g. RAG_MCP_TOKEN)."
    ),
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
    if not http:
        mcp_server.run_stdio(profile)
        return
    from rag import server
    from rag.commands.serve_cmd import read_token

    token = read_token(token_env)
    if host not in ("127.0.0.1", "localhost", "::1") and token is None:
        warn(f"listening on {host} without --token-env: anyone who can reach this port can use the index")
    sock = server.bind(host, port)
    app = mcp_server.http_app(profile, host=host, token=token)
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"rag mcp: http://{shown}:{sock.getsockname()[1]}/mcp (streamable HTTP); Ctrl-C stops", err=True)
    server.run(app, sock)
