"""``rag ask -``: questions (or JSON lines with options) on stdin, one JSON result per line, the index opened once."""

from __future__ import annotations

import json
from pathlib import Path

from tests.clirun import rag_process, write


def test_batch_of_questions_end_to_end(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(docs / "animals.txt", "Foxes are omnivores. They eat mice, berries and insects.\n\nThe lazy dog sleeps all day.\n")
    write(docs / "install.md", "# Install\n\nInstall rag with pip from a checkout:\n\n    pip install .\n")
    assert rag_process("index", str(docs), cwd=tmp_path).code == 0
    lines = [
        "what do foxes eat?",
        "",
        json.dumps({"id": "q2", "question": "how do I install rag", "top_n": 1, "mode": "fts"}),
        json.dumps({"id": "bad", "question": "foxes", "top_k": 0}),
        json.dumps({"questio": "typo"}),
        "not json {",
        json.dumps({"question": "foxes", "top_n": "two"}),
    ]
    result = rag_process("ask", "-", cwd=tmp_path, stdin="\n".join(lines) + "\n")
    out = result.lines()
    assert len(out) == 6, result.err
    first, second, bad, typo, text, wrong_type = out
    assert first["question"] == "what do foxes eat?" and "They eat mice, berries and insects [1]." in first["answer"]
    assert first["no_answer"] is False and first["citations"][0]["source"].endswith("animals.txt")
    assert second["id"] == "q2" and len(second["citations"]) == 1 and second["retrieved"]["mode"] == "fts"
    assert second["citations"][0]["source"].endswith("install.md")
    assert bad == {
        "id": "bad",
        "question": "foxes",
        "error": "line 4: --top-k must be at least 1, not 0",
        "exit_code": 2,
    }
    assert typo["error"].startswith("line 5: unknown option questio; options are id, question,")
    assert text["question"] == "not json {" and "answer" in text  # a line not starting with { is a question
    assert wrong_type["error"] == "line 7: 'top_n' must be a whole number"
    assert result.code == 2  # the first failed line's exit code, after every line was answered
    assert result.err.count("error") == 0  # failures are in the JSON, not on stderr


def test_batch_exits_zero_when_every_line_is_answered(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(docs / "animals.txt", "Foxes are omnivores. They eat mice, berries and insects.\n")
    assert rag_process("index", str(docs), cwd=tmp_path).code == 0
    result = rag_process("ask", "-", cwd=tmp_path, stdin="what do foxes eat?\nwhat is the capital of peru?\n")
    assert result.code == 0, result.err
    answered, unanswered = result.lines()
    assert answered["no_answer"] is False and unanswered["no_answer"] is True
