"""Metrics against values worked out by hand (log2(3) = 1.5849625, log2(5) = 2.3219281)."""

from __future__ import annotations

import math

import pytest

from rag.documents import Hit
from rag.errors import UsageError
from rag.metrics import (
    Gate,
    compare_metrics,
    document_run,
    evaluate_run,
    failed_gates,
    mean_metrics,
    metric_names,
    parse_gate,
    parse_ks,
    percentile,
    query_metrics,
    rank,
    ranked_scores,
    signed,
)

# q1: graded; d3 is judged but non-relevant (0), d4 relevant but never retrieved.
# q2: one relevant doc, tied in score with a non-relevant one.
# q3: relevant judgements but no hits at all.
# q4: only a zero judgement: no relevant doc, so left out of the mean.
QRELS = {
    "q1": {"d1": 2, "d2": 1, "d3": 0, "d4": 1},
    "q2": {"d7": 1},
    "q3": {"d9": 1},
    "q4": {"d10": 0},
}
RUN = {
    # ranked: d3 (0), d1 (2), d5 (unjudged), d2 (1), d6 (unjudged)
    "q1": {"d3": 0.9, "d1": 0.8, "d5": 0.7, "d2": 0.6, "d6": 0.5},
    # tie at 0.5: trec_eval puts the larger doc id first, so d8 ranks 1 and d7 ranks 2
    "q2": {"d7": 0.5, "d8": 0.5},
    "q4": {"d10": 1.0},
    "q5": {"d1": 1.0},  # not judged at all: ignored
}
KS = (1, 3, 5, 10)

# q1 by hand
# DCG@3  = 2/log2(3)                        = 1.2618595
# DCG@5  = 2/log2(3) + 1/log2(5)            = 1.2618595 + 0.4306766 = 1.6925361
# IDCG@k = 2/log2(2) + 1/log2(3) + 1/log2(4) = 2 + 0.6309298 + 0.5   = 3.1309298  (k >= 3)
# IDCG@1 = 2
Q1 = {
    "ndcg@1": 0.0,
    "ndcg@3": 1.2618595 / 3.1309298,  # 0.4030303
    "ndcg@5": 1.6925361 / 3.1309298,  # 0.5405858
    "ndcg@10": 1.6925361 / 3.1309298,
    "recall@1": 0.0,
    "recall@3": 1 / 3,
    "recall@5": 2 / 3,
    "recall@10": 2 / 3,
    "precision@1": 0.0,
    "precision@3": 1 / 3,
    "precision@5": 2 / 5,
    "precision@10": 2 / 10,  # divides by k although only 5 were returned
    "mrr@1": 0.0,
    "mrr@3": 1 / 2,
    "mrr@5": 1 / 2,
    "mrr@10": 1 / 2,
    # AP: relevant at ranks 2 and 4 -> (1/2 + 2/4) / 3 relevant
    "map": (1 / 2 + 2 / 4) / 3,
    "map@1": 0.0,
    "map@3": (1 / 2) / 3,
    "map@5": (1 / 2 + 2 / 4) / 3,
    "map@10": (1 / 2 + 2 / 4) / 3,
}
# q2 by hand: d7 at rank 2 -> DCG = 1/log2(3) = 0.6309298, IDCG = 1
Q2 = {
    "ndcg@1": 0.0,
    "ndcg@3": 0.6309298,
    "recall@1": 0.0,
    "recall@3": 1.0,
    "precision@1": 0.0,
    "precision@3": 1 / 3,
    "precision@5": 1 / 5,
    "mrr@1": 0.0,
    "mrr@3": 0.5,
    "map": 0.5,
    "map@1": 0.0,
}


def test_rank_breaks_ties_by_doc_id_descending() -> None:
    assert rank({"a": 1.0, "c": 2.0, "b": 2.0, "d": 0.5}) == ["c", "b", "a", "d"]
    assert rank({"d7": 0.5, "d8": 0.5}) == ["d8", "d7"]


def test_query_metrics_graded_by_hand() -> None:
    got = query_metrics(rank(RUN["q1"]), QRELS["q1"], KS)
    assert set(got) == set(metric_names(KS))
    for name, want in Q1.items():
        assert got[name] == pytest.approx(want, abs=1e-6), name


def test_tie_and_single_relevant_by_hand() -> None:
    got = query_metrics(rank(RUN["q2"]), QRELS["q2"], KS)
    for name, want in Q2.items():
        assert got[name] == pytest.approx(want, abs=1e-6), name


def test_evaluate_run_covers_judged_queries_only() -> None:
    per_query = evaluate_run(RUN, QRELS, KS)
    assert sorted(per_query) == ["q1", "q2", "q3"]  # q4 has no relevant doc, q5 no judgement
    assert all(value == 0.0 for value in per_query["q3"].values())  # judged but no hits


def test_mean_over_queries_with_relevant_judgements() -> None:
    mean = mean_metrics(evaluate_run(RUN, QRELS, KS))
    # (q1 + q2 + q3) / 3
    assert mean["mrr@3"] == pytest.approx((0.5 + 0.5 + 0) / 3)
    assert mean["ndcg@3"] == pytest.approx((0.4030303 + 0.6309298 + 0) / 3, abs=1e-6)  # 0.3446534
    assert mean["recall@3"] == pytest.approx((1 / 3 + 1 + 0) / 3)
    assert mean["precision@1"] == 0.0
    assert mean["map"] == pytest.approx((1 / 3 + 1 / 2 + 0) / 3)
    assert mean_metrics({}) == {}


