"""Run an evaluation set through retrieval, then rerank, and score each stage.

Stages. ``retrieval`` ranks documents by their best chunk from the
retriever (dense, fts or hybrid). ``rerank``, when a reranker is configured,
re-scores the best chunk of each of the top ``rerank_depth`` documents
(default ``ask.top_k``, the depth ``rag ask`` reranks), with its title and
heading as ``rag ask`` sends it; the retrieval ranking below that depth
follows unchanged. The difference between the two stages' metrics is the
reranker's lift. Each stage's latency is its own: retrieval, then rerank.

Depth. Several chunks of one document may rank, so the retriever is asked for
``CHUNKS_PER_DOC`` times as many chunks as documents are needed: max(k), or
the rerank depth when larger. ``map`` is computed over max(k) documents.

Answers (own-documents sets, when a chat model is configured or with
``extractive``) are checked by :mod:`rag.evaluate_answers`.

A BEIR corpus is indexed into a table of its own (see
:func:`rag.datasets.table_name`), so it is reused while the corpus and the
profile's indexing settings stay the same; a marker written after a complete
run lets later runs skip even reading the corpus.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from rag.datasets import RUN_FORMAT, EvalSet, iter_corpus, table_name
from rag.documents import Hit
from rag.errors import UsageError
from rag.evaluate_answers import AnswerStats, answer_questions, wanted
from rag.metrics import document_run, evaluate_run, mean_metrics, percentile, ranked_scores
from rag.profile import Profile
from rag.providers.base import Reranker, Usage

CHUNKS_PER_DOC = 2


class EvalEvents(Protocol):
    """What the runner tells its caller (the CLI draws progress bars from it)."""

    def phase(self, name: str, total: int) -> None: ...
    def advance(self, n: int = 1) -> None: ...
    def warn(self, message: str) -> None: ...


class _Silent:
    def phase(self, name: str, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def warn(self, message: str) -> None:
        pass


class _IndexEvents:
    """The indexer's events, forwarded as an "indexing" phase."""

    def __init__(self, events: EvalEvents) -> None:
        self.events = events

    def total(self, files: int) -> None:
        self.events.phase("indexing", files)

    def advance(self, files: int = 0, chunks: int = 0) -> None:
        if files:
            self.events.advance(files)

    def skipped(self, path: str, reason: str, kind: str) -> None:
        self.events.warn(f"skipped {path}: {reason}")

    def warn(self, message: str) -> None:
        self.events.warn(message)


@dataclass
class Stage:
    """One stage's ranked documents, timings and spend, then its scores."""

    name: str
    usage_stage: str  # the rag.usage stage whose price applies: embed or rerank
    runs: dict[str, dict[str, float]] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    per_query: dict[str, dict[str, float]] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    def score(self, eval_set: EvalSet, ks: Sequence[int]) -> None:
        self.per_query = evaluate_run(self.runs, eval_set.qrels, ks)
        self.metrics = mean_metrics(self.per_query)

    def summary(self, profile: Profile) -> dict[str, Any]:
        from rag.usage import cost as usage_cost

        n = max(len(self.runs), 1)
        tokens = self.usage.input_tokens + self.usage.output_tokens
        cost = usage_cost(profile, self.usage_stage, self.usage)
        return {
            "metrics": {name: round(value, 6) for name, value in self.metrics.items()},
            "latency_ms": {
                "p50": round(percentile(self.latencies_ms, 50), 2),
                "p95": round(percentile(self.latencies_ms, 95), 2),
                "mean": round(sum(self.latencies_ms) / n, 2),
            },
            "tokens": tokens,
            "tokens_per_query": round(tokens / n, 2),
            "cost_usd": round(cost, 6),
            "cost_per_query_usd": round(cost / n, 8),
            "tokens_counted_locally": self.usage.counted,
        }


@dataclass
class EvalReport:
    profile: Profile
    dataset: dict[str, Any]
    config: dict[str, Any]
    index: dict[str, Any]
    stages: dict[str, Stage]
    answers: AnswerStats | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def final_stage(self) -> str:
        return list(self.stages)[-1]

    def stage_metrics(self) -> dict[str, dict[str, float]]:
        return {name: stage.metrics for name, stage in self.stages.items()}

    def as_dict(self, per_query: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": RUN_FORMAT,
            "dataset": self.dataset,
            "config": self.config,
            "index": self.index,
            "stages": {name: stage.summary(self.profile) for name, stage in self.stages.items()},
            "answers": self.answers.summary(self.profile) if self.answers else None,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }
        if "rerank" in self.stages:
            base, reranked = self.stages["retrieval"].metrics, self.stages["rerank"].metrics
            out["rerank_lift"] = {name: round(reranked[name] - base[name], 6) for name in reranked if name in base}
        if per_query:
            out["per_query"] = {name: stage.per_query for name, stage in self.stages.items()}
            if self.answers:
                out["per_query"]["answers"] = self.answers.per_query
        return out


def indexing_settings(profile: Profile) -> str:
    """What, when changed, makes a dataset's table a different table."""
    from rag.indexer import chunk_settings

    e = profile.embedding
    return json.dumps([e.model, e.dimensions, e.document_prefix, chunk_settings(profile).as_dict()], sort_keys=True)


