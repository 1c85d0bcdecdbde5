"""Start `rag serve` as a separate process on 127.0.0.1 for the benches, and wait until it answers."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx


def start_server(cwd: Path | None = None, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """The server process (run in ``cwd``, e.g. beside a gateway profile) and its base URL, once ``/health``
    answers (the model loads first)."""
    command = [sys.executable, "-m", "rag", "serve", "--host", "127.0.0.1", "--port", "0"]
    proc = subprocess.Popen(command, cwd=cwd, env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    match = re.search(r"http://127\.0\.0\.1:\d+", line)
    if not match:
        proc.kill()
        raise SystemExit(f"rag serve did not start: {line}{proc.stderr.read()}")
    url = match.group(0)
    for _ in range(600):
        try:
            if httpx.get(url + "/health", timeout=1.0).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("rag serve did not answer /health within 60 s")
