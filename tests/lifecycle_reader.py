"""A polling reader: runs ``rag query --json`` through the CLI entry point in a loop, one JSON line per query.

    python tests/lifecycle_reader.py OUT STOP "query text"

runs in the project folder until the file STOP exists. Each query opens the
store afresh (as a new ``rag query`` process would), so it reads whatever
generation is live at that moment. Each line of OUT: start and end times,
exit code, the generation and table version that answered, the hit ids, and
the error line when there was one. Used by the lifecycle tests and by
bench/lifecycle_bench.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from pathlib import Path


def main(out: Path, stop: Path, query: str) -> None:
    from rag.app import app
    from rag.commands.common import run_app

    with out.open("a", encoding="utf-8") as sink:
        while not stop.exists():
            stdout, stderr = io.StringIO(), io.StringIO()
            began = time.time()
            code = 0
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                try:
                    run_app(app, ["query", query, "--json", "--mode", "dense", "--top-k", "3"])
                except SystemExit as exc:
                    code = int(exc.code or 0) if not isinstance(exc.code, str) else 1
            line = {"start": began, "end": time.time(), "code": code}
            if code == 0:
                answer = json.loads(stdout.getvalue())
                line.update(
                    generation=answer["index"]["generation"], version=answer["index"]["version"], ids=[h["id"] for h in answer["hits"]]
                )
            else:
                line["error"] = stderr.getvalue().strip()
            sink.write(json.dumps(line) + "\n")
            sink.flush()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
