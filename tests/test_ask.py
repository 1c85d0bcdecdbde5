"""`rag ask` end to end, offline: extractive answers, no-answer exit, freshness, --refresh, traces, rerank cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.clirun import rag, write

from rag.errors import NO_ANSWER_EXIT
from rag.freshness import Staleness, check
from rag.store import FileState


def corpus(root: Path) -> Path:
    docs = root / "docs"
    write(
        docs / "install.md",
        "# Install\n\nInstall rag with pip from a checkout:\n\n    pip install .\n\n"
        "## Limits\n\nFiles larger than 20 MB are skipped with a warning. Binary files are skipped.\n",
    )
    write(docs / "animals.txt", "Foxes are omnivores. They eat mice, berries and insects.\n\nThe lazy dog sleeps all day.\n")
    write(docs / "notes.rst", "Cooking\n=======\n\nBoil pasta in salted water for ten minutes. Drain it well.\n")
    assert rag("index", str(docs), cwd=root).code == 0
    return docs


def test_extractive_answer_with_sources(tmp_path: Path) -> None:
    corpus(tmp_path)
    result = rag("ask", "what do foxes eat?", cwd=tmp_path)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith("Extractive answer")
    assert "They eat mice, berries and insects [1]." in result.out
    assert "Foxes are omnivores." in result.out  # "They ..." brings the sentence it leans on
    sources = lines[lines.index("Sources") + 1 :]
    assert sources[0].startswith("[1] docs/animals.txt") and sources[0].endswith(")")
    assert "warning" not in result.err


def test_json_object(tmp_path: Path) -> None:
    corpus(tmp_path)
    result = rag("ask", "how large may files be", "--json", "--top-n", "2", "--threshold", "0", cwd=tmp_path)
    assert result.code == 0, result.err
    out = result.json()
    assert out["extractive"] is True and out["no_answer"] is False
    assert "Files larger than 20 MB are skipped with a warning [1]." in out["answer"]
    assert [c["n"] for c in out["citations"]] == [1, 2]
    first = out["citations"][0]
    assert set(first) >= {"n", "id", "source", "heading", "score", "text", "cited"}
    assert first["heading"] == "Install › Limits" and first["cited"] and first["score_kind"] == "dense"
    retrieved = out["retrieved"]
    assert retrieved["selected"] == [c["id"] for c in out["citations"]]
    assert retrieved["candidates"][0]["scores"].keys() >= {"hybrid"}
    assert retrieved["reranked"] is None and retrieved["threshold"]["value"] == 0.0
    assert out["models"]["embedding"]["model"] == "local/all-MiniLM-L6-v2" and out["models"]["embedding"]["version"]
    assert out["usage"]["embed"]["calls"] >= 2 and out["cost"]["total"] == 0.0
    assert out["cache"]["hit"] is False
    assert {"retrieve", "extract", "total"} <= set(out["latency_ms"])
    assert out["invalid_citations"] == [] and out["stale"] == {"changed": [], "removed": []}


def test_no_answer_exits_10(tmp_path: Path) -> None:
    corpus(tmp_path)
    result = rag("ask", "what is the capital of Peru?", "--threshold", "0.9", cwd=tmp_path)
    assert result.code == NO_ANSWER_EXIT == 10
    assert result.out.strip() == "The indexed documents do not answer this question."
    assert "threshold 0.9" in result.err and "Sources" not in result.out
    as_json = rag("ask", "what is the capital of Peru?", "-t", "0.9", "--json", cwd=tmp_path)
    assert as_json.code == 10
    out = as_json.json()
    assert out["no_answer"] and out["citations"] == [] and out["retrieved"]["selected"] == []
    assert len(out["retrieved"]["threshold"]["dropped"]) == len(out["retrieved"]["candidates"]) > 0
    nothing = rag("ask", "foxes", "--where", "source LIKE '%nothing%'", cwd=tmp_path)
    assert nothing.code == 10 and "nothing was retrieved" in nothing.err


def test_usage_errors(tmp_path: Path) -> None:
    assert rag("ask", "foxes", cwd=tmp_path).code == 4  # no index yet
    corpus(tmp_path)
    for args in (["   "], ["x", "--top-n", "0"], ["x", "--top-k", "0"], ["x", "--mode", "fuzzy"]):
        result = rag("ask", *args, cwd=tmp_path)
        assert result.code == 2 and result.err.startswith("error: ") and result.err.count("\n") == 1, (args, result.err)


def test_freshness_warning_and_refresh(tmp_path: Path) -> None:
    docs = corpus(tmp_path)
    write(docs / "animals.txt", "Foxes are omnivores. They eat mice, berries, insects and also worms.\n")
    (docs / "notes.rst").unlink()
    stale = rag("ask", "what do foxes eat?", "--json", cwd=tmp_path)
    assert stale.code == 0
    warning = [line for line in stale.err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1
    assert "1 indexed file changed and 1 disappeared" in warning[0]
    assert "rag ask --refresh 'what do foxes eat?'" in warning[0] and "rag index docs" in warning[0]
    assert stale.json()["stale"] == {"changed": [str(docs / "animals.txt")], "removed": [str(docs / "notes.rst")]}
    assert "worms" not in stale.json()["answer"]

    fresh = rag("ask", "what do foxes eat?", "--refresh", "--json", cwd=tmp_path)
    assert fresh.code == 0, fresh.err
    assert "warning" not in fresh.err
    out = fresh.json()
    assert "worms" in out["answer"]
    assert out["refreshed"] == {"files_indexed": 1, "files_deleted": 1, "chunks_added": 1, "chunks_removed": 2}
    assert out["stale"] == {"changed": [], "removed": []}
    status = rag("status", "--json", cwd=tmp_path).json()
    assert status["sources"] == 2 and status["fts_current"]


def test_dataset_sources_are_not_files() -> None:
    states = {"13734012": FileState(0.0, 0, "abc", 1), "/definitely/not/here.md": FileState(1.0, 5, "def", 2)}
    stale = check(states)
    assert stale.changed == [] and stale.removed == ["/definitely/not/here.md"]


def test_index_suggestion_is_never_too_broad(tmp_path: Path) -> None:
    a, b = write(tmp_path / "docs" / "a.md", "a"), write(tmp_path / "docs" / "sub" / "b.md", "b")
    assert Staleness([str(a), str(b)], []).index_target() == str(tmp_path / "docs")
    assert Staleness([str(a)], [str(tmp_path / "docs" / "gone" / "c.md")]).index_target() == str(tmp_path / "docs")
    assert Staleness([], ["/tmp/no-such-folder-here/c.md"]).index_target() is None  # only /tmp would cover it
    message = Staleness([], ["/tmp/no-such-folder-here/c.md"]).message("rag ask --refresh q")
    assert message.endswith("run rag ask --refresh q") and "rag index" not in message


def test_trace_lines_for_ask_and_query(tmp_path: Path) -> None:
    corpus(tmp_path)
    write(tmp_path / "rag.yaml", "trace:\n  path: logs/trace.jsonl\n")
    assert rag("ask", "what do foxes eat?", cwd=tmp_path).code == 0
    assert rag("ask", "capital of Peru", "-t", "0.95", cwd=tmp_path).code == 10
    assert rag("query", "pasta", "-k", "2", cwd=tmp_path).code == 0
    lines = [json.loads(line) for line in (tmp_path / "logs" / "trace.jsonl").read_text().splitlines()]
    assert [line["command"] for line in lines] == ["ask", "ask", "query"]
    ask, no_answer, query = lines
    assert ask["query"] == "what do foxes eat?" and ask["outcome"] == "answered" and ask["extractive"]
    assert ask["models"]["embedding"]["version"] and ask["retrieved"]["candidates"][0]["id"]
    calibrated = json.loads((tmp_path / ".rag" / "chunks.meta.json").read_text())["calibration"]["threshold"]
    gate = ask["retrieved"]["threshold"]
    assert (gate["value"], gate["score"], gate["source"]) == (calibrated, "dense", "calibrated")
    assert ask["cited"]
    assert ask["cache"] == {"enabled": True, "hit": False} and "embed" in ask["usage"]
    assert {"freshness", "retrieve", "extract", "total"} <= set(ask["latency_ms"]) and ask["ts"]
    assert no_answer["outcome"] == "no_answer" and no_answer["retrieved"]["threshold"]["dropped"]
    assert query["query"] == "pasta" and len(query["retrieved"]) == 2 and query["models"]["embedding"]["model"]
    assert query["usage"]["embed"]["calls"] == 1 and query["latency_ms"]["retrieve"] > 0


def test_rerank_stage_threshold_and_cache(tmp_path: Path) -> None:
    corpus(tmp_path)
    write(tmp_path / "rag.yaml", "rerank:\n  model: local/minilm-cosine\nask:\n  threshold: 0.2\n")
    first = rag("ask", "what do foxes eat?", "--json", cwd=tmp_path)
    assert first.code == 0, first.err
    out = first.json()
    reranked = out["retrieved"]["reranked"]
    assert reranked and reranked == sorted(reranked, key=lambda r: -r["score"])
    assert out["retrieved"]["threshold"]["score"] == "rerank"
    assert all(d["score"] < 0.2 for d in out["retrieved"]["threshold"]["dropped"])
    assert out["citations"][0]["score_kind"] == "rerank" and out["citations"][0]["score"] >= 0.2
    assert out["models"]["rerank"]["model"] == "local/minilm-cosine" and out["usage"]["rerank"]["calls"] == 1
    assert out["cache"]["rerank"] == "miss" and (tmp_path / ".rag" / "answer-cache.sqlite").is_file()
    again = rag("ask", "what do foxes eat?", "--json", cwd=tmp_path).json()
    assert again["cache"]["rerank"] == "hit" and "rerank" not in again["usage"]
    assert again["retrieved"]["reranked"] == reranked
    plain = rag("ask", "what do foxes eat?", "--json", "--no-rerank", cwd=tmp_path).json()
    assert plain["retrieved"]["reranked"] is None and "rerank" not in plain["models"]
    (tmp_path / ".rag" / "answer-cache.sqlite").unlink()
    write(tmp_path / "rag.yaml", "rerank:\n  model: local/minilm-cosine\ncache:\n  enabled: false\n")
    off = rag("ask", "what do foxes eat?", "--json", cwd=tmp_path).json()
    assert off["cache"] == {"enabled": False, "hit": False, "rerank": "off"} and off["usage"]["rerank"]["calls"] == 1
    assert not (tmp_path / ".rag" / "answer-cache.sqlite").exists()


def test_cold_process(tmp_path: Path) -> None:
    """The console entry point, as a user runs it right after install."""
    from tests.clirun import rag_process

    corpus(tmp_path)
    result = rag_process("ask", "how do I install rag?", cwd=tmp_path, env={"NO_COLOR": "1", "HOME": os.environ.get("HOME", "")})
    assert result.code == 0, result.err
    assert "Install rag with pip from a checkout: `pip install .` [1]" in result.out
