"""``rag index --ray``: loading, chunking and embedding spread over a Ray cluster with Ray Data; one atomic commit.

The driver (this process) walks the paths and decides what changed, as a local run does. Then:

1. Ray Data reads, parses and chunks the changed files (``flat_map``, one file per row) on the cluster;
2. the driver looks every chunk's text up in the embedding cache (a local file: see :mod:`rag.store.location`);
3. only the misses go to Ray Data again, to actors that each load the embedding model once (``map_batches``
   with a class); their vectors stream back to the driver, which caches them;
4. all rows of the run are handed to one Lance ``merge_insert`` as a stream of batches: Lance writes them as
   fragments and commits once. A job that fails before that commit leaves the index exactly as it was; the
   vectors it computed are in the cache, so the re-run embeds nothing twice.

Then the run is published and maintained as a local run is. Files left out (by the walk, unreadable on a
worker, or with no text) are reported and remembered in the meta's ``unindexed`` as a local run does, so an
unchanged one is not read again; an unreadable file keeps the chunks it had. What a local run does and this one
does not: progress is reported per stage, not per file. Ray is an optional extra: ``pip install 'rag[ray]'``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import SourceError, UsageError
from rag.profile import Profile

INSTALL = "Ray is not installed; install the extra with: pip install 'rag[ray]' (or pip install 'ray[data]')"


class RayMissingError(UsageError):
    """--ray or index.engine: ray without Ray installed."""


def require_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise RayMissingError(INSTALL) from exc
    return ray


# --------------------------------------------------------------------------- what runs on the workers


def chunk_file(item: dict[str, Any], profile: Profile) -> dict[str, Any]:
    """One changed file: its chunk rows without vectors (pickled: one row per file keeps Ray Data's schema fixed),
    or why it gave none (``kind`` unreadable or empty, as the local indexer records them)."""
    import pickle

    from rag import loaders
    from rag.chunking import chunk_document, context_text, sha256
    from rag.indexer import chunk_settings
    from rag.store import schema as rows

    path = Path(item["path"])
    try:
        doc = loaders.load(path, path.read_bytes())
    except (OSError, loaders.LoadError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return {"path": item["path"], "kind": "unreadable", "reason": reason, "rows": pickle.dumps([])}
    doc.mtime = item["mtime"]
    out = []
    prefix = profile.embedding.document_prefix
    for chunk in chunk_document(doc, chunk_settings(profile)):
        body = context_text(chunk.title, chunk.heading, chunk.text)
        row = rows.row(chunk, body, np.zeros(0, dtype=np.float32), doc)
        del row["vector"]
        out.append({**row, "embed_sha": sha256(prefix + body), "embed_text": prefix + body})
    kind = "" if doc.sections else "empty"
    return {"path": item["path"], "kind": kind, "reason": "no text" if kind else "", "rows": pickle.dumps(out)}


class EmbedActor:
    """A Ray Data actor: loads the embedding model once, then embeds every batch it is given."""

    def __init__(self, profile: Profile) -> None:
        from rag.providers import make_embedder

        self.embedder = make_embedder(profile)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        result = self.embedder.embed_batch(list(batch["embed_text"]))
        return {"embed_sha": batch["embed_sha"], "vector": np.asarray(result.vectors, dtype=np.float32)}


def _bound(profile: Profile) -> type[EmbedActor]:
    """:class:`EmbedActor` with the profile in its closure: shipped with the class, not as constructor arguments in
    the object store (which Ray warns cannot survive an actor restart)."""

    class Embed(EmbedActor):
        def __init__(self) -> None:
            super().__init__(profile)

    return Embed


# --------------------------------------------------------------------------- the driver


def index_paths_ray(
    profile: Profile, paths: list[Path], *, address: str | None = None, rebuild: bool = False, workers: int | None = None
) -> Any:
    """Index ``paths`` on a Ray cluster (``address``; None starts or joins a local one). Returns an IndexReport."""
    ray = require_ray()
    from rag.calibrate import update_calibration
    from rag.discover import Found, walk
    from rag.embed import cache_key, embedding_record
    from rag.embed_cache import open_cache
    from rag.indexer import IndexReport, chunk_settings
    from rag.lock import writer_lock
    from rag.providers import make_embedder
    from rag.store import open_store

    started = time.perf_counter()
    report = IndexReport()
    for path in paths:
        if not path.exists():
            raise SourceError(f"path not found: {path}; check the path you passed to rag index")
    found: list[Any] = []
    skips: list[Any] = []
    for item in walk(paths, profile.sources):
        (found if isinstance(item, Found) else skips).append(item)
    if not found and not skips:
        raise SourceError(f"nothing to index under {', '.join(map(str, paths))}")
    embedder = make_embedder(profile)
    info = embedding_record(embedder, profile)
    settings = chunk_settings(profile)
    store = open_store(profile)
    _start(ray, address)
    with writer_lock(store.lock_path, profile.store.lock_timeout):
        if rebuild:
            store.drop()
        if store.exists():
            store.check_embedding(info)
        meta = store.meta()
        force = bool(meta) and meta.get("chunking") != settings.as_dict()
        states = store.latest().file_states() if store.exists() else {}
        roots = [str(p.resolve()).rstrip("/") for p in paths]
        seen = {str(f.path) for f in found} | {str(s.path) for s in skips}
        gone = [s for s in states if any(s == r or s.startswith(r + "/") for r in roots) and s not in seen]
        plan = _Plan(report, states, dict(meta.get("unindexed") or {}), roots, seen)
        changed = plan.changed(found, skips, force)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        n = max(1, min(workers or cpus, cpus))
        chunks = plan.results(_chunk(ray, profile, changed, n))
        dim = embedder.dimensions or (meta.get("embedding") or {}).get("dimensions")
        cache = open_cache(store.root / "embed-cache.sqlite", cache_key(embedder, profile), dim, lambda _m: None)
        try:
            vectors = cache.get_many([c["embed_sha"] for c in chunks])
            report.cache_hits = sum(1 for c in chunks if c["embed_sha"] in vectors)
            misses = {c["embed_sha"]: c["embed_text"] for c in chunks if c["embed_sha"] not in vectors}
            for sha, vector in _embed(ray, profile, misses, n):
                cache.put_many({sha: vector})
                vectors[sha] = vector
            report.embedded_texts, report.embedding_calls = len(misses), -(-len(misses) // profile.embedding.batch_size)
        finally:
            cache.close()
        dim = dim or (len(next(iter(vectors.values()))) if vectors else None)
        replaced = [str(f.path) for f in changed if str(f.path) in states and str(f.path) not in plan.kept]
        old_ids = store.latest().ids_of(replaced + gone) if states else set()
        if dim and (chunks or gone or replaced):
            store.create(dim, {"embedding": {**info, "dimensions": dim}, "chunking": settings.as_dict()})
            _commit(store, chunks, vectors, [str(f.path) for f in changed if str(f.path) not in plan.kept] + gone, dim)
            report.committed = True
        new_ids = {c["id"] for c in chunks}
        report.files_indexed, report.files_deleted = len({c["source"] for c in chunks}), len(gone)
        report.chunks_added, report.chunks_removed = len(new_ids - old_ids), len(old_ids - new_ids)
        _finish(store, profile, settings, info, dim, report, plan.unindexed)
        if store.exists():
            update_calibration(store, embedder, changed=report.chunks_added + report.chunks_removed, warn=lambda _m: None)
        report.embedding = {**info, "dimensions": dim}
    report.seconds = time.perf_counter() - started
    return report


def _start(ray: Any, address: str | None) -> None:
    """Join ``address`` (or start a local cluster), with Ray's own chatter off: our users act on our messages."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", module=r"ray(\.|$)")
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if not ray.is_initialized():
        cpus = os.environ.get("RAY_NUM_CPUS")  # a local cluster's size (tests, benches); a real cluster has its own
        local = {"num_cpus": int(cpus)} if cpus and not address else {}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR, **local)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # after the loggers are quiet: Ray Data warns about this very setting
    context.print_on_execution_start = False


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Ray's C++ core worker logs to file descriptor 2 (no Python logger reaches it); while a Ray Data job runs,
    that goes to Ray's session logs (/tmp/ray/session_latest/logs) instead of the user's terminal. Exceptions
    still surface: they are raised after the descriptor is back."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _chunk(ray: Any, profile: Profile, changed: list[Any], workers: int) -> list[dict[str, Any]]:
    """:func:`chunk_file` over the changed files on the cluster: one result per file."""
    if not changed:
        return []
    items = [{"path": str(f.path), "mtime": f.mtime} for f in changed]
    ds = ray.data.from_items(items, override_num_blocks=min(len(items), workers * 4))
    with _quiet_stderr():
        return list(ds.map(chunk_file, fn_kwargs={"profile": profile}, compute=ray.data.TaskPoolStrategy(size=workers)).take_all())


