"""The output schemas ``rag mcp`` publishes for its tools (``outputSchema`` in ``tools/list``).

The fields an agent needs are named and described; the few it cannot do
without are required, the rest may be null, and every object allows more
(``additionalProperties``), so the results carry everything ``--json`` does.
Imported only by :mod:`rag.mcp_server` (pydantic comes with the MCP SDK).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class SearchHit(_Open):
    id: str = Field(description="The chunk's id (stable while the file is unchanged).")
    source: str = Field(description="The file the chunk comes from, as indexed.")
    title: str | None = Field(default=None, description="The document's title.")
    heading: str | None = Field(default=None, description="The heading path above the chunk, e.g. 'Install › Limits'.")
    text: str = Field(description="The chunk's text.")
    score: float = Field(description="The score that ordered the hits (fused rank score in hybrid, cosine in dense, BM25 in fts).")
    ranks: dict[str, int] | None = Field(default=None, description="The chunk's rank per retriever (dense, fts, hybrid).")
    scores: dict[str, float] | None = Field(default=None, description="The chunk's score per retriever.")


class SearchResult(_Open):
    query: str
    mode: str = Field(description="hybrid, dense or fts.")
    hits: list[SearchHit] = Field(description="Best first.")


class Citation(_Open):
    n: int = Field(description="The number [n] the answer cites this source by.")
    id: str = Field(description="The chunk's id.")
    source: str = Field(description="The file.")
    heading: str | None = Field(default=None, description="The heading path above the chunk.")
    score: float | None = Field(default=None, description="Its relevance score (score_kind says which).")
    text: str | None = Field(default=None, description="The text the answer was given.")
    cited: bool | None = Field(default=None, description="Whether the answer cites it.")


class AskAnswer(_Open):
    question: str
    answer: str = Field(description="The answer, with [n] citations checked against citations[].n.")
    no_answer: bool = Field(description="True when nothing in the index passed the relevance threshold (the CLI exits 10).")
    extractive: bool | None = Field(default=None, description="True when the answer is sentences of the sources (no chat model).")
    citations: list[Citation] = Field(description="The numbered sources, in rank order.")
    invalid_citations: list[int] | None = Field(default=None, description="Citations removed from the answer: they named no given source.")
    models: dict[str, Any] | None = Field(default=None, description="The embedding, rerank and chat models used.")
    usage: dict[str, Any] | None = Field(default=None, description="Tokens and calls per stage.")
    cost: dict[str, Any] | None = Field(default=None, description="Cost per stage, from the profile's prices.")
    warnings: list[str] | None = Field(
        default=None, description="What the CLI would print as warnings (stale files, a cache it could not use)."
    )


class IndexStatus(_Open):
    store: str = Field(description="The index folder.")
    chunks: int
    sources: int = Field(description="Indexed files.")
    files: int | None = Field(default=None, description="Indexed files (rag status --files lists them).")
    version: int | None = Field(default=None, description="The published table version.")
    embedding: dict[str, Any] | None = Field(default=None, description="The model the index was built with.")
    threshold: dict[str, Any] | None = Field(default=None, description="The no-answer threshold and where it comes from.")
    spend: dict[str, Any] | None = Field(default=None, description="This budget window's spend, when anything here is priced.")


class IndexReport(_Open):
    files_seen: int | None = None
    files_indexed: int = Field(description="Files added or changed, now indexed.")
    files_unchanged: int | None = None
    files_deleted: int | None = None
    files_skipped: int | None = None
    chunks_added: int | None = None
    chunks_removed: int | None = None
    chunks_total: int | None = None
    skipped: list[dict[str, Any]] | None = Field(default=None, description="Files left out, with the reason.")
