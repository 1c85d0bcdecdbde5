"""Index files or documents: chunk, embed in batches, store — incrementally.

Unchanged files (same mtime and size) are not even read; changed files are
re-chunked and only chunks whose text is new to the embedding cache are
embedded. Files are committed in groups, each group one atomic LanceDB
commit, so Ctrl-C or ``kill -9`` leaves every file either fully old or fully
new, and a re-run picks up where the last one stopped.

A run with nothing to do commits nothing: files that gave no chunks (empty,
no text, unreadable) are remembered in the meta with their mtime and size, so
they are neither re-read nor "indexed" again. When a run did change the table
it publishes it, then maintains it (:mod:`rag.store.maintenance`).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag import loaders, threads
from rag.calibrate import update_calibration
from rag.chunking import ChunkSettings, chunk_document, context_text, sha256
from rag.discover import Found, Skip, walk
from rag.documents import Chunk, Document
from rag.embed import EmbedService, cache_key, embedding_record
from rag.embed_cache import open_cache
from rag.errors import ModelMismatchError, ProviderError, SourceError
from rag.events import IndexEvents, Silent
from rag.faults import checkpoint, passed
from rag.lifecycle import BuildRequest, plan_run
from rag.lock import writer_lock
from rag.profile import Profile
from rag.providers import make_embedder
from rag.providers.base import Usage
from rag.store import FileState, Store, open_store
from rag.store import schema as rows
from rag.store.maintenance import Upkeep, maintain, needed, record


@dataclass
class IndexReport:
    files_seen: int = 0
    files_indexed: int = 0
    files_unchanged: int = 0
    files_skipped: int = 0
    files_deleted: int = 0
    files_empty: int = 0  # files with no text (0 bytes, a PDF of images): nothing to index in them
    chunks_added: int = 0
    chunks_removed: int = 0
    chunks_total: int = 0
    embedding_calls: int = 0
    embedded_texts: int = 0
    cache_hits: int = 0
    fts_rebuilt: bool = False
    seconds: float = 0.0
    skipped: list[dict[str, Any]] = field(default_factory=list)  # {path, reason, kind, new}
    usage: Usage = field(default_factory=Usage)
    embedding: dict[str, Any] = field(default_factory=dict)
    table_version: int = 0
    committed: bool = False  # this run changed the table
    maintenance: dict[str, Any] = field(default_factory=dict)
    generation: dict[str, Any] = field(default_factory=dict)  # which generation the run wrote, and whether it went live

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "usage"}
        out["usage"] = {"embed": self.usage.as_dict()}
        out["chunks_per_s"] = round(self.embedded_texts / self.seconds, 2) if self.seconds else 0.0
        out["seconds"] = round(self.seconds, 3)
        return out

    def skip(self, path: str, reason: str, kind: str, known: dict[str, Any], events: IndexEvents) -> None:
        """A file left out this run; ``new`` when the last run did not already leave it out for the same reason."""
        before = known.get(path)
        self.skipped.append({"path": path, "reason": reason, "kind": kind, "new": not before or before.get("kind") != kind})
        self.files_skipped += 1
        events.skipped(path, reason, kind)


def chunk_settings(profile: Profile) -> ChunkSettings:
    c = profile.chunking
    return ChunkSettings(c.max_tokens, c.overlap, c.encoding)


# --------------------------------------------------------------------------- what to index


@dataclass
class _Plan:
    docs: Iterator[Document]
    gone: list[str]  # indexed sources to delete
    unindexed: dict[str, dict[str, Any]]  # files that give no chunks, as this run leaves them (merged into the meta)


def index_paths(
    profile: Profile, paths: list[Path], *, rebuild: bool = False, events: IndexEvents | None = None, request: BuildRequest | None = None
) -> IndexReport:
    """Index files under ``paths``; chunks of files gone from those paths are deleted. ``request``: a shadow build
    for ``rag reindex`` (see :mod:`rag.lifecycle`)."""
    if not paths:
        raise SourceError("no paths given; usage: rag index PATH...")
    for path in paths:
        if not path.exists():
            raise SourceError(f"path not found: {path}; check the path you passed to rag index")
    found: list[Found] = []
    skips: list[Skip] = []
    for item in walk(paths, profile.sources):
        (found if isinstance(item, Found) else skips).append(item)  # type: ignore[arg-type]
    if not found and not skips:
        raise SourceError(
            f"nothing to index under {', '.join(map(str, paths))}: no files (after .gitignore, sources.exclude and sources.default_exclude)"
        )
    roots = [str(p.resolve()).rstrip("/") for p in paths]

    def under_roots(source: str) -> bool:
        return any(source == r or source.startswith(r + "/") for r in roots)

    def plan(states: dict[str, FileState], known: dict[str, Any], force: bool, report: IndexReport, ev: IndexEvents) -> _Plan:
        seen = {str(f.path) for f in found} | {str(s.path) for s in skips}
        gone = [src for src in states if under_roots(src) and src not in seen]
        unindexed = {p: v for p, v in known.items() if not under_roots(p) or p in seen}
        changed, remembered = [], 0
        for f in found:
            path = str(f.path)
            if not (force or _changed(states.get(path), f)):
                continue
            note = known.get(path)
            if path not in states and note and not force and (note["mtime"], note["size"]) == (f.mtime, f.size):
                # It gave no chunks last time and is unchanged: do not read it again.
                if note["kind"] == "empty":
                    report.files_empty += 1
                else:
                    report.skip(path, note["reason"], note["kind"], known, ev)
                remembered += 1
                continue
            changed.append(f)
        report.files_seen = len(found) + len(skips)
        report.files_unchanged = len(found) - len(changed) - remembered
        for skip in skips:
            path = str(skip.path)
            kept = states.get(path)
            note = f"; kept its {kept.chunks} chunks from the last run" if kept else ""
            report.skip(path, skip.reason + note, skip.kind, known, ev)
            unindexed[path] = {"mtime": 0.0, "size": -1, "reason": skip.reason, "kind": skip.kind}
        ev.total(len(changed))
        return _Plan(_load_files(changed, states, known, unindexed, report, ev), gone, unindexed)

    return _run(profile, None, plan, rebuild=rebuild, events=events, roots=roots, request=request)


def index_documents(
    profile: Profile,
    docs: Iterable[Document],
    *,
    table: str | None = None,
    prune: bool = True,
    rebuild: bool = False,
    events: IndexEvents | None = None,
) -> IndexReport:
    """Index in-memory documents (a dataset): unchanged means the same sha256."""
    docs = list(docs)

    def plan(states: dict[str, FileState], known: dict[str, Any], force: bool, report: IndexReport, ev: IndexEvents) -> _Plan:
        for doc in docs:
            doc.sha256 = doc.sha256 or sha256(doc.text)
        present = {d.source for d in docs}
        gone = [src for src in states if src not in present] if prune else []
        changed = [d for d in docs if force or states.get(d.source) is None or states[d.source].sha256 != d.sha256]
        changed = [d for d in changed if d.sections or d.source in states]  # an empty record has nothing to index or delete
        report.files_seen = len(docs)
        report.files_unchanged = len(docs) - len(changed)
        ev.total(len(changed))
        return _Plan(iter(changed), gone, known)

    return _run(profile, table, plan, rebuild=rebuild, events=events)


def forget_sources(profile: Profile, sources: list[str], *, events: IndexEvents | None = None) -> IndexReport:
    """Delete the chunks of ``sources`` (e.g. files that no longer exist), keeping the full-text index current."""
    wanted = set(sources)

    def plan(states: dict[str, FileState], known: dict[str, Any], force: bool, report: IndexReport, ev: IndexEvents) -> _Plan:
        return _Plan(iter(()), [src for src in states if src in wanted], {p: v for p, v in known.items() if p not in wanted})

    return _run(profile, None, plan, rebuild=False, events=events)


def _changed(state: FileState | None, found: Found) -> bool:
    return state is None or state.mtime != found.mtime or state.size != found.size


def _load_files(
    files: list[Found],
    states: dict[str, FileState],
    known: dict[str, Any],
    unindexed: dict[str, dict[str, Any]],
    report: IndexReport,
    ev: IndexEvents,
) -> Iterator[Document]:
    """Read and parse ``files``; those that give no text are remembered in ``unindexed`` (and still yielded when
    their old chunks must go)."""
    for f in files:
        path = str(f.path)
        unindexed.pop(path, None)
        try:
            data = f.path.read_bytes()
            doc = loaders.load(f.path, data)
        except (OSError, loaders.LoadError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            kept = states.get(path)
            note = f"; kept its {kept.chunks} chunks from the last run" if kept else ""
            report.skip(path, reason + note, "unreadable", known, ev)
            if not kept:
                unindexed[path] = {"mtime": f.mtime, "size": f.size, "reason": reason, "kind": "unreadable"}
            ev.advance(files=1)
            continue
        doc.mtime = f.mtime
        encoding = doc.meta.get("encoding")
        if encoding not in (None, "utf-8", "utf-8-sig"):
            ev.warn(f"{path} is not valid UTF-8; decoded it as {encoding}")
        if not doc.sections:
            unindexed[path] = {"mtime": f.mtime, "size": f.size, "reason": "no text", "kind": "empty"}
            report.files_empty += 1
            if path not in states:  # nothing to index and nothing to delete
                ev.advance(files=1)
                continue
        yield doc


# --------------------------------------------------------------------------- one run


def _run(
    profile: Profile,
    table: str | None,
    plan: Any,
    *,
    rebuild: bool,
    events: IndexEvents | None,
    roots: list[str] | None = None,
    request: BuildRequest | None = None,
) -> IndexReport:
    ev = events or Silent()
    started = time.perf_counter()
    report = IndexReport()
    store = open_store(profile, table)
    with writer_lock(store.lock_path, profile.store.lock_timeout, ev.warn):
        # A rebuild or a changed model or chunking writes a new generation beside the live one (rag.lifecycle).
        target = plan_run(profile, table, rebuild=rebuild, request=request, warn=ev.warn, roots=roots)
        profile, store = target.profile, target.store
        embedder = make_embedder(profile)
        info = embedding_record(embedder, profile)
        settings = chunk_settings(profile)
        target.begin(ev.warn)
        if store.exists():
            store.check_embedding(info)
        meta = store.meta()
        force = bool(meta) and meta.get("chunking") != settings.as_dict()
        if force:
            ev.warn("chunking settings changed since the last run; re-chunking every file (unchanged text is not re-embedded)")
        states = store.latest().file_states() if store.exists() else {}
        known = dict(meta.get("unindexed") or {})
        planned: _Plan = plan(states, known, force, report, ev)
        dim = embedder.dimensions or (meta.get("embedding") or {}).get("dimensions")
        cache = open_cache(store.root / "embed-cache.sqlite", cache_key(embedder, profile), dim, ev.warn)
        service = EmbedService(embedder, batch_size=profile.embedding.batch_size, concurrency=profile.embedding.concurrency, cache=cache)
        writer = _Writer(profile, store, service, info, settings, report, ev, dim)
        try:
            if planned.gone and store.exists():
                report.files_deleted, report.chunks_removed = len(planned.gone), sum(states[s].chunks for s in planned.gone)
                store.delete_sources(planned.gone)
                writer.commits += 1
            writer.write_all(planned.docs, states)
        except ProviderError as err:
            if writer.commits and store.published_version() is None:
                _finish(store, profile, settings, writer, report, planned, ev, publish=False)  # a first run: full text works
            if not writer.commits:
                raise
            raise type(err)(  # keeps a refused budget's own exit code
                f"{err}; {report.files_indexed} files were indexed before it failed and the index is consistent: "
                "re-run the same command to resume",
                provider=err.provider,
                path=err.path,
                status=err.status,
                retryable=err.retryable,
            ) from err
        finally:
            service.close()
            report.usage, report.cache_hits = service.usage, service.cache_hits
            report.embedding_calls, report.embedded_texts = service.usage.calls, service.embedded
        ev.stage("publishing, then upkeep")
        _finish(store, profile, settings, writer, report, planned, ev, publish=True)
        ev.stage("calibrating the no-answer gate")
        update_calibration(store, embedder, changed=report.chunks_added + report.chunks_removed, warn=ev.warn)
        report.embedding = {**info, "dimensions": writer.dim or info["dimensions"]}
        report.seconds = time.perf_counter() - started
        report.generation = target.complete(report, roots, ev.warn)
    report.seconds = time.perf_counter() - started
    return report


def _finish(
    store: Store,
    profile: Profile,
    settings: ChunkSettings,
    writer: _Writer,
    report: IndexReport,
    planned: _Plan,
    ev: IndexEvents,
    *,
    publish: bool,
) -> None:
    """Publish what this run changed, maintain the table, and record the run in the meta.

    After a complete run the latest version holds every file as it is on disk, so it is published even when this
    run committed nothing (a run killed between its last commit and its publish is finished this way).
    """
    if not store.exists():
        return
    meta = store.meta()
    changed = bool(writer.commits)
    runs = list(meta.get("runs") or [])
    kept = profile.store.keep_runs
    steps = needed(store, _kept(runs[-kept:]))
    unpublished = publish and store.published_version() != store.latest().version
    if changed or steps or unpublished:
        first = store.publish() if publish else None  # queries see this run's changes, all at once, before any upkeep
        upkeep = maintain(store, Upkeep(), ev.warn, [s for s in steps if s != "cleanup"])
        if publish:
            version = store.publish()
            if changed or unpublished:
                runs.append(
                    {
                        "version": version,
                        "first_published": first,  # readers may still hold it: kept as long as the run is
                        "at": time.time(),
                        "files_indexed": report.files_indexed,
                        "files_deleted": report.files_deleted,
                    }
                )
                meta["runs"] = runs = runs[-kept:]
        maintain(store, upkeep, ev.warn, ["cleanup"], keep=_kept(runs[-kept:]) | ({first} if first is not None else set()))
        record(meta, upkeep)
        report.maintenance = upkeep.as_dict()
        report.fts_rebuilt = upkeep.fts is not None
    if changed or steps or unpublished or meta.get("unindexed", {}) != planned.unindexed or meta.get("chunking") != settings.as_dict():
        meta["chunking"] = settings.as_dict()
        meta["embedding"] = {**(meta.get("embedding") or {}), **writer.info, "dimensions": writer.dim or writer.info["dimensions"]}
        meta["unindexed"] = planned.unindexed
        store.write_meta(meta)
    report.committed = changed
    report.chunks_total = store.published().count()
    report.table_version = store.latest().version


def _settle(pending: Future[None]) -> None:
    """Wait for an in-flight commit while an error unwinds: it is atomic, so letting it land loses nothing."""
    with contextlib.suppress(Exception):
        threads.result(pending)


class _ReadAhead:
    """Documents read and chunked in a thread, a bounded queue ahead of the consumer.

    Errors in the reader (a fault checkpoint, a bug) are raised in the consumer; leaving early (Ctrl-C, an
    embedding error) stops the reader at its next document.
    """

    DEPTH = 64  # documents; each is at most sources.max_bytes, so the read-ahead is bounded

    def __init__(self, docs: Iterator[Document], settings: ChunkSettings) -> None:
        self._docs, self._settings = docs, settings
        self._queue: queue.Queue[tuple[Document, list[Chunk]] | BaseException | None] = queue.Queue(self.DEPTH)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Iterator[tuple[Document, list[Chunk]]]:
        self._thread = threads.start(self._read, "rag-read")
        return self._items()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:  # unblock a reader waiting on a full queue
                self._queue.get_nowait()
        if self._thread is not None:
            self._thread.join(timeout=10)  # it stops at its next document; the caller then reads what it recorded

    def _items(self) -> Iterator[tuple[Document, list[Chunk]]]:
        while (item := threads.take(self._queue)) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    def _read(self) -> None:
        try:
            for doc in self._docs:
                if self._stop.is_set():
                    return
                self._put((doc, chunk_document(doc, self._settings)))
            self._put(None)
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(exc)

    def _put(self, item: tuple[Document, list[Chunk]] | BaseException | None) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(queue.Full):
                self._queue.put(item, timeout=0.1)
                return


def _kept(runs: list[dict[str, Any]]) -> set[int]:
    """Versions the retention keeps for these runs: each run's final version and the one it published before upkeep."""
    return {int(v) for r in runs for v in (r.get("version"), r.get("first_published")) if v is not None}