class _Plan:
    """Which files this run reads, and which it leaves out, as the local indexer decides (rag.indexer): files the
    walk skipped, files remembered in the meta's ``unindexed`` as giving no chunks and unchanged since (not read
    again), and, once read on the cluster, unreadable files (their old chunks kept) and files with no text."""

    def __init__(self, report: Any, states: dict[str, Any], known: dict[str, Any], roots: list[str], seen: set[str]) -> None:
        self.report, self.states, self.known = report, states, known

        def under(path: str) -> bool:
            return any(path == r or path.startswith(r + "/") for r in roots)

        self.unindexed = {p: v for p, v in known.items() if not under(p) or p in seen}
        self.kept: set[str] = set()  # unreadable this run: the chunks of its last readable version stay
        self.mtimes: dict[str, tuple[float, int]] = {}

    def changed(self, found: list[Any], skips: list[Any], force: bool) -> list[Any]:
        from rag.events import Silent

        changed, remembered = [], 0
        for f in found:
            path, state = str(f.path), self.states.get(str(f.path))
            if not force and state is not None and (state.mtime, state.size) == (f.mtime, f.size):
                continue
            note = self.known.get(path)
            if state is None and note and not force and (note["mtime"], note["size"]) == (f.mtime, f.size):
                if note["kind"] == "empty":  # gave no chunks last time and is unchanged: not read again
                    self.report.files_empty += 1
                else:
                    self.report.skip(path, note["reason"], note["kind"], self.known, Silent())
                remembered += 1
                continue
            changed.append(f)
            self.mtimes[path] = (f.mtime, f.size)
        for skip in skips:
            path = str(skip.path)
            kept = self.states.get(path)
            note = f"; kept its {kept.chunks} chunks from the last run" if kept else ""
            self.report.skip(path, skip.reason + note, skip.kind, self.known, Silent())
            self.unindexed[path] = {"mtime": 0.0, "size": -1, "reason": skip.reason, "kind": skip.kind}
        self.report.files_seen = len(found) + len(skips)
        self.report.files_unchanged = len(found) - len(changed) - remembered
        return changed

    def results(self, files: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The chunk rows of the files read on the cluster; the files that gave none are reported and remembered."""
        import pickle

        from rag.events import Silent

        rows: list[dict[str, Any]] = []
        for result in files:
            path, kind, reason = result["path"], result["kind"], result["reason"]
            mtime, size = self.mtimes[path]
            self.unindexed.pop(path, None)
            if kind == "unreadable":
                kept = self.states.get(path)
                note = f"; kept its {kept.chunks} chunks from the last run" if kept else ""
                self.report.skip(path, reason + note, kind, self.known, Silent())
                if kept:
                    self.kept.add(path)
                else:
                    self.unindexed[path] = {"mtime": mtime, "size": size, "reason": reason, "kind": kind}
            elif kind == "empty":
                self.unindexed[path] = {"mtime": mtime, "size": size, "reason": reason, "kind": kind}
                self.report.files_empty += 1
            rows.extend(pickle.loads(result["rows"]))
        return sorted(rows, key=lambda r: (r["source"], r["ordinal"]))


def _embed(ray: Any, profile: Profile, misses: dict[str, str], workers: int) -> Iterator[tuple[str, np.ndarray]]:
    if not misses:
        return
    items = [{"embed_sha": s, "embed_text": t} for s, t in sorted(misses.items(), key=lambda kv: len(kv[1]))]  # like-sized batches
    ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items) // profile.embedding.batch_size + 1, workers * 4)))
    out = ds.map_batches(
        _bound(profile),
        batch_size=profile.embedding.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=1,
    )
    with _quiet_stderr():  # streamed: each batch is cached as it arrives, so a failed job loses only what is in flight
        for batch in out.iter_batches(batch_format="numpy", batch_size=None):
            for sha, vector in zip(batch["embed_sha"], batch["vector"], strict=True):
                yield str(sha), np.asarray(vector, dtype=np.float32)


def _commit(store: Any, chunks: list[dict[str, Any]], vectors: dict[str, np.ndarray], sources: list[str], dim: int) -> None:
    """Every row of the run in one ``merge_insert``: Lance writes the fragments as the batches stream in, then commits once."""
    import pyarrow as pa

    from rag.store.schema import sql_in

    dataset = store.latest().dataset
    schema = dataset.schema

    def batches() -> Iterator[pa.RecordBatch]:
        for start in range(0, len(chunks), 2048):
            part = chunks[start : start + 2048]
            rows = [{k: v for k, v in c.items() if not k.startswith("embed_")} | {"vector": vectors[c["embed_sha"]].tolist()} for c in part]
            yield pa.RecordBatch.from_pylist(rows, schema=schema)

    reader = pa.RecordBatchReader.from_batches(schema, batches())
    builder = dataset.merge_insert("id").when_matched_update_all().when_not_matched_insert_all()
    if sources:
        builder = builder.when_not_matched_by_source_delete(sql_in("source", sources))
    builder.execute(reader)


def _finish(
    store: Any, profile: Profile, settings: Any, info: dict[str, Any], dim: int | None, report: Any, unindexed: dict[str, Any]
) -> None:
    """Publish, maintain, and record the run (with the files that gave no chunks), as a local run does."""
    from rag.store.maintenance import Upkeep, maintain, needed, record

    if not store.exists():
        return
    meta = store.meta()
    runs = list(meta.get("runs") or [])
    steps = needed(store, {int(r["version"]) for r in runs[-profile.store.keep_runs :]})
    version = store.publish()
    upkeep = maintain(store, Upkeep(), lambda _m: None, [s for s in steps if s != "cleanup"])
    version = store.publish()
    if report.committed:
        runs.append(
            {
                "version": version,
                "at": time.time(),
                "files_indexed": report.files_indexed,
                "files_deleted": report.files_deleted,
                "engine": "ray",
            }
        )
    meta["runs"] = runs = runs[-profile.store.keep_runs :]
    maintain(store, upkeep, lambda _m: None, ["cleanup"], keep={int(r["version"]) for r in runs})
    record(meta, upkeep)
    meta["chunking"] = settings.as_dict()
    meta["embedding"] = {**(meta.get("embedding") or {}), **info, "dimensions": dim}
    meta["unindexed"] = unindexed
    store.write_meta(meta)
    report.maintenance = upkeep.as_dict()
    report.chunks_total = store.published().count()
    report.table_version = store.latest().version
