"""Crash points for the crash-safety tests, off unless ``RAG_CRASH_AT`` is set.

``RAG_CRASH_AT=fts:0.05`` makes the process ``SIGKILL`` itself 0.05 s after it
reaches the checkpoint named ``fts``, i.e. while the work that follows the
checkpoint is in progress. Nothing is simulated: the real process really dies
mid-operation, the way a power cut or the OOM killer would do it.
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "RAG_CRASH_AT"


def checkpoint(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    point, _, delay = spec.partition(":")
    if point != name:
        return
    seconds = float(delay or 0)

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    if seconds <= 0:
        die()
    timer = threading.Timer(seconds, die)
    timer.daemon = True
    timer.start()
