"""Find the files to index: walk folders, honour .gitignore and the profile's globs.

Two ways a file is left out, on purpose different:

- *excluded*: .gitignore, ``sources.exclude`` and the built-in
  :data:`DEFAULT_EXCLUDE` (pictures, fonts, styles, lock files, minified and
  generated files: nothing a person asks about). Silent, like a .gitignore'd file.
- *skipped*: a file that might hold text but cannot be read as such (binary,
  too large, unreadable, a pipe, minified by its content). Each comes back as a
  :class:`Skip` with a reason, and the caller summarises them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rag.errors import SourceError
from rag.profile import SourcesConfig

# Not prose or code a person asks about, in gitignore syntax, applied below each folder passed to rag index
# (a file named on the command line is always read). sources.default_exclude: false turns the list off;
# a "!pattern" in sources.exclude brings one kind back (e.g. "!*.svg"). rag.yaml.example lists them too.
DEFAULT_EXCLUDE: tuple[str, ...] = (
    # pictures, fonts, media, archives and compiled files: binary, or (SVG) path data
    *("*.svg", "*.png", "*.jpg", "*.jpeg", "*.gif", "*.bmp", "*.tif", "*.tiff", "*.webp", "*.ico", "*.icns"),
    *("*.psd", "*.xcf", "*.afdesign", "*.afphoto", "*.sketch", "*.odg", "*.woff", "*.woff2", "*.ttf", "*.otf", "*.eot"),
    *("*.mp3", "*.mp4", "*.m4a", "*.wav", "*.ogg", "*.flac", "*.mov", "*.avi", "*.mkv", "*.webm"),
    *("*.zip", "*.tar", "*.gz", "*.tgz", "*.bz2", "*.xz", "*.zst", "*.7z", "*.rar", "*.jar", "*.whl", "*.egg"),
    *("*.pyc", "*.pyo", "*.so", "*.dylib", "*.dll", "*.exe", "*.o", "*.a", "*.class"),
    # style sheets, source maps, minified bundles
    *("*.css", "*.scss", "*.sass", "*.less", "*.map", "*.min.js", "*.min.mjs", "*.min.css"),
    # lock files: pinned versions and hashes
    *("*.lock", "package-lock.json", "npm-shrinkwrap.json", "pnpm-lock.yaml", "bun.lockb", "go.sum"),
    # operating-system clutter
    *(".DS_Store", "Thumbs.db", "desktop.ini"),
    # Sphinx theme files and build output: copies of the sources, the search index, generated index pages
    *("_static/", "_build/", "_sources/", ".doctrees/", "searchindex.js", "objects.inv", ".buildinfo"),
    *("genindex.html", "py-modindex.html"),
)

# Folders nobody wants indexed, even without a .gitignore.
ALWAYS_SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv", "venv", ".rag", ".mypy_cache", ".pytest_cache", ".tox"}
BINARY_SNIFF = 8192
# Minified code and one-line data: long lines with hardly any whitespace (prose has 15 %, code more).
MINIFIED_LINE = 500  # mean characters per line in the first BINARY_SNIFF bytes
MINIFIED_SPACE = 0.10  # share of whitespace below which such lines are not prose
BAD_NAME = "its name is not valid UTF-8; rename it to index it"
_KINDS = {stat.S_IFIFO: "a named pipe", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}


@dataclass
class Skip:
    path: Path
    reason: str  # one line for a person, naming the setting or fix where there is one
    kind: str = "unreadable"  # for summaries: binary | minified | too large | unreadable | special file | bad name


@dataclass
class Found:
    path: Path
    size: int
    mtime: float


def _spec(lines: list[str]):  # type: ignore[no-untyped-def]
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(lines)


class _Ignore:
    """The profile's excludes (built-in ones first) and the stack of .gitignore files from the root down."""

    def __init__(self, root: Path, cfg: SourcesConfig) -> None:
        self.root = root
        self.use_gitignore = cfg.gitignore
        self.defaults = len(DEFAULT_EXCLUDE) if cfg.default_exclude else 0
        patterns = [*DEFAULT_EXCLUDE[: self.defaults], *cfg.exclude]
        self.exclude = _spec(patterns) if patterns else None
        self.specs: dict[Path, object] = {}
        self.content_check = cfg.default_exclude

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

    def wanted(self, path: Path) -> bool:
        """Whether a "!pattern" of the user's re-includes ``path``: then its content is not second-guessed."""
        if self.exclude is None:
            return False
        result = self.exclude.check_file(path.relative_to(self.root).as_posix())
        return result.include is False and result.index is not None and result.index >= self.defaults


def looks_binary(head: bytes) -> bool:
    if b"\x00" in head:
        # UTF-16 text has NULs too; its BOM gives it away.
        return not head.startswith((b"\xff\xfe", b"\xfe\xff"))
    return False


def looks_minified(head: bytes) -> tuple[int, float] | None:
    """(mean line length, whitespace share) when the start of a text file looks minified, else None."""
    if not head:
        return None
    mean = len(head) // (head.count(b"\n") + 1)
    if mean < MINIFIED_LINE:
        return None
    space = sum(head.count(c) for c in b" \t\n\r") / len(head)
    return (mean, space) if space < MINIFIED_SPACE else None


def walk(paths: list[Path], cfg: SourcesConfig) -> Iterator[Found | Skip]:
    """Yield every candidate file under ``paths`` (files given directly are always candidates)."""
    limit = int(cfg.max_file_mb * 1024 * 1024)
    include = _spec(cfg.include) if cfg.include else None
    for root in paths:
        if not root.exists():
            raise SourceError(f"path not found: {root}; check the path you passed to rag index")
        root = root.resolve()
        if root.is_file():
            yield _check_file(root, limit, minified=False)
            continue
        ignore = _Ignore(root, cfg)
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
        yield _check_file(path, limit, minified=ignore.content_check and not ignore.wanted(path))


def _utf8(name: str) -> bool:
    """Whether a name read from the file system is valid UTF-8 (other bytes arrive as lone surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_file(path: Path, limit: int, *, minified: bool) -> Found | Skip:
    """Found, or why not; ``minified``: also leave out text that looks minified (not for files named by the user)."""
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
    if head.startswith(b"%PDF"):
        return Found(path, st.st_size, st.st_mtime)
    if looks_binary(head):
        return Skip(path, "binary file", "binary")
    shape = looks_minified(head) if minified else None
    if shape is not None:
        mean, space = shape
        longer = "+" if b"\n" not in head else ""
        return Skip(
            path,
            f"looks minified (lines of {mean:,}{longer} characters, {space:.0%} whitespace); add '!{path.name}' to sources.exclude to index it",
            "minified",
        )
    return Found(path, st.st_size, st.st_mtime)
