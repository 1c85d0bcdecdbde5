"""One writer at a time per store.

LanceDB silently duplicates rows when two processes ``merge_insert`` the same
new keys (lancedb#3377), so every writer takes an exclusive ``flock`` on
``<store>/<table>.lock``. The kernel drops the lock when its holder dies,
even on ``kill -9``; the PID written inside tells us whose it was, so a lock
file left by a dead process is reported as taken over.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rag.errors import LockHeldError


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


@contextmanager
def writer_lock(path: Path, timeout: float, notify: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the store's write lock; wait up to ``timeout`` s, telling ``notify`` once why we wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _read_pid(path)
                if time.monotonic() >= deadline:
                    raise LockHeldError(
                        f"another rag index (pid {holder or '?'}) is writing to {path.parent}; wait for it to finish, "
                        f"or raise store.lock_timeout (now {timeout:g} s)"
                    ) from None
                if notify and not told:
                    notify(f"waiting for another rag index (pid {holder or '?'}) to finish writing {path.parent}")
                    told = True
                time.sleep(0.2)
        previous = _read_pid(path)
        if previous and previous != os.getpid() and not _pid_alive(previous) and notify:
            notify(f"took over a stale lock left by pid {previous}, which is gone")
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
