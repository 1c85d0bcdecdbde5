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
    """Serve local/all-MiniLM-L6-v2, local/minilm-cosine and the profile's model folders: /v1/embeddings, /v1/rerank, /v1/models.
    With a profile that declares providers, also a gateway to them (/v1/chat/completions, /v1/usage; see gateway: in rag.yaml)."""
    from rag import server
    from rag.gateway import Gateway, gateway_enabled
    from rag.profile import load_profile

    profile = load_profile(profile_path)

    token = read_token(token_env)
    gateway = Gateway(profile) if gateway_enabled(profile) else None
    if host not in _LOOPBACK and token is None and not (gateway and profile.gateway.tokens):
        warn(f"listening on {host} without --token-env: anyone who can reach this port can use the models")
    sock = server.bind(host, port)
    app = server.create_app(profile=profile, token=token, max_batch=max_batch, max_wait=max_wait_ms / 1000, gateway=gateway)
    shown = f"[{host}]" if ":" in host else host
    routed = f"; gateway to {', '.join(sorted(gateway.providers))}" if gateway is not None else ""
    typer.echo(
        f"rag serve: http://{shown}:{sock.getsockname()[1]} (models: {', '.join(server.model_ids(profile))}{routed}); Ctrl-C stops",
        err=True,
    )
    server.run(app, sock)


def read_token(token_env: str | None) -> str | None:
    """The bearer token named by ``--token-env``; None without the option."""
    if not token_env:
        return None
    token = os.environ.get(token_env, "").strip()
    if not token:
        raise ConfigError(f"--token-env {token_env}: {token_env} is not set; export it to the token clients must send")
    return token
