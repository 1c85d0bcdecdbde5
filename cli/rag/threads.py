"""Threads that never swallow Ctrl-C.

The kernel delivers SIGINT to any thread that does not block it. If it lands on a worker, the main thread,
blocked in a wait or a socket read, is never woken and Ctrl-C seems to do nothing (or is lost at exit). So
every thread rag starts blocks SIGINT and SIGTERM, and the main thread waits in short slices, so that a
signal Python noticed elsewhere is raised in it promptly.
"""

from __future__ import annotations

import queue
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

T = TypeVar("T")
SLICE = 0.2  # seconds a main-thread wait blocks before looking for a pending signal


def block_signals() -> None:
    """In a worker: leave SIGINT and SIGTERM to the main thread."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


def pool(workers: int, name: str) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name, initializer=block_signals)


def start(target: Callable[[], None], name: str) -> threading.Thread:
    """A daemon thread running ``target`` with signals blocked."""

    def run() -> None:
        block_signals()
        target()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def result(future: Future[T]) -> T:
    """``future.result()``, waiting in slices so that Ctrl-C is raised here at once."""
    while True:
        try:
            return future.result(timeout=SLICE)
        except FutureTimeout:
            continue


def take(q: queue.Queue[T]) -> T:
    """``q.get()``, waiting in slices so that Ctrl-C is raised here at once."""
    while True:
        try:
            return q.get(timeout=SLICE)
        except queue.Empty:
            continue
