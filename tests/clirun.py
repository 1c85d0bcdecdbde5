"""Drive the real CLI: in-process (fast, the model loads once) or as a subprocess."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    code: int
    out: str
    err: str

    def __iter__(self) -> Iterator[Any]:
        """``code, out, err = rag(...)``."""
        return iter((self.code, self.out, self.err))

    def json(self) -> Any:
        return json.loads(self.out)

    def lines(self) -> list[Any]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


def rag(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
    """Run ``rag ARGS`` in this process through the same entry point as the console script (in ``cwd``, default here)."""
    from rag.app import app
    from rag.commands.common import run_app

    out, err = io.StringIO(), io.StringIO()
    old_cwd, old_env, old_stdin = Path.cwd(), dict(os.environ), sys.stdin
    os.chdir(cwd or old_cwd)
    os.environ.pop("RAG_PROFILE", None)
    os.environ.update(env or {})
    sys.stdin = io.StringIO(stdin or "")
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                run_app(app, [str(a) for a in args])
            except SystemExit as exc:
                code = int(exc.code or 0) if not isinstance(exc.code, str) else 1
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)
        sys.stdin = old_stdin
    return Result(code, out.getvalue(), err.getvalue())


def rag_process(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300, stdin: str | None = None) -> Result:
    """Run ``python -m rag ARGS`` as a separate process."""
    full_env = {k: v for k, v in os.environ.items() if k != "RAG_PROFILE"}
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "rag", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, input=stdin
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def later(offset: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> Result:
    """``rag ARGS`` as a process whose clock reads ``offset`` ahead (faketime syntax: +30m, +2d)."""
    faketime = shutil.which("faketime")
    if faketime is None:
        import pytest

        pytest.fail("faketime is not installed: apt-get install faketime (as .ci/run does)")
    full_env = {k: v for k, v in os.environ.items() if k != "RAG_PROFILE"} | (env or {})
    proc = subprocess.run(
        [faketime, "-f", offset, sys.executable, "-m", "rag", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)