def prepare_beir_table(profile: Profile, eval_set: EvalSet, events: EvalEvents) -> dict[str, Any]:
    """Index the corpus into its own table, unless a marker says it is already there."""
    from rag.indexer import index_documents
    from rag.store import open_store

    table = table_name(eval_set.path, indexing_settings(profile))
    store = open_store(profile, table)
    marker_path = store.root / f"{table}.eval.json"
    marker = _read_marker(marker_path)
    if marker and store.exists() and marker.get("table_version") == store.latest().version:
        return {"table": table, "reused": True, "documents": marker["documents"], "chunks": marker["chunks"], "embedded": 0, "seconds": 0.0}
    report = index_documents(profile, iter_corpus(eval_set.path), table=table, prune=True, events=_IndexEvents(events))
    if not report.files_seen:
        raise UsageError(f"{eval_set.corpus_path} holds no documents")
    marker = {"table_version": report.table_version, "documents": report.files_seen, "chunks": report.chunks_total}
    with contextlib.suppress(OSError):  # without a marker the next run re-reads the corpus, and still embeds nothing
        marker_path.write_text(json.dumps(marker), encoding="utf-8")
    return {
        "table": table,
        "reused": report.files_indexed == 0 and report.files_deleted == 0,
        "documents": report.files_seen,
        "chunks": report.chunks_total,
        "embedded": report.embedded_texts,
        "seconds": round(report.seconds, 3),
    }


def _read_marker(path: Any) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def evaluate(
    profile: Profile,
    eval_set: EvalSet,
    *,
    mode: str | None = None,
    ks: Sequence[int] = (1, 3, 5, 10, 100),
    rerank_depth: int | None = None,
    extractive: bool = False,
    events: EvalEvents | None = None,
) -> EvalReport:
    """Index (BEIR) or open (own documents) the table, run every query, score every stage."""
    from rag.providers import make_reranker
    from rag.retrieve import Retriever

    ev = events or _Silent()
    started = time.perf_counter()
    mode = mode or profile.retrieval.mode
    ks = sorted(set(ks))
    if eval_set.kind == "beir":
        index = prepare_beir_table(profile, eval_set, ev)
        table = index["table"]
    else:
        table = profile.store.table
        index = {"table": table, "reused": True}
    indexed = time.perf_counter()
    retriever = Retriever(profile, table)
    if eval_set.kind == "docs":
        _warn_unindexed(eval_set, set(retriever.snapshot.file_states()), ev)
    if mode != "fts":
        _ = retriever.embedder  # load the model once, outside the timings
    reranker = make_reranker(profile)
    rerank_depth = rerank_depth or profile.ask.top_k  # what rag ask reranks
    depth = max(ks[-1], rerank_depth) if reranker else ks[-1]
    stages = {"retrieval": Stage("retrieval", "embed")}
    if reranker is not None:
        stages["rerank"] = Stage("rerank", "rerank")
    ev.phase("queries", len(eval_set.queries))
    for qid, text in eval_set.queries.items():
        began = time.perf_counter()
        hits = retriever.search(text, mode=mode, top_k=depth * CHUNKS_PER_DOC)
        stages["retrieval"].latencies_ms.append((time.perf_counter() - began) * 1000)
        docs = _best_chunks(hits)[:depth]
        stages["retrieval"].runs[qid] = document_run(docs[: ks[-1]])
        if reranker is not None:
            _rerank(reranker, text, docs, rerank_depth, ks[-1], qid, stages["rerank"])
        ev.advance()
    stages["retrieval"].usage = retriever.usage
    for stage in stages.values():
        stage.score(eval_set, ks)
    queried = time.perf_counter()
    answers = None
    if wanted(profile, eval_set, extractive):
        answers = answer_questions(profile, eval_set, mode=mode, extractive=extractive, events=ev)
    finished = time.perf_counter()
    return EvalReport(
        profile=profile,
        dataset=_dataset_info(eval_set),
        config={
            "mode": mode,
            "ks": ks,
            "embedding": profile.embedding.model,
            "chunking": {"max_tokens": profile.chunking.max_tokens, "overlap": profile.chunking.overlap},
            "reranker": reranker.ref if reranker else None,
            "rerank_depth": rerank_depth if reranker else None,
            "retrieval_depth_chunks": depth * CHUNKS_PER_DOC,
            "profile": profile.source,
        },
        index=index,
        stages=stages,
        answers=answers,
        seconds={"index": indexed - started, "queries": queried - indexed, "answers": finished - queried, "total": finished - started},
    )


def _best_chunks(hits: list[Hit]) -> list[Hit]:
    seen: set[str] = set()
    out = []
    for hit in hits:
        if hit.source not in seen:
            seen.add(hit.source)
            out.append(hit)
    return out


def _rerank(reranker: Reranker, query: str, docs: list[Hit], depth: int, max_k: int, qid: str, stage: Stage) -> None:
    """The best chunk of each of the top ``depth`` documents reranked as ``rag ask`` reranks; the rest follow."""
    from rag.rerank import rerank_hits

    head, tail = docs[:depth], docs[depth:]
    began = time.perf_counter()
    if head:
        head, result = rerank_hits(reranker, query, head)
        stage.usage.add(result.usage)
    stage.latencies_ms.append((time.perf_counter() - began) * 1000)
    stage.runs[qid] = ranked_scores([(h.source, h.score) for h in head + tail][:max_k])


def _warn_unindexed(eval_set: EvalSet, indexed: set[str], ev: EvalEvents) -> None:
    missing = sorted({doc for judged in eval_set.qrels.values() for doc in judged if doc not in indexed})
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        ev.warn(f"{len(missing)} expected sources are not in the index (so never retrievable): {shown}; run rag index on them")


def _dataset_info(eval_set: EvalSet) -> dict[str, Any]:
    judged = sum(1 for judged in eval_set.qrels.values() if any(rel > 0 for rel in judged.values()))
    return {
        "name": eval_set.name,
        "kind": eval_set.kind,
        "path": str(eval_set.path.resolve()),
        "split": eval_set.split,
        "queries": len(eval_set.queries),
        "judged_queries": judged,
    }
