"""The typer application: the only place (with rag.commands and rag.render) that knows about typer/rich.

Commands live in ``rag.commands.*``; each parses arguments, loads the profile,
calls one library function and renders the result. Expected failures are
``RagError`` and are turned into one stderr line and an exit code here.
"""

from __future__ import annotations

import logging
import os
import sys

# rag's matrix products are small (a batch of queries against the vectors in memory), and OpenBLAS's worker
# threads spin for a while after each one: a quarter of the CPU of `rag query -`, taken from the model.
# Read once, when numpy first loads (never before this module).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import typer

from rag import __version__
from rag.commands import register
from rag.profile import STORE_ENV

try:  # pydantic only for a value that needs converting (typer internals, hence guarded: typer is pinned <0.30)
    from rag.commands import lazy_params

    lazy_params.install()
except (ImportError, AttributeError):  # another typer: its own conversion for every value, ~0.3 s slower to start
    pass
app = typer.Typer(
    name="rag",
    help="Index local documents and get grounded, cited answers. Offline by default.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class _Plain(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def _version(value: bool) -> None:
    if value:
        print(f"rag {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every provider attempt (debug level) on stderr."),
    store: str | None = typer.Option(
        None,
        "--store",
        envvar=STORE_ENV,
        metavar="PATH",
        help="The index folder (default: the profile's store.uri, else the nearest .rag from here up, else ./.rag).",
    ),
) -> None:
    if store:  # the profile reads it from the environment, so every command (and the library) agrees
        os.environ[STORE_ENV] = store
    debug = bool(verbose or os.environ.get("RAG_DEBUG"))
    handler = logging.StreamHandler(sys.stderr)
    # A warning reads like every other line rag writes ("warning: ..."); -v adds the logger's name to each line.
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s") if debug else _Plain())
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, handlers=[handler])
    # Our own debug lines name stage, model, status and latency; the transport's are noise (and may echo headers).
    for noisy in ("httpcore", "httpx", "hpack", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


register(app)


def main() -> None:
    from rag.commands.common import run_app
    from rag.commands.startup_gc import pause
    from rag.errors import Interrupted

    pause()  # the process's own entry point only: the library and in-process tests keep their collector

    try:
        run_app(app)
    except SystemExit as exc:
        if exc.code == Interrupted.exit_code:
            # The index is consistent once the interrupt has unwound; what may remain are provider calls in
            # worker threads, which a normal exit would wait for (up to their timeouts and retries).
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(Interrupted.exit_code)
        raise
