"""The rerank stage with a real (tiny) ONNX cross-encoder: `rag eval` and `rag ask` rerank the fused top k.

The cross-encoder is built by the tests (tests/test_local_models.py); its relevance is recomputed with numpy,
so the order the stage produces is checked against an independent computation, not against rag itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.clirun import rag, write
from tests.test_eval_cli import CORPUS, make_beir
from tests.test_local_models import cross_folder, np_relevance, profile_text

from rag.chunking import context_text


def test_eval_reranks_the_fused_top_k_with_a_cross_encoder(tmp_path: Path) -> None:
    folder = make_beir(tmp_path)
    tiny = cross_folder(tmp_path / "models")
    write(tmp_path / "rag.yaml", profile_text(tmp_path / "models", embed=None, extra="store:\n  uri: store\n"))
    saved = tmp_path / "run.json"
    args = ("eval", folder, "--mode", "hybrid", "--reranker", "mine/tiny-cross", "--rerank-depth", "3", "--save", saved, "--json")
    result = rag(*args, cwd=tmp_path)
    assert result.code == 0, result.err
    report = json.loads(saved.read_text())
    assert list(report["stages"]) == ["retrieval", "rerank"] and report["config"]["reranker"] == "mine/tiny-cross"
    assert report["config"]["retrieval"]["fusion"] == "zscore"
    texts = {i: context_text(t, "", f"{t} {x}") for i, t, x in CORPUS}
    queries = {"q1": "purring cats", "q2": "barking"}
    # The stage's run: the first three documents of retrieval, reordered by the cross-encoder's relevance.
    trec = tmp_path / "run.trec"
    assert rag(*args[:-3], "--trec-run", trec, cwd=tmp_path).code == 0
    ranked: dict[str, list[str]] = {}
    scores: dict[tuple[str, str], float] = {}
    for line in trec.read_text().splitlines():
        qid, _, doc, _, score, _ = line.split()
        ranked.setdefault(qid, []).append(doc)
        scores[qid, doc] = float(score)
    retrieval = rag("eval", folder, "--mode", "hybrid", "--no-rerank", "--trec-run", tmp_path / "r.trec", cwd=tmp_path)
    assert retrieval.code == 0, retrieval.err
    before: dict[str, list[str]] = {}
    for line in (tmp_path / "r.trec").read_text().splitlines():
        qid, _, doc, _, _, _ = line.split()
        before.setdefault(qid, []).append(doc)
    for qid, query in queries.items():
        head = before[qid][:3]
        # The fused top 3 went to the cross-encoder and came back with its relevance, as numpy computes it.
        assert sorted(ranked[qid][:3]) == sorted(head)
        assert [scores[qid, d] for d in ranked[qid][:3]] == pytest.approx(
            [np_relevance(tiny, query, texts[d]) for d in ranked[qid][:3]], abs=1e-5
        )
        assert ranked[qid][3:] == before[qid][3:]  # below the depth, retrieval's order follows
    lift = report["rerank_lift"]["ndcg@10"]
    stages = report["stages"]
    assert lift == pytest.approx(stages["rerank"]["metrics"]["ndcg@10"] - stages["retrieval"]["metrics"]["ndcg@10"], abs=2e-6)
