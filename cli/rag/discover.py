"""Find the files to index: walk folders, honour .gitignore and the profile's globs.

Skipped files are reported, never silently dropped: binary files, files over
the size limit, unreadable files and symlink loops each come back as a
:class:`Skip` with the reason.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rag.errors import SourceError
from rag.profile import SourcesConfig

# Folders nobody wants indexed, even without a .gitignore.
ALWAYS_SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv", "venv", ".rag", ".mypy_cache", ".pytest_cache", ".tox"}
BINARY_SNIFF = 8192
BAD_NAME = "its name is not valid UTF-8; rename it to index it"
_KINDS = {stat.S_IFIFO: "a named pipe", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}


@dataclass
class Skip:
    path: Path
    reason: str  # one line for a person, naming the setting or fix where there is one
    kind: str = "unreadable"  # for summaries: binary | too large | unreadable | special file | bad name


@dataclass
class Found:
    path: Path
    size: int
    mtime: float


def _spec(lines: list[str]):  # type: ignore[no-untyped-def]
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(lines)


class _Ignore:
    """The stack of .gitignore files from the root down to the current folder."""

    def __init__(self, root: Path, use_gitignore: bool, exclude: list[str]) -> None:
        self.root = root
        self.use_gitignore = use_gitignore
        self.exclude = _spec(exclude) if exclude else None
        self.specs: dict[Path, object] = {}

    def load(self, folder: Path) -> None:
        if not self.use_gitignore:
            return
        gi = folder / ".gitignore"
        if gi.is_file():
            try:
                self.specs[folder] = _spec(gi.read_text(encoding="utf-8", errors="replace").splitlines())
            except OSError:
                pass

    def ignored(self, path: Path, is_dir: bool) -> bool:
        rel = path.relative_to(self.root).as_posix() + ("/" if is_dir else "")
        if self.exclude is not None and self.exclude.match_file(rel):
            return True
        for folder, spec in self.specs.items():
            if folder == path or folder not in path.parents:
                continue
            sub = path.relative_to(folder).as_posix() + ("/" if is_dir else "")
            if spec.match_file(sub):  # type: ignore[attr-defined]
                return True
        return False


def looks_binary(head: bytes) -> bool:
    if b"\x00" in head:
        # UTF-16 text has NULs too; its BOM gives it away.
        return not head.startswith((b"\xff\xfe", b"\xfe\xff"))
    return False


def walk(paths: list[Path], cfg: SourcesConfig) -> Iterator[Found | Skip]:
    """Yield every candidate file under ``paths`` (files given directly are always candidates)."""
    limit = int(cfg.max_file_mb * 1024 * 1024)
    include = _spec(cfg.include) if cfg.include else None
    for root in paths:
        if not root.exists():
            raise SourceError(f"path not found: {root}; check the path you passed to rag index")
        root = root.resolve()
        if root.is_file():
            yield _check_file(root, limit)
            continue
        ignore = _Ignore(root, cfg.gitignore, cfg.exclude)
        seen_dirs: set[tuple[int, int]] = set()
        yield from _walk_dir(root, ignore, include, limit, seen_dirs)


def _walk_dir(folder: Path, ignore: _Ignore, include: object, limit: int, seen: set[tuple[int, int]]) -> Iterator[Found | Skip]:
    try:
        st = folder.stat()
    except OSError as exc:
        yield Skip(folder, f"cannot read folder ({exc.strerror})")
        return
    key = (st.st_dev, st.st_ino)
    if key in seen:
        yield Skip(folder, "symlink loop", "special file")
        return
    seen.add(key)
    ignore.load(folder)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        yield Skip(folder, f"cannot read folder ({exc.strerror})")
        return
    for entry in entries:
        path = Path(entry.path)
        try:
            is_dir = entry.is_dir()
        except OSError:
            yield Skip(path, "cannot stat (broken link or loop)")
            continue
        if is_dir:
            if entry.name in ALWAYS_SKIP_DIRS or ignore.ignored(path, True):
                continue
            if not _utf8(entry.name):
                yield Skip(path, BAD_NAME, "bad name")
                continue
            yield from _walk_dir(path, ignore, include, limit, seen)
            continue
        if entry.name == ".gitignore" or ignore.ignored(path, False):
            continue
        if include is not None and not include.match_file(path.relative_to(ignore.root).as_posix()):  # type: ignore[attr-defined]
            continue
        if entry.is_symlink() and not path.exists():
            yield Skip(path, "broken symlink", "special file")
            continue
        yield _check_file(path, limit)


def _utf8(name: str) -> bool:
    """Whether a name read from the file system is valid UTF-8 (other bytes arrive as lone surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_file(path: Path, limit: int) -> Found | Skip:
    if not _utf8(str(path)):  # the index keys chunks by path, as UTF-8 text
        return Skip(path, BAD_NAME, "bad name")
    try:
        st = path.stat()
    except OSError as exc:
        return Skip(path, f"cannot stat ({exc.strerror})")
    if not stat.S_ISREG(st.st_mode):  # opening a named pipe would wait for a writer forever
        return Skip(path, f"not a regular file ({_KINDS.get(stat.S_IFMT(st.st_mode), 'special file')})", "special file")
    if st.st_size > limit:
        mb = st.st_size / 1024 / 1024
        return Skip(path, f"{mb:.1f} MB is over sources.max_file_mb ({limit / 1024 / 1024:g} MB)", "too large")
    try:
        with path.open("rb") as fh:
            head = fh.read(BINARY_SNIFF)
    except OSError as exc:
        return Skip(path, f"cannot read ({exc.strerror})")
    if looks_binary(head) and not head.startswith(b"%PDF"):
        return Skip(path, "binary file", "binary")
    return Found(path, st.st_size, st.st_mtime)
