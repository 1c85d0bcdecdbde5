"""``rag eval`` on an own-documents question file, against the current index."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.clirun import rag

from rag.indexer import index_paths
from rag.profile import load_profile


@pytest.fixture
def project(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "install.md").write_text("# Installation\n\nRun pip install frobnicator to install the frobnicator tool.\n")
    (docs / "limits.md").write_text("# Limits\n\nThe frobnicator handles at most twelve widgets per batch.\n")
    (docs / "history.md").write_text("# History\n\nThe project started in a garden shed in 1999.\n")
    (tmp_path / "rag.yaml").write_text("store:\n  uri: store\n")
    index_paths(load_profile(str(tmp_path / "rag.yaml")), [docs])
    return tmp_path


def test_own_docs_yaml_scores_expected_sources(project: Path) -> None:
    questions = project / "eval.yaml"
    questions.write_text(
        "- question: how do I install frobnicator with pip\n"
        "  expected_sources: [docs/install.md]\n"
        "  expected_answer: pip install frobnicator\n"
        "- question: widgets per batch limit\n"
        "  expected_sources: [docs/limits.md]\n"
    )
    code, out, err = rag("eval", questions, "-p", project / "rag.yaml", "--mode", "fts", "--k", "1,3", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["dataset"]["kind"] == "docs" and report["dataset"]["queries"] == 2
    assert report["index"]["table"] == "chunks"
    assert report["stages"]["retrieval"]["metrics"]["mrr@1"] == 1.0
    assert report["stages"]["retrieval"]["metrics"]["recall@3"] == 1.0
    assert report["answers"] is None  # no chat model configured


def test_unindexed_expected_source_is_a_warning_and_a_miss(project: Path) -> None:
    questions = project / "eval.jsonl"
    questions.write_text(json.dumps({"question": "garden shed history", "expected_sources": ["docs/missing.md"]}) + "\n")
    code, out, err = rag("eval", questions, "-p", project / "rag.yaml", "--mode", "fts", "--json")
    assert code == 0
    assert "1 expected sources are not in the index" in err and "missing.md" in err
    assert json.loads(out)["stages"]["retrieval"]["metrics"]["recall@100"] == 0.0


def test_own_docs_without_an_index_says_how_to_build_one(tmp_path: Path) -> None:
    (tmp_path / "rag.yaml").write_text("store:\n  uri: store\n")
    questions = tmp_path / "eval.yaml"
    questions.write_text("- question: anything\n  expected_sources: [a.md]\n")
    code, _, err = rag("eval", questions, "-p", tmp_path / "rag.yaml")
    assert code == 4
    assert "rag index" in err


QUESTIONS = (
    "- question: how do I install frobnicator with pip\n"
    "  expected_sources: [docs/install.md]\n"
    "- question: widgets per batch limit\n"
    "  expected_sources: [docs/limits.md]\n"
)


def test_extractive_answers_cite_the_expected_sources(project: Path) -> None:
    (project / "eval.yaml").write_text(QUESTIONS)
    code, out, err = rag("eval", project / "eval.yaml", "-p", project / "rag.yaml", "--mode", "fts", "--extractive", "--json")
    assert code == 0, err
    answers = json.loads(out)["answers"]
    assert answers["mode"] == "extractive" and answers["questions"] == 2
    assert answers["cites_expected"] == 1.0
    assert answers["no_valid_citation"] == 0.0 and answers["no_answer"] == 0.0
    assert answers["chat_tokens_per_query"] == 0


def test_chat_answers_citations_tokens_and_cost(project: Path, fault: Any) -> None:
    (project / "eval.yaml").write_text(QUESTIONS + "- question: who painted the sky\n  expected_sources: [docs/history.md]\n")
    (project / "rag.yaml").write_text(
        "store:\n  uri: store\n"
        f"providers:\n  fake:\n    kind: openai\n    base_url: {fault.url}\n    max_retries: 0\n"
        "chat:\n  model: fake/gpt\n  price_in_per_1m_tokens: 1.0\n  price_out_per_1m_tokens: 2.0\n"
    )
    fault.chat_reply = "It is in the first source [1]."
    saved = project / "run.json"
    code, out, err = rag("eval", project / "eval.yaml", "-p", project / "rag.yaml", "--mode", "fts", "--json", "--save", saved)
    assert code == 0, err
    answers = json.loads(out)["answers"]
    # [1] is each question's top full-text hit: the expected file for the first two; the third question's
    # words match nothing, so nothing passes and it is a no-answer (no chat call, no citation)
    assert answers["mode"] == "chat" and answers["questions"] == 3
    assert answers["cites_expected"] == pytest.approx(2 / 3, abs=1e-6)
    assert answers["no_answer"] == pytest.approx(1 / 3, abs=1e-6)
    assert answers["no_valid_citation"] == pytest.approx(1 / 3, abs=1e-6)
    # the fault server reports 20 prompt + 7 completion tokens per call: 2 calls over 3 questions
    assert answers["chat_tokens_per_query"] == pytest.approx(2 * 27 / 3, abs=0.01)
    assert answers["chat_cost_per_query_usd"] == pytest.approx(2 * (20 * 1.0 + 7 * 2.0) / 1e6 / 3, abs=1e-8)
    per_question = json.loads(saved.read_text())["per_query"]["answers"]
    assert per_question["q1"]["cited_sources"] == [str((project / "docs" / "install.md").resolve())]

    fault.chat_reply = "No citations here."
    code, out, _ = rag("eval", project / "eval.yaml", "-p", project / "rag.yaml", "--mode", "fts", "--json")
    assert json.loads(out)["answers"]["no_valid_citation"] == 1.0
    code, out, _ = rag("eval", project / "eval.yaml", "-p", project / "rag.yaml", "--mode", "fts", "--json", "--no-answers")
    assert json.loads(out)["answers"] is None
