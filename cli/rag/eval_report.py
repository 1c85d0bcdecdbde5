"""What ``rag eval`` measured: per-stage runs and scores, and the verdicts drawn from them.

A report carries its own comparison with an earlier saved run and its own
gate results, so the JSON a script reads, the table a person reads and the
exit code a CI job reads all come from one object.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rag.datasets import RUN_FORMAT, EvalSet
from rag.evaluate_answers import AnswerStats
from rag.gates import LatencyGate, failed_max
from rag.metrics import Delta, Gate, compare_metrics, evaluate_run, failed_gates, mean_metrics, percentile
from rag.profile import Profile
from rag.usage import Usage


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

    def latency(self) -> dict[str, float]:
        n = max(len(self.latencies_ms), 1)
        return {
            "p50": round(percentile(self.latencies_ms, 50), 2),
            "p95": round(percentile(self.latencies_ms, 95), 2),
            "mean": round(sum(self.latencies_ms) / n, 2),
        }

    def summary(self, profile: Profile) -> dict[str, Any]:
        from rag.usage import cost as usage_cost

        n = max(len(self.runs), 1)
        tokens = self.usage.input_tokens + self.usage.output_tokens
        cost = usage_cost(profile, self.usage_stage, self.usage)
        return {
            "metrics": {name: round(value, 6) for name, value in self.metrics.items()},
            "latency_ms": self.latency(),
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
    gates: list[Gate] = field(default_factory=list)
    max_gates: list[LatencyGate] = field(default_factory=list)  # --max latency.rerank.p95=300ms
    baseline: tuple[str, dict[str, Any]] | None = None  # (path, a run saved with --save) to compare against

    @property
    def failures(self) -> list[str]:
        """One line per gate that failed (``rag eval`` exits 1 when there is any)."""
        return failed_gates(self.gates, self.stage_metrics()) + failed_max(self.max_gates, self.stage_latency())

    @property
    def final_stage(self) -> str:
        return list(self.stages)[-1]

    def stage_metrics(self) -> dict[str, dict[str, float]]:
        return {name: stage.metrics for name, stage in self.stages.items()}

    def stage_latency(self) -> dict[str, dict[str, float]]:
        return {name: stage.latency() for name, stage in self.stages.items()}

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
            out["rerank_latency_ms"] = self.stages["rerank"].latency()  # the lift's price, for the scenario's SLO
        if self.baseline is not None:
            out["compare"] = self.comparison(out)
        out["gates"] = {"checked": [str(g) for g in [*self.gates, *self.max_gates]], "failed": self.failures}
        if per_query:
            out["per_query"] = {name: stage.per_query for name, stage in self.stages.items()}
            if self.answers:
                out["per_query"]["answers"] = self.answers.per_query
        return out

    def comparison(self, new: dict[str, Any]) -> dict[str, Any]:
        """Signed deltas per stage against the baseline run: metrics and latency."""
        assert self.baseline is not None
        path, old = self.baseline
        stages: dict[str, Any] = {}
        for name, stage in new["stages"].items():
            before = old["stages"].get(name)
            if before is None:
                continue
            rows = compare_metrics(before["metrics"], stage["metrics"])
            latency = compare_metrics(before.get("latency_ms", {}), stage["latency_ms"])
            stages[name] = {"metrics": _deltas(rows, 6), "latency_ms": _deltas(latency, 2)}
        return {"against": path, "config": old.get("config", {}), "stages": stages}


def _deltas(rows: Sequence[Delta], digits: int) -> dict[str, Any]:
    return {d.name: {"old": d.old, "new": d.new, "delta": None if d.change is None else round(d.change, digits)} for d in rows}
