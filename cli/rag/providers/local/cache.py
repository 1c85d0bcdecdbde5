"""The user cache for local models: derived graphs and content hashes.

Everything here is a speed-up that can be rebuilt: a read-only or full disk
costs time, never a result. Files are written to a private temporary name and
renamed into place, so two processes racing to write the same entry both
succeed and a reader never sees half a file.

Where: ``$RAG_CACHE_DIR``, else ``$XDG_CACHE_HOME/rag``, else ``~/.cache/rag``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import uuid
from pathlib import Path

ENV_CACHE_DIR = "RAG_CACHE_DIR"


def cache_dir() -> Path:
    explicit = os.environ.get(ENV_CACHE_DIR)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "rag"


def models_dir() -> Path:
    return cache_dir() / "models"


def temp_beside(final: Path) -> Path:
    """A name in ``final``'s folder that no other process or thread will pick."""
    return final.with_name(f".{final.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def sweep_temporaries(folder: Path, older_than: float = 3600.0) -> None:
    """Remove temporaries a killed process left behind (a live writer's are younger than this)."""
    now = time.time()
    for tmp in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if now - tmp.stat().st_mtime > older_than:
                tmp.unlink()


def write_atomic(final: Path, data: bytes) -> None:
    """Write ``data`` to ``final`` all at once; raises OSError (read-only, full disk) and leaves no temporary behind."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(final)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file's content, remembered by (path, size, mtime) so a large model is hashed once."""
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:32]
    memo = models_dir() / "sha256" / key
    with contextlib.suppress(OSError, UnicodeDecodeError):
        known = memo.read_text(encoding="ascii").strip()
        if len(known) == 64:
            return known
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    sha = digest.hexdigest()
    with contextlib.suppress(OSError):
        write_atomic(memo, sha.encode("ascii"))
    return sha