class _Writer:
    """Chunk, embed (cache first, as soon as a batch is ready) and commit documents in groups of whole files."""

    def __init__(
        self,
        profile: Profile,
        store: Store,
        service: EmbedService,
        info: dict[str, Any],
        settings: ChunkSettings,
        report: IndexReport,
        ev: IndexEvents,
        dim: int | None,
    ) -> None:
        self.profile, self.store, self.service = profile, store, service
        self.info, self.settings, self.report, self.ev = info, settings, report, ev
        self.dim = dim
        self.commits = 0
        self._loaded: list[tuple[Document, list[Chunk]]] = []  # chunked, not embedded yet
        self._ready: list[tuple[Document, list[Chunk], list[dict[str, Any]]]] = []  # embedded, not committed yet

    def write_all(self, docs: Iterator[Document], states: dict[str, FileState]) -> None:
        """Embed while the next files are read and chunked (a thread) and the last group is committed (another).

        The model is the bottleneck; onnxruntime and Lance release the GIL, so reading, parsing and committing
        fill the gaps instead of taking turns with it. At most one commit is in flight, and the read-ahead is
        bounded, so memory stays flat on any number of files.
        """
        with _ReadAhead(docs, self.settings) as ahead, threads.pool(1, "rag-commit") as committer:
            pending: Future[None] | None = None
            try:
                for doc, chunks in ahead:
                    self._loaded.append((doc, chunks))
                    if sum(len(c) for _, c in self._loaded) >= self.service.batch_size:
                        self._embed()
                    if sum(len(c) for _, c, _ in self._ready) >= self.profile.store.commit_chunks:
                        pending = self._commit_after(pending, committer, states)
                self._embed()
                pending = self._commit_after(pending, committer, states)
            finally:
                if pending is not None:
                    _settle(pending)

    def _commit_after(
        self, pending: Future[None] | None, committer: ThreadPoolExecutor, states: dict[str, FileState]
    ) -> Future[None] | None:
        """Start committing the ready group once the previous commit is done (commits stay in order)."""
        if pending is not None:
            threads.result(pending)
        if not self._ready:
            return None
        group, self._ready = self._ready, []
        return committer.submit(self._commit, group, states)

    def _embed(self) -> None:
        if not self._loaded:
            return
        chunks = [c for _, cs in self._loaded for c in cs]
        bodies = [context_text(c.title, c.heading, c.text) for c in chunks]
        prefix = self.profile.embedding.document_prefix
        checkpoint("embed")
        vectors = self.service.embed([prefix + b for b in bodies], on_batch=lambda n: self.ev.advance(chunks=n))
        if len(vectors):
            if self.dim is None:
                self.dim = int(vectors.shape[1])
            elif vectors.shape[1] != self.dim:
                raise ModelMismatchError(
                    f"{self.info['model']} now returns {vectors.shape[1]}-dimensional vectors, but the index at {self.store.root} "
                    f"holds {self.dim}; did the model behind it change? Re-index with: rag index --rebuild PATH"
                )
        at = 0
        for doc, cs in self._loaded:
            self._ready.append((doc, cs, [rows.row(c, bodies[at + i], vectors[at + i], doc) for i, c in enumerate(cs)]))
            at += len(cs)
        self.ev.advance(files=len(self._loaded))
        self._loaded = []

    def _commit(self, group: list[tuple[Document, list[Chunk], list[dict[str, Any]]]], states: dict[str, FileState]) -> None:
        if not self.store.exists():
            if self.dim is None:  # nothing to store yet and no table: nothing to do
                return
            self.store.create(self.dim, {"embedding": {**self.info, "dimensions": self.dim}, "chunking": self.settings.as_dict()})
        sources = [doc.source for doc, _, _ in group]
        known = [s for s in sources if s in states]
        old_ids = self.store.latest().ids_of(known) if known else set()
        new_ids = {c.id for _, cs, _ in group for c in cs}
        checkpoint("commit")
        self.store.replace_sources([r for _, _, rs in group for r in rs], sources, self.dim or 0)
        passed("commit")
        self.commits += 1
        self.report.files_indexed += len(group)
        self.report.chunks_added += len(new_ids - old_ids)
        self.report.chunks_removed += len(old_ids - new_ids)
