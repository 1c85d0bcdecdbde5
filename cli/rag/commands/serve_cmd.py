"""``rag serve``: the local models behind an OpenAI-compatible HTTP API."""

from __future__ import annotations

import os

import typer

from rag.commands.common import ProfileOption, warn
from rag.errors import ConfigError

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback by default)."),
    port: int = typer.Option(8080, "--port", help="Port to listen on."),
    token_env: str | None = typer.Option(
        None, "--token-env", help="Name of an env var holding a bearer token that clients must send (e.g. RAG_SERVE_TOKEN)."
    ),
    max_batch: int = typer.Option(256, "--max-batch", min=1, help="Most texts per model call when batching concurrent requests."),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", min=0.0, help="How long to gather concurrent requests into one batch."),
    profile_path: str | None = ProfileOption,
) -> None:
    """Serve local/all-MiniLM-L6-v2, local/minilm-cosine and the profile's model folders: /v1/embeddings, /v1/rerank, /v1/models."""
    from rag import server
    from rag.profile import load_profile

    profile = load_profile(profile_path)

    token = None
    if token_env:
        token = os.environ.get(token_env, "").strip()
        if not token:
            raise ConfigError(f"--token-env {token_env}: {token_env} is not set; export it to the token clients must send")
    if host not in _LOOPBACK and token is None:
        warn(f"listening on {host} without --token-env: anyone who can reach this port can use the models")
    sock = server.bind(host, port)
    app = server.create_app(profile=profile, token=token, max_batch=max_batch, max_wait=max_wait_ms / 1000)
    shown = f"[{host}]" if ":" in host else host
    typer.echo(
        f"rag serve: http://{shown}:{sock.getsockname()[1]} (models: {', '.join(server.model_ids(profile))}); Ctrl-C stops", err=True
    )
    server.run(app, sock)
