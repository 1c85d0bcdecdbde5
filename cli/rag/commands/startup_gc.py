"""The garbage collector off while the CLI starts, then on.

Start-up is imports and the opened index: hundreds of thousands of objects, none of them garbage, which
Python's cyclic collector nonetheless scans several times as they age (~0.1 s of CPU in a cold
``rag query``, a twelfth of it). So :func:`pause` turns the collector off for the first seconds of the
process; then it is back on, with everything start-up built frozen out of its scans (``gc.freeze``).
A one-shot command is usually done by then; a long one (``rag index``, ``rag query -``, ``rag serve``)
collects as usual from there on. Reference counting frees all other garbage meanwhile.
"""

from __future__ import annotations

import gc
import threading

from rag import threads

START_UP = 2.0  # seconds without the collector


def pause(seconds: float = START_UP) -> None:
    """Collector off now, back on after ``seconds`` (the process may well have exited by then)."""
    if not gc.isenabled():
        return  # someone else manages it (an embedding program, a test)
    gc.disable()
    done = threading.Event()

    def resume() -> None:
        done.wait(seconds)
        gc.freeze()
        gc.enable()

    threads.start(resume, "rag-gc")
