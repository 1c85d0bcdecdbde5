"""What long-running library calls tell their caller while they work, and the sink for nobody listening.

The CLI turns these into progress bars (:mod:`rag.commands.progress`); a script passes nothing and
gets :class:`Silent`.
"""

from __future__ import annotations

from typing import Protocol


class IndexEvents(Protocol):
    """The indexer's events.

    ``total``: files that will be read this run. ``advance``: work done, as it is done (chunks per
    embedding batch, files as each is finished). ``skipped``: a file left out (``kind`` is one of
    binary, minified, too large, unreadable, special file, bad name), summarised by the caller.
    ``stage``: what the run does once every file is embedded (publishing, upkeep, calibration).
    ``warn``: anything else worth one line. Called from the indexer's threads: keep handlers short.
    """

    def total(self, files: int) -> None: ...
    def stage(self, name: str) -> None: ...
    def advance(self, files: int = 0, chunks: int = 0) -> None: ...
    def skipped(self, path: str, reason: str, kind: str) -> None: ...
    def warn(self, message: str) -> None: ...


class EvalEvents(Protocol):
    """The evaluation runner's events: a phase (indexing, queries) with its size, steps done, warnings."""

    def phase(self, name: str, total: int) -> None: ...
    def advance(self, n: int = 1) -> None: ...
    def warn(self, message: str) -> None: ...


class Silent:
    """Events nobody listens to (any of the protocols above)."""

    def total(self, *args: object) -> None:
        pass

    def phase(self, *args: object) -> None:
        pass

    def stage(self, *args: object) -> None:
        pass

    def advance(self, *args: object, **kwargs: object) -> None:
        pass

    def skipped(self, *args: object) -> None:
        pass

    def warn(self, *args: object) -> None:
        pass
