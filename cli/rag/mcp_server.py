"""``rag mcp``: the index as Model Context Protocol tools, over stdio or streamable HTTP.

Tools (input and output schemas are published by ``tools/list``; outputs in :mod:`rag.mcp_schemas`):

    search(query, mode?, top_k?, where?)   ranked chunks with every retriever's score, as ``rag query --json``
    ask(question, top_k?, top_n?, mode?, where?, extractive?)
                                           the answer with checked [n] citations and its sources, as ``rag ask --json``
                                           (without the per-stage candidate lists); ``no_answer`` is true when the
                                           documents do not answer (the CLI's exit 10)
    status()                               what is indexed, as ``rag status --json`` (files counted, not listed)
    index(paths)                           index files or folders, as ``rag index --json``; refused unless the profile
                                           sets ``mcp.allow_index: true``

A failure is a tool error (``isError``) whose text is the one line the CLI
would print after ``error:`` (structured: ``{"error": ..., "exit_code": ...}``,
the CLI's exit code); arguments that do not fit the schema are the SDK's own
tool error. The index, the models and the answer cache open
once, on first use; after ``index`` they are reopened, so searches see the new
version. Tools run one at a time (the models are not shared across threads).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from rag.errors import RagError, UsageError
from rag.mcp_schemas import AskAnswer, IndexReport, IndexStatus, SearchResult

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from rag.profile import Profile

Mode = Literal["hybrid", "dense", "fts"]

INSTRUCTIONS = (
    "Search and question a local document index built by rag. Use search for ranked passages with their file "
    "and heading, ask for a cited answer (citations [n] refer to the numbered sources returned with it), "
    "status to see what is indexed."
)


class Tools:
    """The tools' library calls, through one :class:`rag.api.Index`; one lock, so a call at a time uses it."""

    def __init__(self, profile: Profile) -> None:
        from rag.api import Index

        self.profile = profile
        self.index = Index(profile)
        self._lock = threading.Lock()

    def run(self, fn: Callable[[], dict[str, Any]]) -> Any:
        """``fn``'s result (a dict: the SDK checks it against the tool's output model), or a tool error
        carrying the CLI's one line (and its exit code, structured)."""
        from mcp.types import CallToolResult, TextContent

        with self._lock:
            try:
                return fn()
            except RagError as err:
                # Returned, not raised: the SDK would prefix a raised ToolError with "Error executing tool ..."
                error = {"error": str(err), "exit_code": err.exit_code}
                return CallToolResult(content=[TextContent(type="text", text=str(err))], structured_content=error, is_error=True)

    def search(self, query: str, mode: str | None, top_k: int | None, where: str | None) -> dict[str, Any]:
        from rag.retrieve import validate_options, validate_query

        validate_options(mode, top_k)  # before the index opens: bad arguments are bad whether or not it exists
        query = validate_query(query)
        hits = self.index.search(query, mode=mode, top_k=top_k, where=where)
        return {"query": query, "mode": mode or self.profile.retrieval.mode, "hits": [h.as_dict() for h in hits]}

    def ask(self, question: str, **options: Any) -> dict[str, Any]:
        out = self.index.ask(question, **options).as_dict(self.profile)
        out.pop("retrieved", None)  # per-stage candidate lists: the trace's business, not an agent's
        return out

    def status(self) -> dict[str, Any]:
        info = self.index.status()
        info["files"] = len(info["files"])
        return info

    def add(self, paths: list[str]) -> dict[str, Any]:
        if not self.profile.mcp.allow_index:
            raise UsageError(f"indexing through MCP is off; set mcp.allow_index: true in {self.profile.source} to allow it")
        if not paths:
            raise UsageError("paths is empty; give files or folders to index")
        return self.index.add([Path(p) for p in paths]).as_dict()  # later searches open the version it published

    def close(self) -> None:
        self.index.close()


def build_server(profile: Profile) -> MCPServer:
    """The MCP server for ``profile``'s index."""
    from mcp.server.mcpserver import MCPServer
    from mcp.types import ToolAnnotations

    from rag import __version__

    tools = Tools(profile)
    server: MCPServer = MCPServer("rag", instructions=INSTRUCTIONS, version=__version__, log_level="WARNING")
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    @server.tool(annotations=read_only, structured_output=True)
    def search(
        query: Annotated[str, Field(description="What to look for, in words.")],
        mode: Annotated[Mode | None, Field(description="hybrid (dense + BM25, fused), dense or fts; default: retrieval.mode")] = None,
        top_k: Annotated[int | None, Field(description="How many hits (at least 1); default: retrieval.top_k")] = None,
        where: Annotated[str | None, Field(description="SQL filter on chunk columns, e.g. source LIKE '%guide%'")] = None,
    ) -> SearchResult:
        """Retrieve the chunks that best match a query: each hit has its source file, heading, text and scores."""
        return tools.run(lambda: tools.search(query, mode, top_k, where))

    @server.tool(annotations=read_only, structured_output=True)
    def ask(
        question: Annotated[str, Field(description="The question to answer from the indexed documents.")],
        top_k: Annotated[int | None, Field(description="Candidates to retrieve; default: ask.top_k")] = None,
        top_n: Annotated[int | None, Field(description="Sources to answer from; default: ask.top_n")] = None,
        mode: Annotated[Mode | None, Field(description="Retrieval mode; default: retrieval.mode")] = None,
        where: Annotated[str | None, Field(description="SQL filter on chunk columns")] = None,
        extractive: Annotated[bool, Field(description="Answer with source sentences even when a chat model is set")] = False,
    ) -> AskAnswer:
        """Answer a question with [n] citations checked against the numbered sources (citations[].n).
        no_answer is true when nothing in the index passes the relevance threshold."""
        options = {"top_k": top_k, "top_n": top_n, "mode": mode, "where": where, "extractive": extractive, "stream": False}
        return tools.run(lambda: tools.ask(question, **options))

    @server.tool(annotations=read_only, structured_output=True)
    def status() -> IndexStatus:
        """What is indexed: store, chunk and source counts, embedding model, version, no-answer threshold."""
        return tools.run(tools.status)

    writes = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False)

    @server.tool(annotations=writes, structured_output=True)
    def index(
        paths: Annotated[list[str], Field(description="Files or folders to index (incremental: unchanged files cost nothing).")],
    ) -> IndexReport:
        """Index files or folders into this index. Refused unless the profile sets mcp.allow_index: true."""
        return tools.run(lambda: tools.add(paths))

    return server


def http_app(profile: Profile, *, host: str = "127.0.0.1", token: str | None = None) -> Any:
    """The streamable HTTP app (at ``/mcp``), behind a bearer token when one is given."""
    app = build_server(profile).streamable_http_app(host=host)
    return app if token is None else _Bearer(app, token)


class _Bearer:
    """ASGI: every HTTP request must carry ``Authorization: Bearer <token>``; anything else is a 401."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        import hmac

        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                body = b'{"error": "missing or wrong bearer token"}'
                await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def run_stdio(profile: Profile) -> None:
    """Serve over stdin/stdout until the client hangs up."""
    build_server(profile).run("stdio")
