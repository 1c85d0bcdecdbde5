"""`rag ask` end to end on reST and MyST with roles and code: what is shown has no markup, what is cited is exact.

The answer a reader sees is stripped of roles, literals, directives and link
syntax, and a code block that answers is shown as code; the citation's JSON
keeps the chunk exactly as stored (id, source, offsets and raw text).
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.clirun import rag, write

GUIDE = """.. _capture:

.. This comment is
   not text.

Capturing output
================

Tests often need to look at what the code printed. To capture what a test writes to stdout,
use the :fixture:`capsys` fixture and call
:meth:`readouterr() <pytest.CaptureFixture.readouterr>`::

    def test_output(capsys):
        print("hello")
        assert capsys.readouterr().out == "hello\\n"

.. note:: The ``capfd`` fixture also captures the output of subprocesses.
   See `the pytest docs <https://docs.pytest.org>`_.

Cleaning up
-----------

Use the :func:`tmp_path` fixture for temporary files; it is removed after the run.
"""

LOGGING = """(logging)=
# Logging in tests

You can use {func}`structlog.testing.capture_logs` to capture **log entries** in a test:

```{doctest}
>>> with capture_logs() as logs:
...     get_logger().info("hi")
```

:::{note}
Configured processors are disabled inside [the context manager](https://www.structlog.org).
:::
"""

MARKUP = re.compile(r":\w+:`|\{\w+\}`|``|^\s*\.\. |\.\. \w|====|----|```|:::|\]\(|`_|&\w+;", re.MULTILINE)


def prose(answer: str) -> str:
    return "\n".join(line for line in answer.splitlines() if not line.startswith("    "))


def test_answer_shows_no_markup_and_the_code_that_answers(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(docs / "guide.rst", GUIDE)
    write(docs / "logging.md", LOGGING)
    assert rag("index", str(docs), cwd=tmp_path).code == 0

    result = rag("ask", "How do I capture what a test writes to stdout?", "--json", "--threshold", "0", cwd=tmp_path)
    assert result.code == 0, result.err
    out = result.json()
    answer = out["answer"]
    assert not MARKUP.search(prose(answer)), answer
    assert "use the `capsys` fixture and call `readouterr()`" in answer  # the roles' names, shown as code
    assert '    def test_output(capsys):\n        print("hello")' in answer  # the literal block, shown as code
    cited = {c["n"]: c for c in out["citations"]}
    n = next(c["n"] for c in out["citations"] if c["source"].endswith("guide.rst"))
    assert f"[{n}]:\n\n    def test_output" in answer and cited[n]["cited"]

    # the citation is the chunk as stored: same id, source and raw text (markup and all), offsets into the file
    import lancedb

    table = lancedb.connect(str(tmp_path / ".rag")).open_table("chunks")
    rows = {r["id"]: r for r in table.to_arrow().select(["id", "source", "text", "start", "end"]).to_pylist()}
    for citation in out["citations"]:
        row = rows[citation["id"]]
        assert (citation["source"], citation["text"]) == (row["source"], row["text"])
    guide = rows[cited[n]["id"]]
    assert ":fixture:`capsys`" in guide["text"] and "::\n\n    def test_output" in guide["text"]
    assert (docs / "guide.rst").read_text()[guide["start"] : guide["end"]] == guide["text"]

    terminal = rag("ask", "How do I capture log entries in a test?", "--threshold", "0", cwd=tmp_path)
    assert terminal.code == 0, terminal.err
    shown = terminal.out.split("Sources")[0]
    assert "`structlog.testing.capture_logs()`" in shown and "    >>> with capture_logs() as logs:" in shown
    assert not MARKUP.search(prose(shown)), shown
