"""Is the index still what is on disk? A cheap check, and the re-index that fixes it.

The check compares each indexed file's recorded mtime and size with
``os.stat`` — no file is read. Sources that are not absolute paths (records
of a dataset table) are not files and are ignored. ``refresh`` re-indexes the
changed files and deletes the chunks of files that are gone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.events import Silent
from rag.profile import Profile
from rag.render import display_path
from rag.store import FileState


@dataclass
class Staleness:
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.changed or self.removed)

    def as_dict(self) -> dict[str, Any]:
        return {"changed": self.changed, "removed": self.removed}

    def message(self, refresh_command: str) -> str:
        """One line: what changed and the two commands that fix it."""
        parts = []
        if self.changed:
            parts.append(f"{_count(len(self.changed), 'indexed file')} changed")
        if self.removed:
            parts.append(
                f"{_count(len(self.removed), 'indexed file')} disappeared" if not self.changed else f"{len(self.removed)} disappeared"
            )
        examples = ", ".join(display_path(p) for p in [*self.changed, *self.removed][:3])
        more = ", …" if len(self.changed) + len(self.removed) > 3 else ""
        target = self.index_target()
        fixes = f"{refresh_command} or rag index {target}" if target else refresh_command
        return f"{' and '.join(parts)} since indexing ({examples}{more}); answers may be out of date: run {fixes}"

    def index_target(self) -> str | None:
        """What to pass to ``rag index``: the narrowest existing folder covering every change (deletions need
        their folder), else the changed paths themselves; None when only a folder as broad as ``/tmp`` or the
        home folder would do."""
        paths = sorted({*self.changed, *(str(_existing(Path(p).parent)) for p in self.removed)})
        common = _existing(Path(os.path.commonpath(paths)))
        if not _broad(common):
            return _quote(display_path(str(common)))
        if any(_broad(Path(p)) for p in paths):
            return None
        return " ".join(_quote(display_path(p)) for p in paths[:3]) + (" …" if len(paths) > 3 else "")


def check(states: dict[str, FileState]) -> Staleness:
    """Compare indexed files with the disk by mtime and size."""
    stale = Staleness()
    for source, state in states.items():
        if not os.path.isabs(source):
            continue  # a dataset record, not a file
        try:
            st = os.stat(source)
        except FileNotFoundError:
            stale.removed.append(source)
            continue
        except OSError:
            continue  # unreadable now (permissions): indexing would skip it too
        if st.st_mtime != state.mtime or st.st_size != state.size:
            stale.changed.append(source)
    stale.changed.sort()
    stale.removed.sort()
    return stale


class _Collect:
    """Indexer events for a refresh: warnings are kept for the caller to show; progress is not."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        silent = Silent()
        self.total, self.advance, self.stage = silent.total, silent.advance, silent.stage

    def skipped(self, path: str, reason: str, kind: str) -> None:
        self.warnings.append(f"skipped {path}: {reason}")

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def refresh(profile: Profile, stale: Staleness) -> tuple[dict[str, int], list[str]]:
    """Re-index changed files, forget removed ones; returns counts and the indexer's warnings."""
    from rag.indexer import forget_sources, index_paths

    events = _Collect()
    counts = {"files_indexed": 0, "files_deleted": 0, "chunks_added": 0, "chunks_removed": 0}
    reports = []
    present = [p for p in stale.changed if os.path.exists(p)]
    gone = [*stale.removed, *(p for p in stale.changed if p not in present)]
    if gone:
        reports.append(forget_sources(profile, gone, events=events))
    if present:
        reports.append(index_paths(profile, [Path(p) for p in present], events=events))
    for report in reports:
        for key in counts:
            counts[key] += getattr(report, key)
    return counts, events.warnings


def _broad(path: Path) -> bool:
    return len(path.parts) <= 2 or path == Path.home()


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _quote(path: str) -> str:
    return path if path and all(c.isalnum() or c in "/._-~+" for c in path) else "'" + path.replace("'", "'\\''") + "'"
