"""Shared fixtures. ``serve`` runs any ASGI app under uvicorn in a thread on a free 127.0.0.1 port."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest


@contextlib.contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 (port picked by the OS) until the block ends; yields its base URL."""
    import uvicorn

    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say they are TCP
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="auto"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(autouse=True)
def _fenced_lookup(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """rag looks for .rag and rag.yaml up from the current folder: a stray one above the tmp dirs
    (say /tmp/rag.yaml) must not reach the tests, nor a RAG_STORE or RAG_PROFILE from the caller's shell."""
    monkeypatch.setenv("RAG_CEILING_DIRECTORIES", str(tmp_path_factory.getbasetemp()))
    monkeypatch.delenv("RAG_STORE", raising=False)
    monkeypatch.delenv("RAG_PROFILE", raising=False)


@pytest.fixture
def serve() -> Iterator[Callable[[Any], str]]:
    """``url = serve(app)``: each app is stopped when the test ends."""
    with contextlib.ExitStack() as stack:
        yield lambda app: stack.enter_context(serve_in_thread(app))


@pytest.fixture(scope="session")
def _fault_servers() -> Iterator[list[Any]]:
    from fault_server import FaultServer

    servers = [FaultServer(), FaultServer()]
    with serve_in_thread(servers[0].app) as first, serve_in_thread(servers[1].app) as second:
        servers[0].url, servers[1].url = first, second
        yield servers


@pytest.fixture
def fault(_fault_servers: list[Any]) -> Any:
    """A fault-injecting provider (tests/fault_server.py), reset for each test; ``fault.url`` is its base URL."""
    return _fault_servers[0].reset()


@pytest.fixture
def fault_backup(_fault_servers: list[Any]) -> Any:
    """A second, independent fault server: the fallback in chains."""
    return _fault_servers[1].reset()


@pytest.fixture(scope="session")
def rag_serve_url() -> Iterator[str]:
    """``rag serve``'s app over real HTTP, shared by the session (the model loads once)."""
    from rag.server import create_app

    with serve_in_thread(create_app()) as url:
        yield url
