"""``rag index``: index files incrementally, with a progress line on a terminal and one summary line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from rag.commands.common import JsonOption, ProfileOption, emit_json, warn
from rag.commands.progress import Bar

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import ProgressColumn, Task, TaskID


def command(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(..., help="Files or folders to index."),
    profile: str | None = ProfileOption,
    json_out: bool = JsonOption,
    rebuild: bool = typer.Option(
        False, "--rebuild", help="Build the index again beside the live one, which answers until the new one is complete."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="List every skipped file with its reason."),
    ray: bool = typer.Option(False, "--ray", help="Load, chunk and embed on a Ray cluster (index.engine: ray does the same)."),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="The cluster for --ray (default index.ray_address, else a local one)."
    ),
) -> None:
    """Chunk local files, embed them in batches and store them in LanceDB (incremental)."""
    from rag.api import open_index

    verbose = verbose or bool(ctx.find_root().params.get("verbose"))  # rag -v index ... works as well
    index = open_index(profile)
    show_bar = not json_out and sys.stderr.isatty()
    prof = index.profile
    if ray or ray_address or prof.index.engine == "ray":  # rag.distributed: Ray Data, one atomic commit
        from rag.distributed import index_paths_ray

        report = index_paths_ray(prof, list(paths), address=ray_address or prof.index.ray_address, rebuild=rebuild)
    else:
        with _ProgressEvents(show_bar) as events:
            report = index.add(list(paths), rebuild=rebuild, events=events)
    _report_skips(report.skipped, verbose)
    if json_out:
        emit_json(report.as_dict())
        return
    from rag.render import index_summary

    sys.stdout.write(index_summary(report.as_dict()) + "\n")  # plain: never wrapped at 80 columns when piped


def _report_skips(skipped: list[dict[str, Any]], verbose: bool) -> None:
    """One line for the run's skipped files on stderr (when some are new); with -v, every one of them under it."""
    from rag.render import display_path, skip_summary

    if verbose and skipped:
        sys.stderr.write((skip_summary([{**s, "new": True} for s in skipped], hint="") or "").rstrip("; ") + "\n")
        if len(skipped) > 1:
            sys.stderr.write("".join(f"  {display_path(s['path'])}: {s['reason']}\n" for s in skipped))
        return
    line = skip_summary(skipped, hint="rag index -v lists them")
    if line:
        warn(line)


class _ProgressEvents(Bar):
    """Renders indexer events: a progress line on a terminal; warnings as they come; skips gathered for one summary."""

    def __init__(self, show_bar: bool, console: Console | None = None) -> None:
        self.task: TaskID | None = None
        self.files = self.chunks = self.chunks_at_files = 0
        self.files_total: int | None = None  # until the indexer knows what changed
        super().__init__(show_bar, console)

    def columns(self, width: int) -> list[ProgressColumn]:
        from rich.progress import BarColumn

        return [BarColumn(bar_width=max(10, min(40, width - 62))), _status_column()]

    def __enter__(self) -> _ProgressEvents:
        super().__enter__()
        if self.progress is not None:
            self.task = self.progress.add_task("index", total=None, files=0, chunks=0, files_total=None)
        return self

    def total(self, files: int) -> None:
        self.files_total = files
        self._update()

    def advance(self, files: int = 0, chunks: int = 0) -> None:
        self.chunks += chunks
        if files:
            self.files += files
            self.chunks_at_files = self.chunks
        self._update()

    def _update(self) -> None:
        if self.progress is None or self.task is None:
            return
        from rag.render import files_done

        done = files_done(self.files, self.chunks, self.chunks_at_files, self.files_total or 0)
        self.progress.update(
            self.task,
            total=self.files_total or None,
            completed=done,
            files=self.files,
            chunks=self.chunks,
            files_total=self.files_total,
        )

    def stage(self, name: str) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, stage=name)

    def skipped(self, path: str, reason: str, kind: str) -> None:
        """Summarised once the run ends (from the report), not one warning per file."""


def _status_column() -> ProgressColumn:
    """``12/466 files · 1,024 chunks · 21.3 chunks/s · 0:42 left``, worked out when drawn so the ETA ticks."""
    from rich.progress import ProgressColumn
    from rich.table import Column
    from rich.text import Text

    from rag.render import duration, eta

    class Status(ProgressColumn):
        def render(self, task: Task) -> Text:
            fields = task.fields
            elapsed = task.elapsed or 0.0
            total = fields.get("files_total")
            parts = [f"{fields.get('files', 0):,}/{total:,} files" if total else "no file changed" if total == 0 else "finding files"]
            chunks = fields.get("chunks", 0)
            if chunks:
                parts.append(f"{chunks:,} chunks" + (f" · {chunks / elapsed:.1f} chunks/s" if elapsed > 0 else ""))
            left = eta(task.completed, total or 0, elapsed)
            if fields.get("stage"):  # every file is embedded: say what the run is finishing
                parts[-1:] = [f"{chunks:,} chunks" if chunks else parts[-1], fields["stage"]]
            else:
                parts.append(f"{duration(left)} left" if left is not None else f"{duration(elapsed)} so far")
            return Text(" · ".join(parts), no_wrap=True, overflow="ellipsis")

    return Status(table_column=Column(no_wrap=True))
