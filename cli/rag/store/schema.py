"""The chunk table's row format: schema, the row builder, the columns a hit is read from. Pure.

Every chunk row carries its file's mtime, size and sha256, so incremental
indexing and freshness checks read them back from the same rows queries see:
there is no second table to fall out of step after a crash.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from rag.documents import Chunk, Document, Hit

FTS_COLUMN = "body"
HIT_COLUMNS = ["id", "source", "title", "heading", "text", "start", "end", "ordinal"]
FILE_COLUMNS = ["source", "file_mtime", "file_size", "file_sha256"]


def schema(dim: int):  # type: ignore[no-untyped-def]
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("id", pa.string()),
            pa.field("source", pa.string()),
            pa.field("title", pa.string()),
            pa.field("heading", pa.string()),
            pa.field("text", pa.string()),
            pa.field(FTS_COLUMN, pa.string()),  # the context text: what is embedded and full-text indexed
            pa.field("start", pa.int64()),
            pa.field("end", pa.int64()),
            pa.field("tokens", pa.int32()),
            pa.field("ordinal", pa.int32()),
            pa.field("sha256", pa.string()),
            pa.field("kind", pa.string()),
            pa.field("file_mtime", pa.float64()),
            pa.field("file_size", pa.int64()),
            pa.field("file_sha256", pa.string()),
            pa.field("vector", pa.list_(pa.float32(), dim)),
        ]
    )


def row(chunk: Chunk, body: str, vector: np.ndarray, doc: Document) -> dict[str, Any]:
    return {
        "id": chunk.id,
        "source": chunk.source,
        "title": chunk.title,
        "heading": chunk.heading,
        "text": chunk.text,
        FTS_COLUMN: body,
        "start": chunk.start,
        "end": chunk.end,
        "tokens": chunk.tokens,
        "ordinal": chunk.ordinal,
        "sha256": chunk.sha256,
        "kind": doc.kind,
        "file_mtime": doc.mtime,
        "file_size": doc.size,
        "file_sha256": doc.sha256,
        "vector": vector.tolist(),
    }


def hit(values: dict[str, Any], name: str, rank: int, score: float) -> Hit:
    """A hit from a row read with :data:`HIT_COLUMNS`, as retriever ``name`` ranked and scored it."""
    return Hit(
        id=values["id"],
        source=values["source"],
        title=values["title"],
        heading=values["heading"],
        text=values["text"],
        score=score,
        start=int(values["start"]),
        end=int(values["end"]),
        ordinal=int(values["ordinal"]),
        ranks={name: rank},
        scores={name: score},
    )


def sql_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sql_in(column: str, values: Iterable[str]) -> str:
    return f"{column} IN ({', '.join(sql_quote(v) for v in values)})"
