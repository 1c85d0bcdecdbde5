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
import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.datasets import EvalSet, iter_corpus, table_name
from rag.documents import Hit
from rag.errors import UsageError
from rag.eval_report import EvalReport, Stage
from rag.evaluate_answers import answer_questions, wanted
from rag.events import EvalEvents, Silent
from rag.metrics import document_run, ranked_scores
from rag.profile import Profile
from rag.providers.base import Reranker

if TYPE_CHECKING:
    from rag.store import Store

CHUNKS_PER_DOC = 2
QUERY_BATCH = 32  # queries retrieved together: embedded in one batch, searched by one matrix product


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

    def stage(self, name: str) -> None:
        pass

    def warn(self, message: str) -> None:
        self.events.warn(message)


def indexing_settings(profile: Profile) -> str:
    """What, when changed, makes a dataset's table a different table."""
    from rag.indexer import chunk_settings
    from rag.providers import make_embedder

    e = profile.embedding
    version = make_embedder(profile).version  # known without loading the model: a new model build is a new table
    return json.dumps([e.model, version, e.dimensions, e.document_prefix, chunk_settings(profile).as_dict()], sort_keys=True)


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


@dataclass
class EvalRequest:
    """Everything ``rag eval`` can be asked, as the library takes it."""

    dataset: Path
    split: str = "test"
    mode: str | None = None
    ks: str = "1,3,5,10,100"
    limit: int | None = None
    rerank_depth: int | None = None
    reranker: str | None = None  # provider/model overriding rerank.model
    rerank: bool = True
    answers: bool = True  # own-documents sets: answer when a chat model is configured
    extractive: bool = False
    gates: list[str] = field(default_factory=list)  # "ndcg@10=0.70"
    max_gates: list[str] = field(default_factory=list)  # "latency.rerank.p95=300ms"
    compare: Path | None = None  # a run saved with save
    save: Path | None = None
    trec_run: Path | None = None


def run(profile: Profile, request: EvalRequest, events: EvalEvents | None = None) -> EvalReport:
    """Check the request, evaluate, and write what was asked for (saved run, TREC run); gates are in the report."""
    from rag.datasets import load_eval_set, load_run, save_run, write_trec_run
    from rag.gates import parse_max
    from rag.metrics import parse_gate, parse_ks
    from rag.retrieve import validate_options

    gates = [parse_gate(g) for g in request.gates]
    max_gates = [parse_max(g) for g in request.max_gates]
    ks = sorted(set(parse_ks(request.ks)) | {g.k for g in gates if g.k is not None})
    validate_options(request.mode, None)
    baseline = (str(request.compare), load_run(request.compare)) if request.compare else None
    profile = _overridden(profile, request)
    eval_set = load_eval_set(request.dataset, request.split).limited(request.limit)
    report = evaluate(
        profile, eval_set, mode=request.mode, ks=ks, rerank_depth=request.rerank_depth, extractive=request.extractive, events=events
    )
    report.gates, report.max_gates, report.baseline = gates, max_gates, baseline
    if request.save:
        save_run(request.save, report.as_dict(per_query=True))
    if request.trec_run:
        tag = f"rag-{report.config['mode']}" + ("-rerank" if report.final_stage == "rerank" else "")
        write_trec_run(request.trec_run, report.stages[report.final_stage].runs, tag)
    return report


def _overridden(profile: Profile, request: EvalRequest) -> Profile:
    """The profile with the request's reranker and answer choices applied (a copy: the caller's is unchanged)."""
    from rag.profile import provider_config, split_model

    rerank, chat = dataclasses.replace(profile.rerank), dataclasses.replace(profile.chat)
    if request.reranker:
        provider_config(profile, split_model(request.reranker)[0])
        rerank.model = request.reranker
    if not request.rerank:
        rerank.model = None
    if not request.answers:
        chat.model = None
    return dataclasses.replace(profile, rerank=rerank, chat=chat)


def evaluate(
    profile: Profile,
    eval_set: EvalSet,
    *,
    mode: str | None = None,
    ks: Sequence[int] = (1, 3, 5, 10, 100),
    rerank_depth: int | None = None,
    extractive: bool = False,
    events: EvalEvents | None = None,
    store: Store | None = None,
) -> EvalReport:
    """Index (BEIR) or open (own documents) the table, run every query, score every stage. ``store``: own documents
    are looked up in that generation instead of the live one (``rag reindex`` evaluates a shadow)."""
    from rag.providers import make_reranker
    from rag.retrieve import Retriever

    ev = events or Silent()
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
    retriever = Retriever(profile, table, store=store if eval_set.kind == "docs" else None)
    if eval_set.kind == "docs":
        _warn_unindexed(eval_set, set(retriever.snapshot.file_states()), ev)
    if mode != "fts":
        retriever.embed_queries(["warm-up"])  # load the model once, outside the timings
    reranker = make_reranker(profile)
    rerank_depth = rerank_depth or profile.ask.top_k  # what rag ask reranks
    depth = max(ks[-1], rerank_depth) if reranker else ks[-1]
    stages = {"retrieval": Stage("retrieval", "embed")}
    if reranker is not None:
        stages["rerank"] = Stage("rerank", "rerank")
    spent = retriever.usage.copy()
    ev.phase("queries", len(eval_set.queries))
    items = list(eval_set.queries.items())
    for start in range(0, len(items), QUERY_BATCH):
        batch = items[start : start + QUERY_BATCH]
        began = time.perf_counter()
        results = retriever.search_many([text for _, text in batch], mode=mode, top_k=depth * CHUNKS_PER_DOC)
        each = (time.perf_counter() - began) * 1000 / len(batch)  # batched: the latency per query is the batch's share
        for (qid, text), hits in zip(batch, results, strict=True):
            stages["retrieval"].latencies_ms.append(each)
            docs = _best_chunks(hits)[:depth]
            stages["retrieval"].runs[qid] = document_run(docs[: ks[-1]])
            if reranker is not None:
                _rerank(reranker, text, docs, rerank_depth, ks[-1], qid, stages["rerank"])
            ev.advance()
    stages["retrieval"].usage = retriever.usage - spent
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
            "retrieval": _retrieval_config(profile),
            "reranker": reranker.ref if reranker else None,
            "rerank_depth": rerank_depth if reranker else None,
            "retrieval_depth_chunks": depth * CHUNKS_PER_DOC,
            "query_batch": QUERY_BATCH,
            "profile": profile.source,
        },
        index=index,
        stages=stages,
        answers=answers,
        seconds={"index": indexed - started, "queries": queried - indexed, "answers": finished - queried, "total": finished - started},
    )


def _retrieval_config(profile: Profile) -> dict[str, Any]:
    r = profile.retrieval
    return {"fusion": r.fusion, "weights": r.weights, "rrf_k": r.rrf_k, "candidates": r.candidates, "aggregate": r.aggregate}


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
