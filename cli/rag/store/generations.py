"""Generations of a table: which one is live, the ones built beside it, and the one switch between them.

A rebuild (``rag index --rebuild``, a new embedding model or chunking, ``rag
reindex``) never touches the table queries read. It builds a new *generation*,
a table of its own beside the live one (``chunks.g2.lance`` with
``chunks.g2.meta.json``; generation 1 is plain ``chunks``), and when that is
complete, one atomic write of ``<table>.generations.json`` makes it live (an
``os.replace`` in a folder, one PUT in an object store).
A reader opens whatever generation the file names at that moment, so it sees
the old table or the new one, never none; a crash anywhere before the replace
leaves the old one live, a crash after it leaves the new one live.

The file also keeps the history ``rag status --history`` prints and the
previous generations ``rag rollback`` switches back to. An index built before
generations existed has no file: it is generation 1, live.

States: ``building`` (being written, or left by a crash: the next build with
the same settings resumes it), ``built`` (complete, not live: a dry run, or
waiting for its gates), ``live``, ``retired`` (was live; a rollback target),
``rejected`` (a gate failed), ``removing`` / ``removed`` (cleaned up; the
record stays for the history), ``abandoned`` (an unfinished build replaced by
one with other settings).

Writes happen under the table's writer lock; reads need no lock. In an object
store that lock guards this machine's writers only: two machines rebuilding one
table at the same moment each write the file whole, and the last one wins.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import StoreError
from rag.faults import checkpoint, passed
from rag.store.location import Location

FORMAT = 1
ON_DISK = ("building", "built", "live", "retired", "rejected")  # states whose table is (meant to be) on disk
SWITCHABLE = ("built", "retired", "rejected")  # complete tables a switch may make live


def physical_name(table: str, generation: int) -> str:
    """The on-disk name of a generation's table: generation 1 keeps the plain name, so older indexes are generation 1."""
    return table if generation == 1 else f"{table}.g{generation}"


def registry_name(table: str) -> str:
    return f"{table}.generations.json"


def live_generation(location: Location, table: str) -> int:
    """The generation queries read now (1 when the table has no registry)."""
    data = _read(location, registry_name(table))
    return int(data.get("live") or 1) if data else 1


def _read(location: Location, name: str) -> dict[str, Any]:
    try:
        data = location.read_json(name)
    except (OSError, ValueError) as exc:
        raise StoreError(
            f"the generation file {location.join(name)} is unreadable ({exc}); restore it or delete it to use generation 1"
        ) from exc
    return data if isinstance(data, dict) else {}


@dataclass
class Registry:
    """The generations of one table, as ``<table>.generations.json`` holds them."""

    location: Location
    table: str
    live: int | None = None
    generations: dict[int, dict[str, Any]] = field(default_factory=dict)
    switches: list[dict[str, Any]] = field(default_factory=list)
    exists: bool = False

    @classmethod
    def load(cls, location: Location, table: str) -> Registry:
        data = _read(location, registry_name(table))
        if not data:
            return cls(location, table)
        gens = {int(k): dict(v) for k, v in (data.get("generations") or {}).items()}
        return cls(location, table, data.get("live"), gens, list(data.get("switches") or []), exists=True)

    def entry(self, generation: int) -> dict[str, Any]:
        if generation not in self.generations:
            self.generations[generation] = {"id": generation, "table": physical_name(self.table, generation), "created": time.time()}
        return self.generations[generation]

    def next_id(self) -> int:
        names = self.location.names(f"{self.table}.g")
        on_disk = [int(n.rsplit(".g", 1)[1].split(".")[0]) for n in names if n.endswith(".lance") and _numbered(n)]
        return max([1, *self.generations, *on_disk]) + 1

    def pending(self) -> dict[str, Any] | None:
        """The newest generation being built (a crashed or running build), if any."""
        building = [g for g in self.generations.values() if g.get("state") == "building"]
        return max(building, key=lambda g: int(g["id"])) if building else None

    def save(self) -> None:
        """Write the file whole and rename it into place (one PUT remotely): a reader sees the old file or the new one."""
        data = {
            "format": FORMAT,
            "table": self.table,
            "live": self.live,
            "generations": {str(k): v for k, v in sorted(self.generations.items())},
            "switches": self.switches[-100:],
        }
        text = json.dumps(data, indent=2, sort_keys=True)
        if self.location.remote:
            self.location.write_text(registry_name(self.table), text)
        else:
            _write_durably(self.location.local / registry_name(self.table), text)
        self.exists = True

    # ------------------------------------------------------------------ the switch (hold the writer lock)

    def switch(self, generation: int, why: str) -> int | None:
        """Make ``generation`` live in one atomic write; the one it replaces is retired. Returns that one."""
        previous = self.live
        now = time.time()
        entry = self.entry(generation)
        if previous is not None and previous != generation and previous in self.generations:
            self.generations[previous]["state"] = "retired"
            self.generations[previous]["retired"] = now
        entry["state"] = "live"
        entry.setdefault("published", now)
        entry["live_since"] = now
        self.live = generation
        self.switches.append({"at": now, "from": previous, "to": generation, "why": why})
        checkpoint("switch")
        self.save()
        passed("switch")
        return previous

    # ------------------------------------------------------------------ retention (hold the writer lock)

    def doomed(self, keep: int) -> list[int]:
        """Generations to remove: beyond the ``keep`` most recently live (the live one counts), shadows that are not
        the newest one, and removals a crash interrupted."""
        published = sorted(
            (g for g in self.generations.values() if g.get("state") in ("live", "retired")),
            key=lambda g: (g.get("state") == "live", g.get("retired") or g.get("live_since") or 0.0),
            reverse=True,
        )
        out = [int(g["id"]) for g in published[keep:]]
        shadows = sorted((g for g in self.generations.values() if g.get("state") in ("built", "rejected")), key=lambda g: -int(g["id"]))
        out += [int(g["id"]) for g in shadows[1:]]
        out += [int(g["id"]) for g in self.generations.values() if g.get("state") == "removing"]
        return sorted(set(out) - {self.live})

    def remove(self, generation: int) -> None:
        """Delete a generation's table: first marked (a crash mid-delete is finished by the next cleanup), then gone."""
        entry = self.entry(generation)
        if entry.get("state") != "removing":
            entry["state_before_removal"] = entry.get("state")
            entry["state"] = "removing"
            self.save()
        checkpoint("retire")
        name = physical_name(self.table, generation)
        self.location.remove(f"{name}.lance")
        self.location.remove(f"{name}.meta.json")
        passed("retire")
        entry["state"] = "removed"
        entry["removed"] = time.time()
        self.save()

    def discard(self, generation: int) -> None:
        """Remove a shadow that will not be resumed (a build with other settings replaces it)."""
        self.remove(generation)
        self.generations[generation]["state"] = "abandoned"
        self.save()


def disk_bytes(location: Location, table: str, generation: int) -> int:
    """Bytes a generation's table takes in its store (its Lance folder and meta)."""
    name = physical_name(table, generation)
    return location.size(f"{name}.lance") + location.size(f"{name}.meta.json")


def _write_durably(path: Path, text: str) -> None:
    """Write a local file whole, then rename it into place and sync the folder: it survives a power cut."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _numbered(name: str) -> bool:
    tail = name.rsplit(".g", 1)[-1].split(".")[0]
    return tail.isdigit()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