def test_graded_gain_is_the_relevance_not_binary() -> None:
    # rel 3 at rank 2 and rel 1 at rank 1; ideal has 3 first.
    # DCG = 1/1 + 3/log2(3) = 1 + 1.8927893 = 2.8927893; IDCG = 3 + 1/log2(3) = 3.6309298
    got = query_metrics(["b", "a"], {"a": 3, "b": 1}, [2])
    assert got["ndcg@2"] == pytest.approx(2.8927893 / 3.6309298, abs=1e-6)  # 0.7967
    assert got["precision@2"] == 1.0


def test_ideal_counts_relevant_docs_never_retrieved() -> None:
    # one of two relevant docs at rank 1: DCG = 1, IDCG@10 = 1 + 1/log2(3) = 1.6309298
    got = query_metrics(["a", "x", "y"], {"a": 1, "b": 1}, [10])
    assert got["ndcg@10"] == pytest.approx(1 / 1.6309298, abs=1e-6)
    assert got["recall@10"] == 0.5


def _hit(source: str, score: float) -> Hit:
    return Hit(id=f"{source}#{score}", source=source, title="", heading="", text="", score=score)


def test_document_run_keeps_each_documents_best_chunk() -> None:
    hits = [_hit("A", 0.9), _hit("B", 0.8), _hit("A", 0.7), _hit("C", 0.6)]
    assert document_run(hits) == {"A": 0.9, "B": 0.8, "C": 0.6}


def test_document_run_ties_stay_ties_for_trec_eval() -> None:
    hits = [_hit("A", 0.5), _hit("B", 0.5), _hit("C", 0.3)]
    assert rank(document_run(hits)) == ["B", "A", "C"]


def test_ranked_scores_keep_the_order_when_scores_increase() -> None:
    # a reranked head (cosine) then the retrieval tail (BM25): scores become 3, 2, 1
    run = ranked_scores([("A", 0.9), ("B", 0.1), ("C", 7.5)])
    assert run == {"A": 3.0, "B": 2.0, "C": 1.0}
    assert rank(run) == ["A", "B", "C"]


def test_percentile_interpolates_like_numpy() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 50) == 25.0
    assert percentile(values, 95) == pytest.approx(38.5)  # 30 + 0.85 * 10
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) == 0.0


@pytest.mark.parametrize(
    ("text", "gate"),
    [
        ("ndcg@10=0.70", Gate("ndcg@10", 0.70)),
        ("Recall@100=0.9", Gate("recall@100", 0.9)),
        ("P@5=0.2", Gate("precision@5", 0.2)),
        ("ndcg_cut_10=0.5", Gate("ndcg@10", 0.5)),
        ("map=0.3", Gate("map", 0.3)),
        ("rerank:mrr@10=0.5", Gate("mrr@10", 0.5, "rerank")),
    ],
)
def test_parse_gate(text: str, gate: Gate) -> None:
    assert parse_gate(text) == gate


@pytest.mark.parametrize("text", ["ndcg@10", "ndcg@10=high", "ndcg@0=0.5", "bleu@10=0.5", "ndcg=0.5", "ndcg@10=1.5", "x:ndcg@10=0.5"])
def test_parse_gate_rejects_bad_arguments(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_gate(text)
    assert info.value.exit_code == 2
    assert text in str(info.value)


def test_failed_gates_one_line_each_on_the_last_stage() -> None:
    stages = {"retrieval": {"ndcg@10": 0.5, "recall@100": 0.95}, "rerank": {"ndcg@10": 0.65, "recall@100": 0.95}}
    gates = [parse_gate("ndcg@10=0.7"), parse_gate("recall@100=0.9"), parse_gate("retrieval:ndcg@10=0.6")]
    lines = failed_gates(gates, stages)
    assert lines == [
        "gate failed: rerank ndcg@10 = 0.6500, below the minimum 0.7",
        "gate failed: retrieval ndcg@10 = 0.5000, below the minimum 0.6",
    ]
    assert failed_gates([parse_gate("rerank:ndcg@10=0.1")], {"retrieval": {"ndcg@10": 0.5}})[0].startswith("gate rerank:")


def test_compare_and_signed_deltas() -> None:
    deltas = compare_metrics({"ndcg@10": 0.5, "old": 1.0}, {"ndcg@10": 0.55, "map": 0.3})
    assert [(d.name, d.change) for d in deltas][1:] == [("map", None), ("old", None)]
    assert deltas[0].change == pytest.approx(0.05)
    assert signed(0.05) == "+0.0500"
    assert signed(-0.00404) == "-0.0040"
    assert signed(0.0) == "±0.0000"
    assert signed(None) == "—"
    assert math.isclose(float(signed(0.12345, 2)), 0.12)


def test_parse_ks() -> None:
    assert parse_ks("10, 1,3,10") == [1, 3, 10]
    for bad in ("", "0", "1,x", "5,-1"):
        with pytest.raises(UsageError, match="--k"):
            parse_ks(bad)
