"""``rag mcp`` driven by the MCP SDK's own client over stdio, against a real index."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from tests.clirun import rag, write

mcp = pytest.importorskip("mcp")  # the dev extra installs it; a bare install has no rag mcp

from mcp import ClientSession, StdioServerParameters, stdio_client  # noqa: E402


def corpus(root: Path) -> Path:
    docs = root / "docs"
    write(docs / "animals.txt", "Foxes are omnivores. They eat mice, berries and insects.\n\nThe lazy dog sleeps all day.\n")
    write(docs / "install.md", "# Install\n\nInstall rag with pip from a checkout:\n\n    pip install .\n")
    assert rag("index", str(docs), cwd=root).code == 0
    return docs


def session(cwd: Path, script: Callable[[ClientSession], Awaitable[Any]], *args: str) -> Any:
    """Start ``rag mcp ARGS`` in ``cwd`` and run ``script`` with an initialised client session."""
    env = {k: v for k, v in os.environ.items() if k.startswith(("RAG_", "HOME", "PATH", "XDG_"))}
    params = StdioServerParameters(command=sys.executable, args=["-m", "rag", "mcp", *args], cwd=str(cwd), env=env)

    async def main() -> Any:
        async with stdio_client(params) as (read, write_), ClientSession(read, write_) as client:
            await client.initialize()
            return await script(client)

    return asyncio.run(main())


def test_tools_search_ask_status_and_errors(tmp_path: Path) -> None:
    corpus(tmp_path)

    async def script(client: ClientSession) -> dict[str, Any]:
        listed = await client.list_tools()
        return {
            "tools": {t.name: t for t in listed.tools},
            "search": await client.call_tool("search", {"query": "what do foxes eat", "top_k": 2}),
            "fts": await client.call_tool("search", {"query": "pip checkout", "mode": "fts"}),
            "ask": await client.call_tool("ask", {"question": "what do foxes eat?"}),
            "status": await client.call_tool("status", {}),
            "empty": await client.call_tool("search", {"query": "   "}),
            "bad_k": await client.call_tool("search", {"query": "foxes", "top_k": 0}),
            "bad_mode": await client.call_tool("search", {"query": "foxes", "mode": "fuzzy"}),
            "bad_where": await client.call_tool("search", {"query": "foxes", "where": "source LIKE"}),
            "missing": await client.call_tool("ask", {}),
            "index": await client.call_tool("index", {"paths": ["docs"]}),
        }

    got = session(tmp_path, script)
    tools = got["tools"]
    assert set(tools) == {"search", "ask", "status", "index"}
    assert tools["search"].input_schema["required"] == ["query"]
    assert tools["search"].input_schema["properties"]["mode"]["anyOf"][0]["enum"] == ["hybrid", "dense", "fts"]
    assert tools["ask"].input_schema["properties"]["question"]["description"]
    assert tools["search"].annotations.read_only_hint and not tools["index"].annotations.read_only_hint
    assert {"query", "mode", "hits"} <= set(tools["search"].output_schema["required"])
    assert tools["ask"].output_schema["properties"]["no_answer"]["description"].startswith("True when nothing")

    search = got["search"]
    assert not search.is_error
    hits = search.structured_content["hits"]
    assert len(hits) == 2 and hits[0]["source"].endswith("animals.txt")
    assert search.structured_content["mode"] == "hybrid" and "hybrid" in hits[0]["scores"]
    assert got["fts"].structured_content["hits"][0]["source"].endswith("install.md")

    answer = got["ask"].structured_content
    assert not got["ask"].is_error and answer["no_answer"] is False
    assert "They eat mice, berries and insects [1]." in answer["answer"]
    assert answer["citations"][0]["n"] == 1 and answer["citations"][0]["source"].endswith("animals.txt")
    assert "retrieved" not in answer

    status = got["status"].structured_content
    assert status["sources"] == 2 and status["files"] == 2 and status["embedding"]["model"] == "local/all-MiniLM-L6-v2"

    def error(name: str) -> str:
        result = got[name]
        assert result.is_error, name
        return str(result.content[0].text)

    assert error("empty") == 'the query is empty; pass the question as text in quotes, e.g. "how do I install it?"'
    assert error("bad_k") == "--top-k must be at least 1, not 0"
    assert "mode" in error("bad_mode")  # the schema's enum, checked by the SDK
    assert error("bad_where").startswith("--where")
    assert "question" in error("missing")
    assert error("index") == f"indexing through MCP is off; set mcp.allow_index: true in {'<built-in default>'} to allow it"


def test_index_tool_when_the_profile_allows_it(tmp_path: Path) -> None:
    docs = corpus(tmp_path)
    write(tmp_path / "rag.yaml", "mcp:\n  allow_index: true\n")
    write(docs / "boats.md", "# Boats\n\nA ketch has two masts; the mizzen is shorter.\n")

    async def script(client: ClientSession) -> list[Any]:
        before = await client.call_tool("search", {"query": "ketch masts", "top_k": 1})
        indexed = await client.call_tool("index", {"paths": ["docs"]})
        after = await client.call_tool("search", {"query": "ketch masts", "top_k": 1})
        return [before, indexed, after]

    before, indexed, after = session(tmp_path, script)
    assert not before.structured_content["hits"][0]["source"].endswith("boats.md")
    assert not indexed.is_error, indexed.content
    assert (indexed.structured_content["files_indexed"], indexed.structured_content["files_unchanged"]) == (1, 2)
    assert after.structured_content["hits"][0]["source"].endswith("boats.md")  # the tools reopened the new version


def test_streamable_http_with_a_bearer_token(tmp_path: Path) -> None:
    import re
    import subprocess

    import httpx
    from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client

    corpus(tmp_path)
    env = {**os.environ, "RAG_TEST_MCP_TOKEN": "mcp-token-0001"}
    args = [sys.executable, "-m", "rag", "mcp", "--http", "--port", "0", "--token-env", "RAG_TEST_MCP_TOKEN"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.match(r"rag mcp: (http://127\.0\.0\.1:\d+/mcp) \(streamable HTTP\); Ctrl-C stops", line)
        assert match, line
        url = match.group(1)
        assert httpx.post(url, json={}, timeout=30).status_code == 401

        async def main() -> Any:
            client = create_mcp_http_client(headers={"authorization": "Bearer mcp-token-0001"})
            async with streamable_http_client(url, http_client=client) as streams, ClientSession(streams[0], streams[1]) as session:
                await session.initialize()
                return await session.call_tool("search", {"query": "what do foxes eat", "top_k": 1})

        found = asyncio.run(main())
        assert found.structured_content["hits"][0]["source"].endswith("animals.txt")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
