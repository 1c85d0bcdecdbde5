"""Start-up: a command imports only what it needs (each command runs in a fresh interpreter here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from clirun import rag, write

PROBE = """
import contextlib, io, json, sys
sys.argv = ["rag", *sys.argv[1:]]
from rag.app import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        main()
    except SystemExit:
        pass
print(json.dumps(sorted(m for m in sys.modules if "." not in m)))
"""


def imported(*args: str, cwd: Path) -> set[str]:
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cold")
    write(root / "docs" / "pasta.md", "# Pasta\n\nBoil the pasta in salted water for nine minutes.\n")
    assert rag("index", "docs", cwd=root).code == 0
    return root


def test_help_loads_neither_the_model_runtime_nor_lance(indexed: Path) -> None:
    modules = imported("--help", cwd=indexed)
    assert "typer" in modules  # the probe really ran the CLI
    assert not modules & {"onnxruntime", "lance", "lancedb", "pyarrow", "tokenizers", "httpx"}


@pytest.mark.parametrize("args", [("status",), ("query", "--mode", "fts", "pasta"), ("status", "--json")])
def test_commands_that_embed_nothing_load_no_model_runtime(indexed: Path, args: tuple[str, ...]) -> None:
    modules = imported(*args, cwd=indexed)
    assert "lance" in modules  # it read the index
    assert not modules & {"onnxruntime", "tokenizers", "lancedb"}


def test_a_dense_query_loads_the_model_but_not_lancedb(indexed: Path) -> None:
    modules = imported("query", "pasta", cwd=indexed)
    assert "onnxruntime" in modules
    assert "lancedb" not in modules  # pylance reads and writes; lancedb's start-up costs seconds


def test_options_given_as_text_or_left_out_load_no_pydantic(indexed: Path) -> None:
    """typer converts through pydantic (~0.3 s of CPU to import); a string or an absent value needs no converting."""
    assert "pydantic" not in imported("query", "pasta", "--mode", "hybrid", "--json", cwd=indexed)
    assert "pydantic" in imported("query", "pasta", "-k", "2", cwd=indexed)  # a number is typer's to convert
