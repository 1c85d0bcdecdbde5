"""Crash points for the crash-safety tests, off unless ``RAG_CRASH_AT`` (or ``RAG_FAIL_AT``) is set.

``RAG_CRASH_AT=fts:0.05`` makes the process ``SIGKILL`` itself 0.05 s after it
reaches the checkpoint named ``fts``, i.e. while the work that follows the
checkpoint is in progress. If that work ends before the timer fires (a fast
machine, or a timer thread starved of the GIL), :func:`passed` kills the
process at once, so the crash always lands before anything that comes after
the work. Nothing is simulated: the real process really dies mid-operation,
the way a power cut or the OOM killer would do it.
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "RAG_CRASH_AT"
FAIL_ENV = "RAG_FAIL_AT"  # RAG_FAIL_AT=fts raises an OSError at checkpoint "fts" instead: a step that fails, not a crash
_armed: set[str] = set()


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def checkpoint(name: str) -> None:
    if name in os.environ.get(FAIL_ENV, "").split(","):
        raise OSError(f"injected failure at {name} ({FAIL_ENV})")
    spec = os.environ.get(ENV)
    if not spec:
        return
    point, _, delay = spec.partition(":")
    if point != name:
        return
    seconds = float(delay or 0)
    if seconds <= 0:
        _die()
    _armed.add(name)
    timer = threading.Timer(seconds, _die)
    timer.daemon = True
    timer.start()


def passed(name: str) -> None:
    """The work after :func:`checkpoint` ``name`` is done; a crash armed there and still pending happens now."""
    if name in _armed:
        _die()
