"""What every command shares: options, error handling, JSON output."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click
import typer

from rag.errors import Interrupted, RagError

ProfileOption = typer.Option(None, "--profile", "-p", help="Profile YAML (default: $RAG_PROFILE, then ./rag.yaml, then built-in).")
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


def warn(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")
    sys.stderr.flush()


def run_app(app: typer.Typer, args: list[str] | None = None) -> None:
    """Run the app; expected errors become one stderr line and an exit code.

    standalone_mode=False so that Ctrl-C reaches us (click would print
    'Aborted!' and exit 1) and exits 130 with a message that says what to do.
    """
    try:
        result = app(args=args, standalone_mode=False)
    except RagError as err:
        fail(err)
    except (KeyboardInterrupt, click.exceptions.Abort):
        fail(Interrupted("interrupted; the index is consistent, re-run the same command to finish"))
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except BrokenPipeError:
        sys.stderr.close()
        raise SystemExit(1) from None
    if result == Interrupted.exit_code:  # typer turns Ctrl-C into a silent Exit(130)
        fail(Interrupted("interrupted; the index is consistent, re-run the same command to finish"))
    raise SystemExit(result if isinstance(result, int) else 0)
