from __future__ import annotations

import sys
from pathlib import Path

import typer

from rag.commands.common import JsonOption, ProfileOption, emit_json, warn


def command(
    paths: list[Path] = typer.Argument(..., help="Files or folders to index."),
    profile: str | None = ProfileOption,
    json_out: bool = JsonOption,
    rebuild: bool = typer.Option(False, "--rebuild", help="Drop the index and build it again (e.g. after changing the embedding model)."),
) -> None:
    """Chunk local files, embed them in batches and store them in LanceDB (incremental)."""
    from rag.indexer import index_paths
    from rag.profile import load_profile

    prof = load_profile(profile)
    show_bar = not json_out and sys.stderr.isatty()
    with _ProgressEvents(show_bar) as events:
        report = index_paths(prof, paths, rebuild=rebuild, events=events)
    if json_out:
        emit_json(report.as_dict())
        return
    from rich.console import Console

    console = Console(stderr=False)
    console.print(
        f"[bold]indexed[/bold] {report.files_indexed} files ({report.files_unchanged} unchanged, {report.files_skipped} skipped, "
        f"{report.files_deleted} deleted) · chunks +{report.chunks_added} −{report.chunks_removed} = {report.chunks_total} · "
        f"{report.embedding_calls} embedding calls ({report.cache_hits} cache hits) · {report.seconds:.1f} s"
        + (f" · {report.embedded_texts / report.seconds:.1f} chunks/s" if report.embedded_texts and report.seconds else "")
    )


class _ProgressEvents:
    """Renders indexer events: a rich progress bar on a terminal, plain warnings otherwise."""

    def __init__(self, show_bar: bool) -> None:
        from rich.progress import Progress, TaskID

        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.chunks = 0
        if show_bar:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]indexing"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("files · {task.fields[chunks]} chunks · {task.fields[rate]} chunks/s"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )

    def __enter__(self) -> _ProgressEvents:
        if self.progress is not None:
            self.progress.start()
            self.task = self.progress.add_task("index", total=None, chunks=0, rate="-")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def total(self, files: int) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, total=files)

    def advance(self, files: int = 0, chunks: int = 0) -> None:
        self.chunks += chunks
        if self.progress is not None and self.task is not None:
            elapsed = self.progress.tasks[0].elapsed or 0.0
            rate = f"{self.chunks / elapsed:.1f}" if elapsed > 0 else "-"
            self.progress.update(self.task, advance=files, chunks=self.chunks, rate=rate)

    def skipped(self, path: str, reason: str, kind: str) -> None:
        self.warn(f"skipped {path}: {reason}")

    def warn(self, message: str) -> None:
        if self.progress is not None:
            self.progress.console.print(f"[yellow]warning:[/yellow] {message}", highlight=False)
        else:
            warn(message)
