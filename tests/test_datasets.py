"""Evaluation-set loaders and run files, on tiny files written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.datasets import (
    RUN_FORMAT,
    corpus_fingerprint,
    iter_corpus,
    load_eval_set,
    load_run,
    save_run,
    table_name,
    write_trec_run,
)
from rag.errors import UsageError


def write_beir(folder: Path, qrels: str = "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\nq2\td2\t1\n") -> Path:
    (folder / "qrels").mkdir(parents=True)
    corpus = [{"_id": "d1", "title": "Cats", "text": "Cats purr."}, {"_id": "d2", "title": "", "text": "Dogs bark."}]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    queries = [{"_id": "q1", "text": "what purrs"}, {"_id": "q2", "text": "what barks"}, {"_id": "q3", "text": "unjudged"}]
    (folder / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries))
    (folder / "qrels" / "test.tsv").write_text(qrels)
    return folder


def test_beir_loads_judged_queries_and_graded_qrels(tmp_path: Path) -> None:
    ds = load_eval_set(write_beir(tmp_path / "tiny"))
    assert (ds.kind, ds.name, ds.split) == ("beir", "tiny", "test")
    assert ds.queries == {"q1": "what purrs", "q2": "what barks"}
    assert ds.qrels == {"q1": {"d1": 2, "d2": 0}, "q2": {"d2": 1}}
    assert ds.limited(1).queries == {"q1": "what purrs"}


def test_beir_corpus_documents_are_title_space_text(tmp_path: Path) -> None:
    docs = list(iter_corpus(write_beir(tmp_path / "tiny")))
    assert [(d.source, d.text) for d in docs] == [("d1", "Cats Cats purr."), ("d2", "Dogs bark.")]
    assert docs[0].sha256 and docs[0].sha256 != docs[1].sha256


def test_missing_split_names_the_file_and_the_splits_there(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "tiny")
    with pytest.raises(UsageError, match=r"qrels/train\.tsv is missing; splits here: test"):
        load_eval_set(folder, split="train")


@pytest.mark.parametrize(
    ("qrels", "message"),
    [
        ("query-id\tcorpus-id\tscore\nq1\td1\n", r"test\.tsv:2: expected 3 tab-separated columns"),
        ("query-id\tcorpus-id\tscore\nq1\td1\thigh\n", r"test\.tsv:2: score 'high' is not a whole number"),
        ("query-id\tcorpus-id\tscore\nq9\td1\t1\n", r"1 query ids are not in .*queries\.jsonl \(first: q9\)"),
        ("query-id\tcorpus-id\tscore\n", r"holds no judgements"),
    ],
)
def test_malformed_qrels(tmp_path: Path, qrels: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        load_eval_set(write_beir(tmp_path / "tiny", qrels))


def test_malformed_jsonl_names_file_and_line(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "tiny")
    (folder / "queries.jsonl").write_text('{"_id": "q1", "text": "a"}\n{"_id": "q2", "text": \n')
    with pytest.raises(UsageError, match=r"queries\.jsonl:2: malformed JSON"):
        load_eval_set(folder)
    (folder / "corpus.jsonl").write_text('{"_id": "d1", "text": "a"}\n{"title": "no id"}\n')
    with pytest.raises(UsageError, match=r"corpus\.jsonl:2: missing '_id'"):
        list(iter_corpus(folder))


def test_missing_corpus_and_missing_path(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "tiny")
    (folder / "corpus.jsonl").unlink()
    with pytest.raises(UsageError, match=r"corpus\.jsonl is missing"):
        load_eval_set(folder)
    with pytest.raises(UsageError, match="does not exist"):
        load_eval_set(tmp_path / "nowhere")


def test_table_name_follows_corpus_and_settings(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "Sci-Fact dev")
    name = table_name(folder, "local/minilm|256|32")
    assert name.startswith("beir_sci_fact_dev_")
    assert table_name(folder, "local/minilm|256|32") == name
    assert table_name(folder, "local/minilm|512|32") != name
    before = corpus_fingerprint(folder)
    with (folder / "corpus.jsonl").open("a") as handle:
        handle.write(json.dumps({"_id": "d3", "title": "", "text": "new"}) + "\n")
    assert corpus_fingerprint(folder) != before


def test_own_docs_yaml_resolves_sources_beside_the_file(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n")
    path = tmp_path / "eval.yaml"
    path.write_text(
        "- question: What is A?\n"
        "  expected_sources: [docs/a.md]\n"
        "  expected_answer: A is a letter.\n"
        "- id: second\n"
        "  question: And B?\n"
        "  expected_sources: [/abs/b.md, docs/a.md]\n"
    )
    ds = load_eval_set(path)
    a = str((tmp_path / "docs" / "a.md").resolve())
    assert ds.kind == "docs"
    assert ds.queries == {"q1": "What is A?", "second": "And B?"}
    assert ds.qrels == {"q1": {a: 1}, "second": {"/abs/b.md": 1, a: 1}}
    assert ds.expected_answers == {"q1": "A is a letter."}


def test_own_docs_jsonl_and_errors_with_lines(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    path.write_text(json.dumps({"question": "q?", "expected_sources": ["x.md"]}) + "\n")
    assert list(load_eval_set(path).queries.values()) == ["q?"]
    path.write_text(json.dumps({"question": "q?", "expected_sources": ["x.md"]}) + "\n" + json.dumps({"question": "no sources"}) + "\n")
    with pytest.raises(UsageError, match=r"eval\.jsonl:2: 'expected_sources' must be a non-empty list"):
        load_eval_set(path)
    yaml_path = tmp_path / "eval.yaml"
    yaml_path.write_text("questions:\n  - question: ok\n    expected_sources: [a.md]\n  - question: typo\n    expected_source: [a.md]\n")
    with pytest.raises(UsageError, match=r"eval\.yaml:4: unknown key\(s\) expected_source"):
        load_eval_set(yaml_path)
    yaml_path.write_text("- question: [unclosed\n")
    with pytest.raises(UsageError, match=r"eval\.yaml:\d+: malformed YAML"):
        load_eval_set(yaml_path)


def test_trec_run_is_ranked_like_trec_eval(tmp_path: Path) -> None:
    out = tmp_path / "run.trec"
    write_trec_run(out, {"q1": {"d1": 0.5, "d3": 0.9, "d2": 0.5}}, "rag hybrid")
    assert out.read_text().splitlines() == [
        "q1 Q0 d3 1 0.900000 rag_hybrid",
        "q1 Q0 d2 2 0.500000 rag_hybrid",
        "q1 Q0 d1 3 0.500000 rag_hybrid",
    ]


def test_saved_run_round_trip_and_bad_files(tmp_path: Path) -> None:
    report = {"format": RUN_FORMAT, "stages": {"retrieval": {"metrics": {"ndcg@10": 0.5}}}}
    save_run(tmp_path / "run.json", report)
    assert load_run(tmp_path / "run.json") == report
    (tmp_path / "other.json").write_text('{"stages": {}}')
    with pytest.raises(UsageError, match="not a run saved by rag eval"):
        load_run(tmp_path / "other.json")
    with pytest.raises(UsageError, match="no such file"):
        load_run(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{\n  nope")
    with pytest.raises(UsageError, match=r"broken\.json:2: malformed JSON"):
        load_run(tmp_path / "broken.json")
