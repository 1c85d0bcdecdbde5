"""``rag eval`` end to end: a tiny BEIR folder, a real LanceDB store in tmp_path, the real CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from tests.clirun import rag

CORPUS = [
    ("d1", "Cats", "Cats purr when they are happy and content."),
    ("d2", "Dogs", "Dogs bark at strangers and wag their tails."),
    ("d3", "Bread", "Bread is baked from flour, water and yeast."),
    ("d4", "Rivers", "Rivers flow from mountains down to the sea."),
    ("d5", "Volcanoes", "Volcanoes erupt with molten lava and ash."),
    ("d6", "Piano", "A piano has eighty-eight keys, black and white."),
]
QUERIES = [("q1", "purring cats"), ("q2", "barking"), ("q3", "not judged")]
# q1: one relevant doc (graded 2), and only d1 mentions cats or purring.
# q2: d2 (barks) and d4 (never matches 'barking' in full-text search) are relevant.
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td3\t0\nq2\td2\t1\nq2\td4\t1\n"


def make_beir(root: Path) -> Path:
    folder = root / "tiny"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in CORPUS))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in QUERIES))
    (folder / "qrels" / "test.tsv").write_text(QRELS)
    return folder


@pytest.fixture
def env(tmp_path: Path) -> tuple[Path, Path]:
    profile = tmp_path / "rag.yaml"
    profile.write_text("store:\n  uri: store\n")
    return make_beir(tmp_path), profile


def test_fts_metrics_match_hand_values_and_the_table_is_reused(env: tuple[Path, Path]) -> None:
    folder, profile = env
    code, out, err = rag("eval", folder, "--profile", profile, "--mode", "fts", "--k", "1,3", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["dataset"] == {
        "name": "tiny",
        "kind": "beir",
        "path": str(folder.resolve()),
        "split": "test",
        "queries": 2,
        "judged_queries": 2,
    }
    assert list(report["stages"]) == ["retrieval"]
    metrics = report["stages"]["retrieval"]["metrics"]
    # q1: d1 at rank 1 -> every metric 1 (P@3 = 1/3).
    # q2: only d2 is found, at rank 1; d4 never: recall@3 = 1/2,
    #     nDCG@3 = 1 / (1 + 1/log2(3)) = 1 / 1.6309298 = 0.6131472.
    assert metrics["recall@3"] == pytest.approx((1 + 0.5) / 2)
    assert metrics["ndcg@3"] == pytest.approx((1 + 1 / (1 + 1 / math.log2(3))) / 2, abs=1e-6)
    assert metrics["precision@3"] == pytest.approx((1 / 3 + 1 / 3) / 2)
    assert metrics["mrr@1"] == 1.0
    assert metrics["map"] == pytest.approx((1 + 0.5) / 2)
    assert report["index"]["documents"] == 6 and report["index"]["reused"] is False
    assert report["stages"]["retrieval"]["tokens"] == 0  # full-text search embeds nothing

    code, out, _ = rag("eval", folder, "--profile", profile, "--mode", "fts", "--k", "1,3", "--json")
    again = json.loads(out)
    assert code == 0 and again["index"]["reused"] is True and again["index"]["embedded"] == 0
    assert again["stages"]["retrieval"]["metrics"] == metrics


def test_table_output_save_compare_and_trec_run(env: tuple[Path, Path], tmp_path: Path) -> None:
    folder, profile = env
    saved, trec = tmp_path / "runs" / "old.json", tmp_path / "run.trec"
    code, out, err = rag("eval", folder, "-p", profile, "--mode", "fts", "--save", saved, "--trec-run", trec)
    assert code == 0, err
    assert "nDCG" in out and "Recall" in out and "p95 ms" in out
    old = json.loads(saved.read_text())
    assert set(old["per_query"]["retrieval"]) == {"q1", "q2"}
    lines = trec.read_text().splitlines()
    assert lines[0].split()[:4] == ["q1", "Q0", "d1", "1"] and lines[0].endswith(" rag-fts")
    assert all(len(line.split()) == 6 for line in lines)

    old["stages"]["retrieval"]["metrics"]["recall@3"] = 0.5  # pretend the last run was worse
    saved.write_text(json.dumps(old))
    code, out, _ = rag("eval", folder, "-p", profile, "--mode", "fts", "--compare", saved, "--json")
    delta = json.loads(out)["compare"]["stages"]["retrieval"]["metrics"]
    assert delta["recall@3"] == {"old": 0.5, "new": 0.75, "delta": 0.25}
    assert delta["ndcg@10"]["delta"] == 0.0
    code, out, _ = rag("eval", folder, "-p", profile, "--mode", "fts", "--compare", saved)
    assert "+0.2500" in out and "±0.0000" in out


def test_gates_fail_with_exit_1_and_one_line_each(env: tuple[Path, Path]) -> None:
    folder, profile = env
    args = ["eval", folder, "-p", profile, "--mode", "fts", "--json"]
    code, out, err = rag(*args, "--min", "recall@3=0.9", "--min", "ndcg@10=0.5", "--min", "map=0.8")
    assert code == 1
    failed = [line for line in err.splitlines() if line.startswith("gate failed")]
    assert failed == [
        "gate failed: retrieval recall@3 = 0.7500, below the minimum 0.9",
        "gate failed: retrieval map = 0.7500, below the minimum 0.8",
    ]
    assert json.loads(out)["gates"]["failed"] == failed
    code, _, err = rag(*args, "--min", "recall@3=0.75", "--min", "mrr@7=1")  # k 7 is added to the cut-offs
    assert code == 0, err


@pytest.mark.parametrize(
    "bad",
    [["--min", "ndcg@10"], ["--min", "ndcg@10=1.5"], ["--min", "bleu@4=0.2"], ["--k", "0,5"], ["--mode", "semantic"], ["--split", "dev"]],
)
def test_bad_arguments_exit_2(env: tuple[Path, Path], bad: list[str]) -> None:
    folder, profile = env
    code, out, err = rag("eval", folder, "-p", profile, *bad)
    assert code == 2
    assert err.startswith("error: ") and out == ""


def test_missing_dataset_and_bad_compare_file(env: tuple[Path, Path], tmp_path: Path) -> None:
    folder, profile = env
    code, _, err = rag("eval", tmp_path / "nowhere", "-p", profile)
    assert code == 2 and "does not exist" in err
    (tmp_path / "old.json").write_text("[]")
    code, _, err = rag("eval", folder, "-p", profile, "--compare", tmp_path / "old.json")
    assert code == 2 and "not a run saved by rag eval" in err


def test_rerank_stage_with_the_local_reranker(env: tuple[Path, Path]) -> None:
    folder, profile = env
    code, out, err = rag("eval", folder, "-p", profile, "--mode", "hybrid", "--reranker", "local/minilm-cosine", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert list(report["stages"]) == ["retrieval", "rerank"]
    assert report["config"]["reranker"] == "local/minilm-cosine"
    rerank = report["stages"]["rerank"]
    assert rerank["tokens"] > 0 and rerank["latency_ms"]["p50"] > 0
    lift = report["rerank_lift"]
    assert lift["ndcg@10"] == pytest.approx(rerank["metrics"]["ndcg@10"] - report["stages"]["retrieval"]["metrics"]["ndcg@10"], abs=1e-5)
    # the retrieval embedding table was reused; the profile's other settings did not change
    assert report["index"]["table"].startswith("beir_tiny_")
    code, _, err = rag("eval", folder, "-p", profile, "--reranker", "local/minilm-cosine", "--min", "rerank:ndcg@1=1.01")
    assert code == 2


def test_rerank_gate_without_a_reranker_fails(env: tuple[Path, Path]) -> None:
    folder, profile = env
    code, _, err = rag("eval", folder, "-p", profile, "--mode", "fts", "--min", "rerank:ndcg@10=0.1")
    assert code == 1
    assert "stage 'rerank' did not run" in err


def test_empty_corpus_is_a_usage_error(env: tuple[Path, Path]) -> None:
    folder, profile = env
    (folder / "corpus.jsonl").write_text("")
    code, _, err = rag("eval", folder, "-p", profile)
    assert code == 2 and "corpus.jsonl holds no documents" in err
