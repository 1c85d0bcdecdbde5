"""What every command shares: options, error handling, JSON output."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from typing import Any, NoReturn

import typer

from rag.errors import Interrupted, RagError

ProfileOption = typer.Option(
    None, "--profile", "-p", help="Profile YAML (default: $RAG_PROFILE, then the project's rag.yaml, then built-in)."
)
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON on stdout instead of a table.")


def fail(err: RagError) -> NoReturn:
    sys.stderr.write(f"error: {err}\n")
    sys.stderr.flush()
    raise SystemExit(err.exit_code)


def emit_json(obj: Any) -> None:
    from rag.text import clean_text

    # clean_text: a file name that is not UTF-8 (in a skipped path) must not break the JSON on a strict UTF-8 stdout
    sys.stdout.write(clean_text(json.dumps(obj, ensure_ascii=False, default=str)) + "\n")
    sys.stdout.flush()


def stdin_lines() -> Iterator[str]:
    """Lines of stdin without their newline; bytes that are not UTF-8 are cleaned as in an argument, not fatal."""
    import io

    from rag.text import clean_text

    if isinstance(sys.stdin, io.TextIOWrapper):
        sys.stdin.reconfigure(errors="surrogateescape")
    for line in sys.stdin:
        yield clean_text(line.rstrip("\n"))


def stdin_batches(max_batch: int = 32) -> Iterator[list[str]]:
    """Non-blank stdin lines in batches: each batch is what has already arrived, up to ``max_batch``.

    A file or a pipe fed in advance gives full batches (one model call for many queries); a program that writes
    one line and waits for its answer gets it at once, in a batch of one.
    """
    import queue

    from rag import threads

    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in stdin_lines():
            lines.put(line)
        lines.put(None)

    threads.start(read, "rag-stdin")
    done = False
    while not done:
        batch: list[str] = []
        item = threads.take(lines)  # in slices: Ctrl-C while waiting for the next line exits at once
        while True:
            if item is None:
                done = True
                break
            if item.strip():
                batch.append(item)
            if len(batch) >= max_batch:
                break
            try:
                item = lines.get_nowait()
            except queue.Empty:
                break
        if batch:
            yield batch


def warn(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")
    sys.stderr.flush()


INTERRUPTED = "interrupted; the index is consistent, re-run the same command to finish"
UNEXPECTED = (
    "commits are atomic, so the index is consistent: re-run the command; if it fails again, RAG_DEBUG=1 shows the traceback to report"
)


def run_app(app: typer.Typer, args: list[str] | None = None) -> NoReturn:
    """Run the app; expected errors become one stderr line and an exit code.

    Typer runs in its standalone mode, the public contract: usage errors are its
    own few lines (usage, the error, "Did you mean ...") and exit 2, whatever
    copy of click it carries inside. Typer 0.29 vendors click as ``typer._click``,
    so catching the ``click`` package's exceptions here stopped matching.
    What is ours: a RagError (one line, its exit code) and Ctrl-C, which typer
    turns into a silent exit 130 and which we explain.
    """
    try:
        app(args=args, prog_name="rag", standalone_mode=True)
    except RagError as err:
        fail(err)
    except KeyboardInterrupt:  # outside typer's own handling, e.g. while the command is being built
        fail(Interrupted(INTERRUPTED))
    except SystemExit as exc:
        if exc.code == Interrupted.exit_code:
            fail(Interrupted(INTERRUPTED))
        raise
    except BrokenPipeError:  # the reader went away (rag query x | head -1): nothing left to say
        sys.stderr.close()
        raise SystemExit(1) from None
    except Exception as exc:  # a bug, or a failure below us we never met: still one line, the traceback on request
        if logging.getLogger().isEnabledFor(logging.DEBUG):  # -v or RAG_DEBUG, as the app's callback set it up
            raise
        from rag.store.snapshot import lance_message

        fail(RagError(f"unexpected {type(exc).__name__}: {lance_message(exc)}; {UNEXPECTED}"))
    raise SystemExit(0)  # standalone mode always exits; kept for the type checker
