"""Index files or documents: chunk, embed in batches, store — incrementally.

Unchanged files (same mtime and size) are not even read; changed files are
re-chunked and only chunks whose text is new to the embedding cache are
embedded. Files are committed in groups, each group one atomic LanceDB
commit, so Ctrl-C or ``kill -9`` leaves every file either fully old or fully
new, and a re-run picks up where the last one stopped.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rag import loaders
from rag.chunking import ChunkSettings, chunk_document, sha256
from rag.discover import Found, Skip, walk
from rag.documents import Chunk, Document
from rag.embed_cache import open_cache
from rag.errors import ModelMismatchError, ProviderError, SourceError
from rag.faults import checkpoint, passed
from rag.lock import writer_lock
from rag.profile import Profile
from rag.providers import make_embedder
from rag.providers.base import Embedder, Usage, Vectors
from rag.store import FileState, Store


class Events(Protocol):
    """What the indexer tells its caller while it works (the CLI draws a progress bar).

    ``total``: files that will be read this run. ``advance``: work done, as it is done (chunks per
    embedding batch, files as each is finished). ``skipped``: a file left out (``kind`` is one of
    binary, too large, unreadable, special file, bad name, empty), summarised by the caller.
    ``warn``: anything else worth one line.
    """

    def total(self, files: int) -> None: ...
    def advance(self, files: int = 0, chunks: int = 0) -> None: ...
    def skipped(self, path: str, reason: str, kind: str) -> None: ...
    def warn(self, message: str) -> None: ...


class _Silent:
    def total(self, files: int) -> None:
        pass

    def advance(self, files: int = 0, chunks: int = 0) -> None:
        pass

    def skipped(self, path: str, reason: str, kind: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass


@dataclass
class IndexReport:
    files_seen: int = 0
    files_indexed: int = 0
    files_unchanged: int = 0
    files_skipped: int = 0
    files_deleted: int = 0
    chunks_added: int = 0
    chunks_removed: int = 0
    chunks_total: int = 0
    embedding_calls: int = 0
    embedded_texts: int = 0
    cache_hits: int = 0
    fts_rebuilt: bool = False
    seconds: float = 0.0
    skipped: list[dict[str, str]] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    embedding: dict[str, Any] = field(default_factory=dict)
    table_version: int = 0

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "usage"}
        out["usage"] = {"embed": self.usage.as_dict()}
        out["chunks_per_s"] = round(self.embedded_texts / self.seconds, 2) if self.seconds else 0.0
        out["seconds"] = round(self.seconds, 3)
        return out


def chunk_settings(profile: Profile) -> ChunkSettings:
    c = profile.chunking
    return ChunkSettings(c.max_tokens, c.overlap, c.encoding)


def embedding_info(embedder: Embedder, profile: Profile) -> dict[str, Any]:
    return {
        "model": embedder.ref,
        "version": embedder.version,
        "dimensions": embedder.dimensions,
        "document_prefix": profile.embedding.document_prefix,
        "query_prefix": profile.embedding.query_prefix,
    }


def open_store(profile: Profile, table: str | None = None) -> Store:
    return Store(profile.store_path, table or profile.store.table)


def index_paths(profile: Profile, paths: list[Path], *, rebuild: bool = False, events: Events | None = None) -> IndexReport:
    """Index files under ``paths``; chunks of files gone from those paths are deleted."""
    if not paths:
        raise SourceError("no paths given; usage: rag index PATH...")
    for path in paths:
        if not path.exists():
            raise SourceError(f"path not found: {path}; check the path you passed to rag index")
    found: list[Found] = []
    skipped: list[Skip] = []
    for item in walk(paths, profile.sources):
        if isinstance(item, Found):
            found.append(item)
        else:
            skipped.append(item)
    if not found and not skipped:
        raise SourceError(f"nothing to index under {', '.join(map(str, paths))}: no files (after .gitignore and sources.exclude)")
    roots = [p.resolve() for p in paths]

    def is_under_roots(source: str) -> bool:
        return any(source == str(r) or source.startswith(str(r).rstrip("/") + "/") for r in roots)

    def plan(states: dict[str, FileState], force: bool, report: IndexReport, ev: Events) -> tuple[Iterator[Document], list[str]]:
        seen = {str(f.path) for f in found} | {str(s.path) for s in skipped}
        gone = [src for src in states if is_under_roots(src) and src not in seen]
        changed = [f for f in found if force or _changed(states.get(str(f.path)), f)]
        report.files_seen = len(found) + len(skipped)
        report.files_unchanged = len(found) - len(changed)
        for skip in skipped:
            kept = states.get(str(skip.path))
            note = f"; kept its {kept.chunks} chunks from the last run" if kept else ""
            report.skipped.append({"path": str(skip.path), "reason": skip.reason + note, "kind": skip.kind})
            ev.skipped(str(skip.path), skip.reason + note, skip.kind)
        report.files_skipped = len(skipped)
        ev.total(len(changed))
        return _load_files(changed, states, report, ev), gone

    return _run(profile, None, plan, rebuild=rebuild, events=events)


def index_documents(
    profile: Profile,
    docs: Iterable[Document],
    *,
    table: str | None = None,
    prune: bool = True,
    rebuild: bool = False,
    events: Events | None = None,
) -> IndexReport:
    """Index in-memory documents (a dataset): unchanged means the same sha256."""
    docs = list(docs)

    def plan(states: dict[str, FileState], force: bool, report: IndexReport, ev: Events) -> tuple[Iterator[Document], list[str]]:
        for doc in docs:
            doc.sha256 = doc.sha256 or sha256(doc.text)
        present = {d.source for d in docs}
        gone = [src for src in states if src not in present] if prune else []
        changed = [d for d in docs if force or states.get(d.source) is None or states[d.source].sha256 != d.sha256]
        report.files_seen = len(docs)
        report.files_unchanged = len(docs) - len(changed)
        ev.total(len(changed))
        return iter(changed), gone

    return _run(profile, table, plan, rebuild=rebuild, events=events)


def forget_sources(profile: Profile, sources: list[str], *, events: Events | None = None) -> IndexReport:
    """Delete the chunks of ``sources`` (e.g. files that no longer exist), keeping the full-text index current."""
    wanted = set(sources)

    def plan(states: dict[str, FileState], force: bool, report: IndexReport, ev: Events) -> tuple[Iterator[Document], list[str]]:
        return iter(()), [src for src in states if src in wanted]

    return _run(profile, None, plan, rebuild=False, events=events)


def _changed(state: FileState | None, found: Found) -> bool:
    return state is None or state.mtime != found.mtime or state.size != found.size


def _load_files(files: list[Found], states: dict[str, FileState], report: IndexReport, ev: Events) -> Iterator[Document]:
    for f in files:
        try:
            data = f.path.read_bytes()
            doc = loaders.load(f.path, data)
        except (OSError, loaders.LoadError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            kept = states.get(str(f.path))
            note = f"; kept its {kept.chunks} chunks from the last run" if kept else ""
            report.skipped.append({"path": str(f.path), "reason": reason + note, "kind": "unreadable"})
            report.files_skipped += 1
            ev.skipped(str(f.path), reason + note, "unreadable")
            ev.advance(files=1)
            continue
        doc.mtime = f.mtime
        if not doc.sections:  # still indexed (as nothing), so chunks from before it was emptied go
            ev.warn(f"{f.path} is empty (0 bytes): nothing to index in it" if not data else f"{f.path} has no text: nothing to index in it")
        encoding = doc.meta.get("encoding")
        if encoding not in (None, "utf-8", "utf-8-sig"):
            ev.warn(f"{f.path} is not valid UTF-8; decoded it as {encoding}")
        yield doc


def _run(profile: Profile, table: str | None, plan: Any, *, rebuild: bool, events: Events | None) -> IndexReport:
    ev = events or _Silent()
    started = time.perf_counter()
    report = IndexReport()
    embedder = make_embedder(profile)
    info = embedding_info(embedder, profile)
    settings = chunk_settings(profile)
    store = open_store(profile, table)
    with writer_lock(store.lock_path, profile.store.lock_timeout, ev.warn):
        if rebuild:
            store.drop()
        if store.exists():
            store.check_embedding(info)
        meta = store.meta()
        force = bool(meta) and meta.get("chunking") != settings.as_dict()
        if force:
            ev.warn("chunking settings changed since the last run; re-chunking every file (unchanged text is not re-embedded)")
        states = store.file_states()
        docs, gone = plan(states, force, report, ev)
        writer = _Writer(profile, store, embedder, info, settings, report, ev)
        if gone and store.exists():
            removed = sum(states[s].chunks for s in gone)
            store.delete_sources(gone)
            report.files_deleted, report.chunks_removed = len(gone), removed
        try:
            writer.write_all(docs, states)
        except ProviderError as err:
            # What was committed stays and is searchable by full text too; the re-run embeds only the rest.
            if store.exists() and (writer.commits or report.files_deleted):
                meta = store.meta()
                if _refresh_fts(store, meta, compact=False):
                    store.write_meta(meta)
            if not writer.commits:
                raise
            raise ProviderError(
                f"{err}; {report.files_indexed} files were indexed before it failed and the index is consistent: "
                "re-run the same command to resume",
                provider=err.provider,
                path=err.path,
                status=err.status,
                retryable=err.retryable,
            ) from err
        if store.exists():
            meta = store.meta()
            report.fts_rebuilt = _refresh_fts(store, meta, compact=bool(writer.commits or report.files_deleted))
            meta["chunking"] = settings.as_dict()
            meta["embedding"] = {**info, "dimensions": writer.dim or info["dimensions"]}
            store.write_meta(meta)
            store.publish()  # only now do queries see this run's changes: all of them at once
            report.chunks_total = store.count()
            report.table_version = store.version
        report.embedding = {**info, "dimensions": writer.dim or info["dimensions"]}
    report.seconds = time.perf_counter() - started
    return report


def _refresh_fts(store: Store, meta: dict[str, Any], *, compact: bool) -> bool:
    """Rebuild the full-text index when it lags the table; True when it was rebuilt (``meta`` records the version)."""
    stale = meta.get("fts_version") != store.version or not store.has_fts()
    if not stale or store.count() == 0:
        return False
    if compact:
        checkpoint("compact")
        store.compact()
        passed("compact")
    checkpoint("fts")
    store.build_fts()
    passed("fts")
    meta["fts_version"] = store.version
    return True


class _Writer:
    """Chunk, embed (cache first) and commit documents in groups of whole files."""

    def __init__(
        self,
        profile: Profile,
        store: Store,
        embedder: Embedder,
        info: dict[str, Any],
        settings: ChunkSettings,
        report: IndexReport,
        ev: Events,
    ) -> None:
        self.profile, self.store, self.embedder = profile, store, embedder
        self.info, self.settings, self.report, self.ev = info, settings, report, ev
        self.dim: int | None = embedder.dimensions or (store.meta().get("embedding") or {}).get("dimensions")
        key = f"{info['model']}@{info['version']}#{profile.embedding.dimensions}#{profile.embedding.document_prefix}"
        self.cache = open_cache(store.root / "embed-cache.sqlite", key, self.dim, ev.warn)
        self.commits = 0
        workers = getattr(embedder, "max_concurrency", None) or profile.embedding.concurrency
        self.pool = ThreadPoolExecutor(max_workers=max(1, min(workers, profile.embedding.concurrency)))

    def write_all(self, docs: Iterator[Document], states: dict[str, FileState]) -> None:
        group: list[tuple[Document, list[Chunk]]] = []
        size = 0
        try:
            for doc in docs:
                chunks = chunk_document(doc, self.settings)
                group.append((doc, chunks))
                size += len(chunks)
                if size >= self.profile.store.commit_chunks:
                    self._commit(group, states)
                    group, size = [], 0
            if group:
                self._commit(group, states)
        finally:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.cache.close()

    def _commit(self, group: list[tuple[Document, list[Chunk]]], states: dict[str, FileState]) -> None:
        chunks = [c for _, chunks in group for c in chunks]
        bodies = [body_text(c) for c in chunks]
        vectors = self._embed(bodies)
        if self.dim is None and len(vectors):
            self.dim = int(vectors.shape[1])
        elif len(vectors) and vectors.shape[1] != self.dim:
            raise ModelMismatchError(
                f"{self.info['model']} now returns {vectors.shape[1]}-dimensional vectors, but the index at {self.store.root} "
                f"holds {self.dim}; did the model behind it change? Re-index with: rag index --rebuild PATH"
            )
        if not self.store.exists():
            if self.dim is None:  # nothing to store yet and no table: nothing to do
                self.ev.advance(files=len(group))
                return
            self.store.ensure_table(self.dim, {"embedding": {**self.info, "dimensions": self.dim}, "chunking": self.settings.as_dict()})
        docs = {d.source: d for d, _ in group}
        rows = [_row(c, b, v, docs[c.source]) for c, b, v in zip(chunks, bodies, vectors, strict=True)]
        sources = list(docs)
        old_ids = self._existing_ids(sources, states)
        new_ids = {c.id for c in chunks}
        checkpoint("commit")
        self.store.replace_sources(rows, sources, self.dim or 0)
        passed("commit")
        self.commits += 1
        self.report.files_indexed += len(group)
        self.report.chunks_added += len(new_ids - old_ids)
        self.report.chunks_removed += len(old_ids - new_ids)
        self.ev.advance(files=len(group), chunks=len(chunks))

    def _existing_ids(self, sources: list[str], states: dict[str, FileState]) -> set[str]:
        from rag.store import sql_in

        known = [s for s in sources if s in states]
        if not known or not self.store.exists():
            return set()
        data = self.store.dataset.to_table(columns=["id"], filter=sql_in("source", known))
        return set(data.column("id").to_pylist())

    def _embed(self, bodies: list[str]) -> Vectors:
        prefix = self.profile.embedding.document_prefix
        shas = [sha256(prefix + b) for b in bodies]
        cached = self.cache.get_many(shas)
        todo = list(dict.fromkeys(s for s in shas if s not in cached))
        self.report.cache_hits += len(bodies) - sum(1 for s in shas if s not in cached)
        text_of = {s: prefix + b for s, b in zip(shas, bodies, strict=True)}
        # Batches of similar length pad least: the model's cost follows the longest text in a batch.
        todo.sort(key=lambda s: len(text_of[s]))
        size = self.profile.embedding.batch_size
        batches = [todo[i : i + size] for i in range(0, len(todo), size)]
        checkpoint("embed")
        for batch, result in zip(
            batches, self.pool.map(lambda b: self.embedder.embed_batch([text_of[s] for s in b]), batches), strict=True
        ):
            fresh = dict(zip(batch, np.asarray(result.vectors, dtype=np.float32), strict=True))
            self.cache.put_many(fresh)
            cached.update(fresh)
            self.report.embedding_calls += 1
            self.report.embedded_texts += len(batch)
            self.report.usage.add(result.usage)
        if not shas:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        return np.stack([cached[s] for s in shas])


def body_text(chunk: Chunk) -> str:
    """What is embedded and full-text indexed: the chunk with its title and heading path in front.

    Headings carry meaning the chunk text often lacks ("Installation", "Limits");
    the title is left out when the text already starts with it.
    """
    heading = chunk.heading
    parts = [heading] if heading.startswith(chunk.title) else [chunk.title, heading]
    start = chunk.text.lstrip("#= \t")
    context = [p for p in parts if p and not start.startswith(p)]
    return (" › ".join(context) + "\n\n" + chunk.text) if context else chunk.text


def _row(chunk: Chunk, body: str, vector: np.ndarray, doc: Document) -> dict[str, Any]:
    return {
        "id": chunk.id,
        "source": chunk.source,
        "title": chunk.title,
        "heading": chunk.heading,
        "text": chunk.text,
        "body": body,
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
