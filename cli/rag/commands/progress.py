"""Progress bars on stderr, drawn only on a terminal, with warnings printed above them."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from rag.commands.common import warn

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, ProgressColumn


class Bar:
    """A transient rich progress display; off a terminal (or when ``show`` is false) it draws nothing."""

    def __init__(self, show: bool | None = None, console: Console | None = None) -> None:
        self.progress: Progress | None = None
        self._show = sys.stderr.isatty() if show is None else show
        if self._show:
            from rich.console import Console
            from rich.progress import Progress

            console = console or Console(stderr=True)
            self.progress = Progress(*self.columns(console.width), console=console, transient=True)

    def columns(self, width: int) -> list[ProgressColumn]:
        raise NotImplementedError

    def __enter__(self) -> Any:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def warn(self, message: str) -> None:
        """One ``warning:`` line; above the bar when one is drawn (a path may hold [brackets]: no markup)."""
        if self.progress is None:
            warn(message)
            return
        from rich.text import Text

        self.progress.console.print(Text.assemble(("warning:", "yellow"), " ", message))
