"""``rag reindex``: build a new generation beside the live one, evaluate both, switch only if the gates pass.

    build the shadow (rag.indexer, as rag index --rebuild, not switched)
      └─► evaluate the live generation and the shadow on one dataset (lifecycle.eval or --eval)
            └─► gates: --min on the shadow, --max-regression against the live one, --max on latency
                  ├─ pass: one atomic switch makes the shadow live (the old one is kept for rag rollback)
                  └─ fail, or --dry-run: the live one stays; the shadow is kept for a look (rag rollback N takes it)

Every step is crash-safe: until the switch the live generation is untouched
and answers; a build killed midway is resumed by the next ``rag reindex``
with the same settings.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import StoreError, UsageError
from rag.events import IndexEvents
from rag.faults import checkpoint, passed
from rag.lifecycle import BuildRequest, annotate, as_built, record_of, signature, switch_to, with_model
from rag.metrics import failed_gates, parse_gate
from rag.profile import Profile
from rag.store import Store, open_store
from rag.store.generations import Registry

SHOWN_METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10", "map")


@dataclass
class ReindexRequest:
    model: str | None = None  # provider/model instead of embedding.model
    paths: list[Path] = field(default_factory=list)  # default: the folders the live generation was built from
    eval: Path | None = None  # default: lifecycle.eval
    split: str | None = None
    min: list[str] = field(default_factory=list)
    max_regression: list[str] = field(default_factory=list)
    max: list[str] = field(default_factory=list)
    dry_run: bool = False


@dataclass
class Gates:
    min: list[Any]
    max_regression: list[Any]
    max: list[Any]

    @classmethod
    def parse(cls, profile: Profile, request: ReindexRequest) -> Gates:
        from rag.gates import parse_max, parse_regression

        lc = profile.lifecycle
        return cls(
            [parse_gate(g) for g in request.min or lc.min],
            [parse_regression(g) for g in request.max_regression or lc.max_regression],
            [parse_max(g) for g in request.max or lc.max],
        )

    def __bool__(self) -> bool:
        return bool(self.min or self.max_regression or self.max)

    def checked(self) -> list[str]:
        return [*(str(g) for g in self.min), *(f"{g.metric} may drop {g.minimum:g}" for g in self.max_regression), *map(str, self.max)]


def reindex(profile: Profile, request: ReindexRequest, events: IndexEvents | None = None) -> dict[str, Any]:
    """Build, compare, and switch when the gates pass. Returns the comparison (``failed`` lists failed gates)."""
    from rag.indexer import index_paths

    gates = Gates.parse(profile, request)
    dataset = request.eval or (profile.resolve_path(profile.lifecycle.eval) if profile.lifecycle.eval else None)
    if gates and dataset is None:
        raise UsageError("gates need an evaluation set: pass --eval PATH or set lifecycle.eval in the profile")
    live = open_store(profile)
    if not live.exists():
        raise StoreError(f"no index at {live.where} to rebuild yet; run: rag index PATH")
    record = record_of(Registry.load(live.location, live.table_name), live) or {}
    paths = request.paths or [Path(p) for p in record.get("roots") or []]
    if not paths:
        raise UsageError(f"the index at {live.where} does not record the folders it was built from; pass them: rag reindex PATH...")
    build = with_model(profile, request.model) if request.model else profile
    reason = f"reindex --model {request.model}" if request.model else "reindex"
    started = time.perf_counter()
    report = index_paths(build, paths, rebuild=True, events=events, request=BuildRequest(build, signature(profile), reason, switch=False))
    built = report.generation
    new_gen, old_gen = int(built["generation"]), built.get("live_before") or live.generation
    result: dict[str, Any] = {
        "live": old_gen,
        "new": new_gen,
        "model": {"live": _model(record), "new": report.embedding},
        "build": _build_facts(build, report, record, old_gen, live),
        "dataset": str(dataset) if dataset else None,
        "gates": {"checked": gates.checked(), "failed": []},
        "dry_run": request.dry_run,
    }
    if dataset is not None:
        checkpoint("eval")
        old_report = _evaluate(profile, live.table_name, old_gen, record, dataset, request.split or profile.lifecycle.split)
        new_report = _evaluate(build, live.table_name, new_gen, None, dataset, request.split or profile.lifecycle.split)
        passed("eval")
        result["eval"] = {"live": _summary(old_report), "new": _summary(new_report), "mode": new_report.config["mode"]}
        result["gates"]["failed"] = _failures(gates, old_report, new_report)
        annotate(profile, {old_gen: _eval_record(old_report, dataset), new_gen: _eval_record(new_report, dataset)})
    if result["build"]["chunks"] == 0:
        result["gates"]["failed"].append("the new generation holds no chunks")
    result["seconds"] = round(time.perf_counter() - started, 3)
    if result["gates"]["failed"]:
        annotate(profile, {}, reject=new_gen)
        result["switched"] = False
    elif request.dry_run:
        result["switched"] = False
    else:
        switch_to(profile, new_gen, reason, warn=getattr(events, "warn", lambda _m: None))
        result["switched"] = True
    return result


def _model(record: dict[str, Any]) -> dict[str, Any]:
    return dict(record.get("embedding") or record.get("config") or {})


def _build_facts(profile: Profile, report: Any, record: dict[str, Any], old_gen: int, live: Store) -> dict[str, Any]:
    """Duration and completeness of the build, beside what the live generation holds."""
    from rag.usage import cost

    return {
        "seconds": round(report.seconds, 3),
        "files": report.files_seen,
        "files_indexed": report.files_indexed + report.files_unchanged,
        "failures": report.files_skipped,
        "empty": report.files_empty,
        "chunks": report.chunks_total,
        "embedded": report.embedded_texts,
        "from_cache": report.cache_hits,
        "embed_cost_usd": round(cost(profile, "embed", report.usage), 6),
        "live_chunks": record.get("chunks") if record.get("chunks") is not None else live.published().count(),
        "live_files": record.get("files"),
    }


def _evaluate(profile: Profile, table: str, generation: int, record: dict[str, Any] | None, dataset: Path, split: str) -> Any:
    """``rag eval`` on one generation: retrieval and rerank stages, no answers (the gates are on retrieval)."""
    from rag.datasets import load_eval_set
    from rag.evaluate import evaluate

    if record is not None:
        profile = as_built(profile, record)
    profile = dataclasses.replace(profile, chat=dataclasses.replace(profile.chat, model=None))
    return evaluate(profile, load_eval_set(dataset, split), store=open_store(profile, table, generation))


def _summary(report: Any) -> dict[str, Any]:
    out = report.as_dict()
    stages = out["stages"]
    final = stages[report.final_stage]
    return {
        "metrics": {m: final["metrics"].get(m) for m in SHOWN_METRICS if m in final["metrics"]},
        "stage": report.final_stage,
        "latency_ms": {name: s["latency_ms"] for name, s in stages.items()},
        "cost_per_query_usd": round(sum(s["cost_per_query_usd"] for s in stages.values()), 8),
        "queries": out["dataset"]["judged_queries"],
        "index": out["index"],
    }


def _failures(gates: Gates, old: Any, new: Any) -> list[str]:
    from rag.gates import failed_max, failed_regressions

    return (
        failed_gates(gates.min, new.stage_metrics())
        + failed_regressions(gates.max_regression, old.stage_metrics(), new.stage_metrics())
        + failed_max(gates.max, new.stage_latency())
    )


def _eval_record(report: Any, dataset: Path) -> dict[str, Any]:
    summary = _summary(report)
    return {"dataset": str(dataset), "at": time.time(), "metrics": summary["metrics"], "latency_ms": summary["latency_ms"]}
