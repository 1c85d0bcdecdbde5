"""First contact: every parser error is typer's few lines (usage, the error, a suggestion) and exit 2, never a traceback.

Typer 0.29 vendors its own click; these drive the real parser end to end, in-process and as
``python -m rag``, so a change in typer's internals shows up here instead of in a user's terminal.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests.clirun import rag, rag_process, write

# Typer frames its errors in a box; the box and the wrapping at 80 columns are not part of the message.
_FRAME = re.compile(r"[│╭╮╰╯─]+")


def flat(text: str) -> str:
    return " ".join(_FRAME.sub(" ", text).split())


# (arguments, what the message must say). Each is one kind of parser error.
USAGE_ERRORS = [
    pytest.param(["qurey", "x"], ["No such command 'qurey'", "Did you mean 'query'?"], id="unknown-command"),
    pytest.param(["query", "x", "--topk", "3"], ["No such option: --topk", "--top-k"], id="unknown-option"),
    pytest.param(["ask"], ["Missing argument 'question'"], id="missing-argument"),
    pytest.param(["query", "x", "--top-k", "abc"], ["Invalid value for '--top-k'", "integer"], id="bad-int"),
    pytest.param(["serve", "--max-wait-ms", "soon"], ["Invalid value for '--max-wait-ms'", "number"], id="bad-float"),
    pytest.param(["eval", "data", "--limit", "0"], ["Invalid value for '--limit'", "greater than or equal to 1"], id="out-of-range"),
    pytest.param(["query", "x", "--top-k"], ["Option '--top-k' requires an argument"], id="missing-option-value"),
    pytest.param(["query", "one", "two"], ["unexpected extra argument", "two"], id="extra-argument"),
    pytest.param(["--store"], ["Option '--store' requires an argument"], id="root-option-value"),
]


def assert_short_usage_error(code: int, out: str, err: str, expected: list[str]) -> None:
    assert code == 2, (code, out, err)
    assert "Traceback" not in err and "Traceback" not in out
    assert out == ""
    assert 1 <= len(err.strip().splitlines()) <= 8, err
    for words in expected:
        assert words in flat(err), (words, err)


@pytest.mark.parametrize(("args", "expected"), USAGE_ERRORS)
def test_usage_error_in_process(args: list[str], expected: list[str], tmp_path: Path) -> None:
    code, out, err = rag(*args, cwd=tmp_path)
    assert_short_usage_error(code, out, err, expected)


@pytest.mark.parametrize(("args", "expected"), [USAGE_ERRORS[i] for i in (0, 1, 2, 3)])
def test_usage_error_as_a_process(args: list[str], expected: list[str], tmp_path: Path) -> None:
    code, out, err = rag_process(*args, cwd=tmp_path, env={"COLUMNS": "80"})
    assert_short_usage_error(code, out, err, expected)
    assert flat(err).startswith(("Usage: rag ", "No such")), err  # the program is rag, not 'python -m rag'


def test_usage_line_names_the_command(tmp_path: Path) -> None:
    err = rag("query", "x", "--topk", "3", cwd=tmp_path).err
    assert err.splitlines()[0].startswith("Usage: rag query ")
    assert "Try 'rag query -h' for help." in err


@pytest.mark.parametrize("runner", ["in-process", "process"])
def test_bare_rag_prints_the_help_and_exits_2(runner: str, tmp_path: Path) -> None:
    result = rag(cwd=tmp_path) if runner == "in-process" else rag_process(cwd=tmp_path, env={"COLUMNS": "80"})
    assert result.code == 2, result
    text = result.out + result.err
    assert "Traceback" not in text
    assert "Usage: rag [OPTIONS] COMMAND [ARGS]..." in flat(text)
    for command in ("index", "query", "status", "rerank", "ask", "eval", "serve"):
        assert re.search(rf"^\W*{command}\s", text, re.MULTILINE), command


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["query", "--help"], ["index", "-h"]])
def test_help_exits_0(args: list[str], tmp_path: Path) -> None:
    code, out, err = rag(*args, cwd=tmp_path)
    assert code == 0 and err == ""
    assert "Usage: rag" in flat(out)
    if args[0] == "query":
        assert "--top-k" in out and "--where" in out


def test_version_exits_0(tmp_path: Path) -> None:
    from rag import __version__

    assert tuple(rag("--version", cwd=tmp_path)) == (0, f"rag {__version__}\n", "")


def test_our_own_errors_stay_one_line(tmp_path: Path) -> None:
    """A RagError is not a parser error: one 'error:' line and its own exit code, as before."""
    code, out, err = rag("query", "x", "--top-k", "0", cwd=tmp_path)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("error: ") and "top-k" in err
    code, _, err = rag("status", cwd=tmp_path)
    assert code == 4 and err.count("\n") == 1 and err.startswith("error: no index at ")


def test_help_closed_early_by_the_reader_is_quiet(tmp_path: Path) -> None:
    """``rag --help | head -0``: the reader is gone before rag writes; no BrokenPipe noise on stderr."""
    env = {k: v for k, v in os.environ.items() if k != "RAG_PROFILE"}
    proc = subprocess.Popen([sys.executable, "-m", "rag", "--help"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert proc.returncode in (0, 1) and err == "", err


def test_ctrl_c_while_querying_exits_130_with_one_line(tmp_path: Path) -> None:
    """Ctrl-C reaches typer as KeyboardInterrupt, which it turns into a silent exit 130: we say what happened."""
    write(tmp_path / "docs" / "a.md", "# Lock\n\nA second writer waits for the lock on the store.\n")
    assert rag("index", "docs", cwd=tmp_path).code == 0
    env = {k: v for k, v in os.environ.items() if k != "RAG_PROFILE"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rag", "query", "-"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("who waits for the lock\n")
    proc.stdin.flush()
    assert '"hits"' in proc.stdout.readline()  # answered the first line: now it waits for the next one
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err == "error: interrupted; the index is consistent, re-run the same command to finish\n"


def test_ci_runs_the_readme_test_command() -> None:
    """CI installs what a new user gets (newest releases within the ranges), with the README's exact command."""
    from tests.clirun import REPO

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").rstrip("\n").splitlines()
    assert ci[-2] == "# The README's test command:"
    assert f"```sh\n{ci[-1]}\n```" in readme
    assert ci[-1].startswith("python3 -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[dev]' && ")
