"""Reads of one version of the chunk table: nearest, full text, by id, by filter, file states.

Every read goes through here, so a Lance failure is translated once: a bad
``--where`` is the user's to fix (exit 2), a data file gone or torn is a
damaged index with the command that rebuilds it (exit 4).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.documents import Hit
from rag.errors import StoreError, UsageError
from rag.store.ann import AnnSettings, find_index, tuned_nprobes
from rag.store.schema import FILE_COLUMNS, FTS_COLUMN, HIT_COLUMNS, hit, sql_in

_RUST_FRAME = re.compile(r",? /\S+\.rs:\d+:\d+")
_SQL_IN_MAX = 500  # values per IN (...) list
FLAT_MAX_ROWS = 250_000  # up to here dense search is one matrix product in memory (384 dims: ~370 MB at the limit)


@dataclass
class FileState:
    mtime: float
    size: int
    sha256: str
    chunks: int


def lance_message(exc: BaseException) -> str:
    """The first line of a Lance error without its Rust source locations."""
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return _RUST_FRAME.sub("", first)[:200]


def damaged(root: Path, exc: BaseException) -> StoreError:
    """A read failed below us (a data file missing or torn): say so, and how to recover."""
    return StoreError(
        f"the index at {root} is damaged and cannot be read ({lance_message(exc)}); rebuild it with: rag index --rebuild PATH"
    )


class Snapshot:
    """One committed version of the table, read-only. Cheap to keep: it never changes under its reader."""

    def __init__(self, dataset: Any, root: Path, ann: AnnSettings | None = None) -> None:
        self.dataset = dataset
        self.root = root
        self.ann = ann or AnnSettings()
        self._has_fts: bool | None = None
        self._count: int | None = None
        self._vectors: np.ndarray | None = None  # normalised, row i = scan offset i
        self._offsets: dict[str, int] | None = None  # chunk id -> row of _vectors
        self._ids: list[str] = []  # row of _vectors -> chunk id
        self._rows: dict[int, int] = {}  # Lance row id -> row of _vectors
        self._vector_index: dict[str, Any] | bool | None = False  # False: not looked up yet

    @property
    def version(self) -> int:
        return int(self.dataset.version)

    @property
    def vector_size(self) -> int:
        return int(self.dataset.schema.field("vector").type.list_size)

    def count(self) -> int:
        if self._count is None:  # one version never changes: count it once
            self._count = int(self.dataset.count_rows())
        return self._count

    @property
    def has_fts(self) -> bool:
        """Whether this version carries the full-text index on the body column."""
        if self._has_fts is None:
            self._has_fts = any(FTS_COLUMN in index.field_names for index in self.dataset.describe_indices())
        return self._has_fts

    def fts_unindexed_rows(self) -> int:
        """Rows the full-text index does not cover yet (they are still searched, without the index's speed)."""
        for index in self.dataset.describe_indices():
            if FTS_COLUMN in index.field_names:
                return int(self.dataset.stats.index_stats(index.name).get("num_unindexed_rows", 0))
        return self.count()

    @property
    def vector_index(self) -> dict[str, Any] | None:
        """The ANN index of this version (:mod:`rag.store.ann`), or None when dense search is exact."""
        if self._vector_index is False:
            self._vector_index = find_index(self.dataset) if self.ann.mode != "off" else None
        return self._vector_index  # type: ignore[return-value]

    def ann_knobs(self, k: int = 10) -> dict[str, Any]:
        """The query knobs for this version's ANN index: the profile's, with the nprobes tuned at its build."""
        return self.ann.query(k, tuned_nprobes(self.dataset))

    # ------------------------------------------------------------------ searches

    def nearest(self, vector: list[float], k: int, where: str | None = None) -> list[Hit]:
        """The ``k`` chunks closest to ``vector`` by cosine, best first; ``scores["dense"]`` is the cosine."""
        return self.nearest_many(np.asarray([vector], dtype=np.float32), k, where)[0]

    def nearest_many(self, vectors: np.ndarray, k: int, where: str | None = None) -> list[list[Hit]]:
        """:meth:`nearest` for each row of ``vectors``.

        Without a filter, a table small enough for memory is searched exactly by one matrix product over its
        vectors, loaded once per snapshot: no table scan per query. With a filter, or past
        :data:`FLAT_MAX_ROWS`, each query is a Lance search (prefiltered). A table with an ANN index
        (:mod:`rag.store.ann`) is searched through it, with or without a filter.
        """
        if vectors.shape[1] != self.vector_size:
            raise StoreError(
                f"the query vector has {vectors.shape[1]} dimensions but the index at {self.root} holds {self.vector_size}; "
                "did the model behind it change? Re-index with: rag index --rebuild PATH"
            )
        if self.vector_index is not None:
            knobs = self.ann_knobs(k)
            return [self._lance_nearest(v, k, where, knobs) for v in vectors]
        if not self.in_memory(where):
            return [self._lance_nearest(v, k, where) for v in vectors]
        found = self._flat(vectors, k)
        wanted = sorted({at for ranked in found for at, _ in ranked})
        rows = dict(zip(wanted, self._take(wanted), strict=True))  # one read for the whole batch, not one per query
        return [[hit(rows[at], "dense", rank, score) for rank, (at, score) in enumerate(ranked, start=1)] for ranked in found]

    def in_memory(self, where: str | None = None) -> bool:
        """Whether dense search runs over the vectors held in memory: no filter, no ANN index, a table that fits."""
        return self.vector_index is None and not where and self.count() <= FLAT_MAX_ROWS

    def nearest_ids(self, vectors: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """(chunk id, cosine) of :meth:`nearest_many` when :meth:`in_memory`, best first, reading no row."""
        found = self._flat(vectors, k)
        return [[(self._ids[at], score) for at, score in ranked] for ranked in found]

    def _flat(self, vectors: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """(row offset, cosine) of the ``k`` nearest rows to each of ``vectors``: one matrix product in memory."""
        matrix = self._matrix()
        if not len(matrix):
            return [[] for _ in vectors]
        queries = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
        scores = queries @ matrix.T
        k = min(k, len(matrix))
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        orders = [candidates[np.argsort(-row[candidates], kind="stable")] for row, candidates in zip(scores, top, strict=True)]
        return [[(int(i), float(row[i])) for i in order] for row, order in zip(scores, orders, strict=True)]

    def exact_nearest(self, vector: np.ndarray, k: int, where: str | None = None) -> list[Hit]:
        """:meth:`nearest` by brute force whatever the table's size or index: the reference ANN is measured against."""
        return self._lance_nearest(vector, k, where, {"use_index": False})

    def _lance_nearest(self, vector: np.ndarray, k: int, where: str | None, knobs: dict[str, Any] | None = None) -> list[Hit]:
        nearest = {"column": "vector", "q": vector.tolist(), "k": k, "metric": "cosine", **(knobs or {})}
        rows = self._read(HIT_COLUMNS, where, nearest=nearest)
        return [hit(r, "dense", rank, 1.0 - float(r["_distance"])) for rank, r in enumerate(rows, start=1)]

    def _matrix(self) -> np.ndarray:
        """Every vector of this version, L2-normalised, in scan order (row i is offset i for :meth:`_take`)."""
        if self._vectors is None:
            try:
                table = self.dataset.to_table(columns=["id", "vector"], with_row_id=True)
            except (OSError, ValueError) as exc:
                raise damaged(self.root, exc) from exc
            column = table.column("vector").combine_chunks()
            self._ids = table.column("id").to_pylist()
            self._rows = {int(row_id): at for at, row_id in enumerate(table.column("_rowid").to_numpy())}
            self._offsets = {chunk_id: at for at, chunk_id in enumerate(self._ids)}
            flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)  # flatten: slice-aware
            matrix = flat.reshape(len(column), self.vector_size)
            self._vectors = matrix / np.clip(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12, None)
        return self._vectors

    def _take(self, offsets: list[int]) -> list[dict[str, Any]]:
        try:
            return list(self.dataset.take(offsets, columns=HIT_COLUMNS).to_pylist())
        except (OSError, ValueError) as exc:
            raise damaged(self.root, exc) from exc

    def full_text(self, query: str, k: int, where: str | None = None) -> list[Hit]:
        """The ``k`` best BM25 matches, best first; ``scores["fts"]`` is the BM25 score."""
        self._require_fts()
        rows = self._read(HIT_COLUMNS, where, full_text_query={"query": query, "columns": [FTS_COLUMN]}, limit=k)
        return [hit(r, "fts", rank, float(r["_score"])) for rank, r in enumerate(rows, start=1)]

    def full_text_ids(self, query: str, k: int, where: str | None = None) -> list[tuple[str, float]]:
        """(chunk id, BM25 score) of :meth:`full_text`, reading no stored column when :meth:`in_memory`.

        The full-text index yields row ids and scores; reading the chunk id column on top cost 3x as much,
        and every column of :meth:`full_text` 5x. Row ids map to chunk ids through the vectors in memory.
        """
        self._require_fts()
        search = {"full_text_query": {"query": query, "columns": [FTS_COLUMN]}, "limit": k}
        if not self.in_memory(where):
            return [(r["id"], float(r["_score"])) for r in self._read(["id", "_score"], where, **search)]
        self._matrix()
        rows = self._read(["_rowid", "_score"], where, **search)
        return [(self._ids[self._rows[r["_rowid"]]], float(r["_score"])) for r in rows]

    def _require_fts(self) -> None:
        if not self.has_fts:
            # Without the index Lance finds nothing at all: an empty answer would look like "no match".
            raise StoreError(
                f"{self.root} has no full-text index yet (rag index stopped before building it); "
                "run rag index again to build it, or use --mode dense"
            )

    def rows(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """:data:`HIT_COLUMNS` of chunks by id (ids not in the table are absent), in one read when the vectors are in memory."""
        if self._offsets is not None:
            wanted = sorted({self._offsets[i] for i in ids if i in self._offsets})
            return {r["id"]: r for r in self._take(wanted)}
        out: dict[str, dict[str, Any]] = {}
        for part in _parts(list(dict.fromkeys(ids))):
            out.update((r["id"], r) for r in self._read(HIT_COLUMNS, sql_in("id", part)))
        return out

    def vectors(self, ids: list[str]) -> dict[str, np.ndarray]:
        """Vectors of chunks by id, for cosines (ids not in the table are absent); from memory, normalised, once
        :meth:`_matrix` holds them."""
        if self._offsets is not None and self._vectors is not None:
            return {i: self._vectors[self._offsets[i]] for i in ids if i in self._offsets}
        out: dict[str, np.ndarray] = {}
        for part in _parts(ids):
            for r in self._read(["id", "vector"], sql_in("id", part)):
                out[r["id"]] = np.asarray(r["vector"], dtype=np.float32)
        return out

    def ids_of(self, sources: list[str]) -> set[str]:
        """Chunk ids of ``sources``."""
        found: set[str] = set()
        for part in _parts(sources):
            found.update(r["id"] for r in self._read(["id"], sql_in("source", part)))
        return found

    def file_states(self) -> dict[str, FileState]:
        """What each indexed file looked like when it was indexed, with its chunk count."""
        try:
            data = self.dataset.to_table(columns=FILE_COLUMNS).to_pydict()
        except (OSError, ValueError) as exc:  # lance: a data file gone or torn
            raise damaged(self.root, exc) from exc
        states: dict[str, FileState] = {}
        for source, mtime, size, sha in zip(data["source"], data["file_mtime"], data["file_size"], data["file_sha256"], strict=True):
            state = states.get(source)
            if state is None:
                states[source] = FileState(mtime, size, sha, 1)
            else:
                state.chunks += 1
        return states

    def batches(self, columns: list[str], batch_size: int = 8192) -> Iterator[dict[str, list[Any]]]:
        """The whole version, ``columns`` only, in batches (bounded memory at any size)."""
        try:
            for batch in self.dataset.to_batches(columns=columns, batch_size=batch_size):
                yield batch.to_pydict()
        except (OSError, ValueError) as exc:
            raise damaged(self.root, exc) from exc

    def vector_batches(self, batch_size: int = 8192) -> Iterator[np.ndarray]:
        """Every stored vector, as float32 matrices of up to ``batch_size`` rows (bounded memory at any size)."""
        try:
            for batch in self.dataset.to_batches(columns=["vector"], batch_size=batch_size):
                column = batch.column(0)
                flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)  # flatten: slice-aware
                yield flat.reshape(len(column), self.vector_size)
        except (OSError, ValueError) as exc:
            raise damaged(self.root, exc) from exc

    # ------------------------------------------------------------------ the one place Lance reads fail

    def _read(self, columns: list[str], where: str | None, **search: Any) -> list[dict[str, Any]]:
        try:
            table = self.dataset.to_table(columns=columns, filter=where or None, prefilter=bool(where), **search)
        except Exception as exc:  # lance raises ValueError/OSError/LanceError for bad filters and torn files
            if where and not where.startswith(("id IN (", "source IN (")):
                raise UsageError(
                    f"--where '{where}' is not a valid filter ({lance_message(exc)}); "
                    "use SQL such as: source LIKE '%guide%' AND kind = 'markdown'"
                ) from exc
            if isinstance(exc, OSError | ValueError):
                raise damaged(self.root, exc) from exc
            raise
        return list(table.to_pylist())


def _parts(values: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(values), _SQL_IN_MAX):
        yield values[start : start + _SQL_IN_MAX]
