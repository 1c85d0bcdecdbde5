"""``rag eval`` with an HTTP reranker (the fault server on 127.0.0.1): tokens and cost per query."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clirun import rag, write
from test_eval_cli import make_beir


def test_rerank_stage_reports_provider_tokens_and_cost(tmp_path: Path, fault: Any) -> None:
    folder = make_beir(tmp_path)
    write(
        tmp_path / "rag.yaml",
        "store:\n  uri: store\n"
        f"providers:\n  rr:\n    kind: jina\n    base_url: {fault.url}\n    max_retries: 0\n"
        "rerank:\n  model: rr/rerank-x\n  price_per_1m_tokens: 2.0\n",
    )
    result = rag("eval", str(folder), "--mode", "hybrid", "--rerank-depth", "4", "--json", cwd=tmp_path)
    assert result.code == 0, result.err
    report = result.json()
    bodies = fault.bodies("/v1/rerank")
    # two judged queries, each reranking the best chunk of its top 4 documents
    assert [len(b["documents"]) for b in bodies] == [4, 4]
    assert {b["query"] for b in bodies} == {"purring cats", "barking"}
    rerank = report["stages"]["rerank"]
    # the fault server reports 11 tokens per document: 44 per query, at $2 per 1M tokens
    assert rerank["tokens_per_query"] == 44
    assert rerank["cost_per_query_usd"] == 44 * 2.0 / 1e6
    assert report["config"]["reranker"] == "rr/rerank-x" and report["config"]["rerank_depth"] == 4
    # the retrieval stage embedded each query with the local model (counted, free)
    retrieval = report["stages"]["retrieval"]
    assert retrieval["tokens"] > 0 and retrieval["cost_usd"] == 0.0 and retrieval["tokens_counted_locally"]


def test_a_failing_reranker_is_a_provider_error(tmp_path: Path, fault: Any) -> None:
    from fault_server import Reply

    folder = make_beir(tmp_path)
    write(
        tmp_path / "rag.yaml",
        f"store:\n  uri: store\nproviders:\n  rr:\n    kind: jina\n    base_url: {fault.url}\n    max_retries: 0\nrerank:\n  model: rr/rerank-x\n",
    )
    fault.then("/v1/rerank", Reply(500, {"error": {"message": "boom"}}))
    result = rag("eval", str(folder), "--mode", "fts", "--json", cwd=tmp_path)
    assert result.code == 5, result.err
    assert result.err.startswith("error: ") and "Traceback" not in result.err
