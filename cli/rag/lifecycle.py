"""Which generation an index run writes, what each generation records, and switching between them.

- :func:`plan_run` decides, under the writer lock, where a ``rag index`` run
  writes: in place into the live generation (the usual incremental run), or a
  shadow generation beside it when asked to rebuild or when the profile's
  embedding model or chunking changed since the live one was built. A shadow
  is switched live only once it is complete (:meth:`Target.complete`).
- Each generation records the embedding settings it was built with, so the
  model that reads it is its own (:func:`reading_profile`): queries keep
  answering from the live generation while the profile already names the next
  model, and a rollback needs no profile edit and no re-embedding.
- :func:`rollback` switches to a retained generation in one step;
  :func:`clean_up` removes generations beyond ``lifecycle.keep_generations``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rag.chunking import ChunkSettings
from rag.errors import StoreError, UsageError
from rag.faults import checkpoint
from rag.profile import Profile
from rag.store import Store, newer_version, open_store
from rag.store.generations import SWITCHABLE, Registry, disk_bytes

log = logging.getLogger("rag.lifecycle")
Warn = Callable[[str], None]


def signature(profile: Profile) -> dict[str, Any]:
    """What, when the profile changes it, makes the index another index: the embedding model and the chunking."""
    c = profile.chunking
    return {
        "model": profile.embedding.model,
        "dimensions": profile.embedding.dimensions,
        "chunking": ChunkSettings(c.max_tokens, c.overlap, c.encoding).as_dict(),
    }


def embedding_config(profile: Profile) -> dict[str, Any]:
    """The embedding settings a generation is built with, enough to embed queries for it again."""
    e = profile.embedding
    return {"model": e.model, "dimensions": e.dimensions, "query_prefix": e.query_prefix, "document_prefix": e.document_prefix}


def with_model(profile: Profile, model: str) -> Profile:
    """The profile embedding with ``model`` instead (its prefixes and fallbacks were the other model's)."""
    from rag.profile import provider_config, split_model

    provider_config(profile, split_model(model)[0])
    embedding = dataclasses.replace(profile.embedding, model=model, dimensions=None, query_prefix="", document_prefix="", fallbacks=[])
    return dataclasses.replace(profile, embedding=embedding)


def as_built(profile: Profile, record: dict[str, Any]) -> Profile:
    """The profile with a generation's own embedding settings and chunking: what writes to it, or indexes like it."""
    config, chunking = record.get("config") or {}, record.get("chunking") or {}
    if config.get("model") and config["model"] != profile.embedding.model:
        profile = with_model(profile, config["model"])
        embedding = dataclasses.replace(
            profile.embedding,
            dimensions=config.get("dimensions"),
            query_prefix=config.get("query_prefix") or "",
            document_prefix=config.get("document_prefix") or "",
        )
        profile = dataclasses.replace(profile, embedding=embedding)
    if chunking.get("max_tokens"):
        c = dataclasses.replace(
            profile.chunking,
            max_tokens=int(chunking["max_tokens"]),
            overlap=int(chunking.get("overlap", 0)),
            encoding=str(chunking.get("encoding") or profile.chunking.encoding),
        )
        profile = dataclasses.replace(profile, chunking=c)
    return profile


def covers(roots: list[str], store: Store) -> bool:
    """Whether ``roots`` hold every file the generation indexed (a new generation built from them loses nothing)."""
    return all(any(src == r or src.startswith(r + "/") for r in roots) for src in store.published().file_states())


def describe_change(wanted: dict[str, Any], built: dict[str, Any]) -> str | None:
    """How the profile differs from what built a generation, or None. Keys a generation did not record are not compared."""
    parts = []
    if built.get("model") and wanted["model"] != built["model"]:
        parts.append(f"embedding model changed ({built['model']} -> {wanted['model']})")
    elif "dimensions" in built and wanted["dimensions"] != built["dimensions"]:
        parts.append(f"embedding dimensions changed ({built['dimensions']} -> {wanted['dimensions']})")
    if built.get("chunking") and wanted["chunking"] != built["chunking"]:
        old, new = built["chunking"], wanted["chunking"]
        tokens = f"{old.get('max_tokens')}/{old.get('overlap')} -> {new.get('max_tokens')}/{new.get('overlap')} tokens"
        parts.append(f"chunking settings changed ({tokens})")
    return " and ".join(parts) or None


def model_version_now(profile: Profile, built: dict[str, Any]) -> str | None:
    """The version the profile's model has now when an index recorded ``built`` (its embedding) from another version
    of the same model, else None. Makes the embedder (no model is loaded)."""
    from rag.providers import make_embedder

    embedder = make_embedder(profile)
    return newer_version(built, {"model": embedder.ref, "version": embedder.version})


def record_of(registry: Registry, store: Store) -> dict[str, Any] | None:
    """What a generation recorded; an index from before generations is read from its meta."""
    entry = registry.generations.get(store.generation)
    if entry and entry.get("config"):
        return entry
    if not store.exists():
        return entry
    meta = store.meta()
    emb = meta.get("embedding") or {}
    config = {"model": emb.get("model"), "query_prefix": emb.get("query_prefix", ""), "document_prefix": emb.get("document_prefix", "")}
    legacy = {"model": emb.get("model"), "chunking": meta.get("chunking")}
    return {
        **(entry or {}),
        "id": store.generation,
        "config": config,
        "built_from": legacy,
        "embedding": emb,
        "chunking": meta.get("chunking"),
    }


def reading_profile(profile: Profile, store: Store) -> Profile:
    """The profile to read ``store`` with: its embedding settings are the ones the generation was built with."""
    record = record_of(Registry.load(store.location, store.table_name), store)
    config = (record or {}).get("config") or {}
    if not config.get("model") or config["model"] == profile.embedding.model:
        return profile
    embedding = dataclasses.replace(
        profile.embedding,
        model=config["model"],
        dimensions=config.get("dimensions"),
        query_prefix=config.get("query_prefix") or "",
        document_prefix=config.get("document_prefix") or "",
        fallbacks=[],
    )
    built_from = (record or {}).get("built_from") or {}
    if built_from.get("model") not in (None, config["model"]) and built_from.get("model") == profile.embedding.model:
        return dataclasses.replace(profile, embedding=embedding)  # chosen with rag reindex --model: nothing to say
    log.warning(
        "the profile names %s but the live index (generation %s) was built with %s: queries use %s until "
        "rag index or rag reindex builds a generation with %s",
        profile.embedding.model,
        store.generation,
        config["model"],
        config["model"],
        profile.embedding.model,
    )
    return dataclasses.replace(profile, embedding=embedding)


# --------------------------------------------------------------------------- where an index run writes


@dataclass
class BuildRequest:
    """A shadow build asked for by ``rag reindex``: built with ``profile``, recorded as built from ``built_from``."""

    profile: Profile
    built_from: dict[str, Any]
    reason: str
    switch: bool = False


@dataclass
class Target:
    """Where one index run writes, and what it does when the run is complete."""

    profile: Profile
    store: Store
    registry: Registry
    shadow: bool
    reason: str
    built_from: dict[str, Any]
    switch: bool
    keep: int
    notice: str | None = None  # why a shadow is built, said once the run is sure to start
    discard: list[int] = dataclasses.field(default_factory=list)  # unfinished builds with other settings
    start: bool = False  # a new shadow: record it as building before the first write

    @property
    def generation(self) -> int:
        return self.store.generation

    def begin(self, warn: Warn) -> None:
        """The run starts (its model is made): say why a shadow is built, and record it as building."""
        if self.notice:
            warn(self.notice)
        for generation in self.discard:
            warn(f"discarding generation {generation}, an unfinished build with other settings")
            self.registry.discard(generation)
        if self.start:
            checkpoint("generation")
            entry = self.registry.entry(self.generation)
            entry.update(state="building", reason=self.reason, settings=signature(self.profile), built_from=self.built_from)
            entry["started"] = time.time()
            self.registry.save()

    def complete(self, report: Any, roots: list[str] | None, warn: Warn) -> dict[str, Any]:
        """Record the run in the generation; a finished shadow is switched live when asked. Returns what happened."""
        reg, store = self.registry, self.store
        if not store.exists():
            return {"generation": self.generation, "shadow": self.shadow}
        recorded = "config" in reg.generations.get(self.generation, {})
        entry = reg.entry(self.generation)
        meta = store.meta()
        entry.update(
            reason=entry.get("reason") or self.reason,
            built_from=self.built_from,
            config=embedding_config(self.profile),
            embedding=meta.get("embedding") or {},
            chunking=meta.get("chunking") or {},
            chunks=report.chunks_total,
            updated=time.time(),
        )
        if roots:
            entry["roots"] = sorted(set(entry.get("roots") or []) | set(roots)) if not self.shadow else sorted(set(roots))
        out: dict[str, Any] = {"generation": self.generation, "shadow": self.shadow, "reason": self.reason}
        if self.shadow:
            entry["seconds"] = round(float(entry.get("seconds") or 0.0) + report.seconds, 3)
            entry["embedded"] = int(entry.get("embedded") or 0) + report.embedded_texts
            entry["files"] = len(store.published().file_states()) if store.exists() else 0
            entry["failures"] = report.files_skipped
            entry["built"] = time.time()
            entry["state"] = "built"
            out["live_before"] = reg.live
            if self.switch:
                reg.switch(self.generation, self.reason)
                out["switched"] = True
                out["removed"] = clean_up(reg, self.keep, warn)
            else:
                reg.save()
                out["removed"] = clean_up(reg, self.keep, warn)  # an older shadow gives way to this one
        else:
            if reg.live is None:
                entry["seconds"] = round(report.seconds, 3)  # the first build of the index
                reg.switch(self.generation, self.reason)
            elif report.committed or not recorded:
                reg.save()
        return out


def plan_run(
    profile: Profile, table: str | None, *, rebuild: bool, request: BuildRequest | None, warn: Warn, roots: list[str] | None = None
) -> Target:
    """Where this run writes (call it holding the writer lock). See the module docstring.

    A profile change builds a new generation only from a run over every folder the live one holds (``roots``
    cover its files); ``rag index docs/one.md`` is refused with the command that does.
    """
    live_store = open_store(profile, table)
    reg = Registry.load(live_store.location, live_store.table_name)
    keep = profile.lifecycle.keep_generations
    record = record_of(reg, live_store) if live_store.exists() else None
    if record is not None and reg.live is None:  # an index from before generations: its table is generation 1, live
        reg.live = live_store.generation
        entry = reg.entry(live_store.generation)
        entry.update({k: v for k, v in record.items() if k not in entry}, state="live")
        entry.setdefault("reason", "index")
    wanted = signature(profile)
    if request is not None:
        return _shadow(reg, live_store, request.profile, request.reason, request.built_from, request.switch, keep)
    if record is None:
        first = "first index" if not reg.generations else "index"
        return Target(profile, live_store, reg, False, first, wanted, True, keep)
    change = describe_change(wanted, record.get("built_from") or {})
    built = record.get("embedding") or {}
    renewed = None if change else model_version_now(profile, built)
    if renewed:
        change = f"embedding model version changed ({built['version']} -> {renewed})"
    if rebuild:  # as the live generation was built (its model, when rag reindex --model chose it), or as the profile now says
        built = profile if change else reading_profile(profile, live_store)
        return _shadow(reg, live_store, built, "rebuild", wanted, True, keep)
    if change and roots is not None and covers(roots, live_store):
        target = _shadow(reg, live_store, profile, change, wanted, True, keep)
        # the old version of a model is gone: nothing can embed queries for the live generation
        meanwhile = "queries wait until it is complete" if renewed else "queries use the live one until it is complete"
        target.notice = (
            f"{change} since generation {live_store.generation} was built: building generation {target.generation} beside it; {meanwhile}"
        )
        return target
    if change and roots is not None:
        from rag.providers import make_embedder

        make_embedder(profile)  # a profile whose model cannot be made says so first
        folders = ", ".join(record.get("roots") or []) or "the folders it was built from"
        raise StoreError(
            f"{change} since generation {live_store.generation} was built, and a new generation must hold every file the "
            f"live one holds; run rag index on all of {folders}, or rag reindex"
        )
    # Documents added through the API and forgotten files update the live generation as it was built.
    return Target(as_built(profile, record), live_store, reg, False, "index", record.get("built_from") or wanted, True, keep)


def _shadow(reg: Registry, live: Store, profile: Profile, reason: str, built_from: dict[str, Any], switch: bool, keep: int) -> Target:
    """A generation beside the live one: the pending one when it was started with the same settings (a crashed build
    resumes), else a new one."""
    pending = reg.pending()
    store = open_store(profile, live.table_name, int(pending["id"]) if pending else 0)
    if pending is not None and pending.get("settings") == signature(profile):
        return Target(profile, store, reg, True, reason, built_from, switch, keep)
    stale = [int(g["id"]) for g in reg.generations.values() if g.get("state") == "building"]
    store = open_store(profile, live.table_name, reg.next_id())
    return Target(profile, store, reg, True, reason, built_from, switch, keep, discard=stale, start=True)


# --------------------------------------------------------------------------- switching and retention


def clean_up(reg: Registry, keep: int, warn: Warn) -> list[int]:
    """Remove generations beyond retention; a failure warns (the data that is live is never at stake)."""
    removed = []
    for generation in reg.doomed(keep):
        try:
            reg.remove(generation)
            removed.append(generation)
        except (OSError, StoreError) as exc:
            warn(f"could not remove generation {generation} ({exc}); the next rebuild or rollback tries again")
    return removed


def switch_to(profile: Profile, generation: int, why: str, *, warn: Warn, expect: tuple[str, ...] = SWITCHABLE) -> dict[str, Any]:
    """Make a retained, complete generation live (under the writer lock)."""
    from rag.lock import writer_lock

    live = open_store(profile)
    if not live.exists():  # before the lock: taking it would create the store's folder, which later runs then find
        raise StoreError(f"no index at {live.where} to switch; run: rag index PATH")
    with writer_lock(live.lock_path, profile.store.lock_timeout, warn):
        reg = Registry.load(live.location, live.table_name)
        entry = reg.generations.get(generation)
        target = open_store(profile, live.table_name, generation)
        if entry is None or entry.get("state") not in expect or not target.exists():
            state = (entry or {}).get("state", "unknown")
            raise StoreError(f"generation {generation} cannot be made live (it is {state}); rag status --history lists the ones kept")
        target.published()  # opens the table: a damaged one is refused before it is live
        previous = reg.switch(generation, why)
        removed = clean_up(reg, profile.lifecycle.keep_generations, warn)
    return {"from": previous, "to": generation, "why": why, "removed": removed, "generation": entry}


def annotate(profile: Profile, evals: dict[int, dict[str, Any]], *, reject: int | None = None) -> None:
    """Record eval results on generations, and mark a shadow whose gates failed as rejected (under the writer lock)."""
    from rag.lock import writer_lock

    live = open_store(profile)
    with writer_lock(live.lock_path, profile.store.lock_timeout):
        reg = Registry.load(live.location, live.table_name)
        for generation, result in evals.items():
            reg.entry(generation)["eval"] = result
        if reject is not None and reg.generations.get(reject, {}).get("state") == "built":
            reg.generations[reject]["state"] = "rejected"
        reg.save()


def rollback(profile: Profile, generation: int | None = None, *, warn: Warn) -> dict[str, Any]:
    """Switch back to ``generation``, by default the one that was live before the live one. No re-embedding."""
    live = open_store(profile)
    if not live.exists():
        raise StoreError(f"no index at {live.where} to roll back; run: rag index PATH")
    reg = Registry.load(live.location, live.table_name)
    if generation is None:
        generation = previous_generation(reg)
        if generation is None:
            raise StoreError(f"no earlier generation is kept at {live.where}; rag status --history lists the generations")
    if generation == reg.live:
        raise UsageError(f"generation {generation} is already live")
    return switch_to(profile, generation, "rollback", warn=warn)


def previous_generation(reg: Registry) -> int | None:
    """The most recently retired generation still on disk."""
    retired = [g for g in reg.generations.values() if g.get("state") == "retired"]
    return int(max(retired, key=lambda g: g.get("retired") or 0.0)["id"]) if retired else None


def history(profile: Profile) -> dict[str, Any]:
    """Every generation of the table, newest first, with what it was built with and how it measured."""
    live = open_store(profile)
    reg = Registry.load(live.location, live.table_name)
    if not reg.exists and not live.exists():
        raise StoreError(f"no index at {live.where} (table '{live.table_name}'); run: rag index PATH")
    rows = [dict(g) for g in reg.generations.values()]
    if not reg.exists and live.exists():
        rows = [{**(record_of(reg, live) or {}), "state": "live"}]
    for row in rows:
        if row.get("state") in ("live", "retired", "built", "rejected", "building"):
            row["disk_bytes"] = disk_bytes(live.location, live.table_name, int(row["id"]))
    rows.sort(key=lambda g: -int(g["id"]))
    return {"store": live.where, "table": live.table_name, "live": reg.live or (1 if live.exists() else None), "generations": rows}
