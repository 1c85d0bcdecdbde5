"""What ``rag ask`` decides and returns: its settings, the trail of decisions, the result and its JSON.

:class:`Trail` collects every decision while the pipeline in :mod:`rag.ask`
runs (ids and scores per stage, threshold, cache, models, usage, latency);
the ``--json`` object and the trace line are both views of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rag.documents import Hit
from rag.errors import UsageError
from rag.freshness import Staleness
from rag.profile import Profile
from rag.prompt import Numbered
from rag.usage import Ledger

AUTO = "auto"


@dataclass
class Settings:
    """The knobs of one ask; every number defaults to the profile and can be overridden by a flag."""

    top_k: int
    top_n: int
    threshold: float | str  # a number, or "auto": the index's calibrated threshold (see rag.calibrate)
    mode: str | None = None
    where: str | None = None
    model: str | None = None  # chat model; None = chat.model
    rerank: bool = True
    cache: bool = True
    extractive: bool = False  # answer extractively even when a chat model is configured
    stream: bool = True
    refresh: bool = False
    threshold_from: str = "ask.threshold"  # where a number came from: ask.threshold or --threshold

    @classmethod
    def from_profile(cls, profile: Profile, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "top_k": profile.ask.top_k,
            "top_n": profile.ask.top_n,
            "threshold": profile.ask.threshold,
            "stream": profile.chat.stream,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if overrides.get("threshold") is not None:
            values.setdefault("threshold_from", "--threshold")
        return cls(**values)

    def validate(self) -> None:
        from rag.retrieve import validate_options

        validate_options(self.mode, self.top_k)
        if self.top_n < 1:
            raise UsageError(f"--top-n must be at least 1, not {self.top_n}")
        if isinstance(self.threshold, str) and self.threshold != AUTO:
            raise UsageError(f"the threshold must be a number or {AUTO}, not '{self.threshold}'")

    def as_dict(self) -> dict[str, Any]:
        return {"top_k": self.top_k, "top_n": self.top_n, "threshold": self.threshold, "mode": self.mode, "where": self.where}


@dataclass
class AskResult:
    question: str
    answer: str
    extractive: bool
    no_answer: bool
    sources: list[Numbered]  # numbered as in the answer
    cited: list[int]
    invalid: list[int]  # citations removed: they named no source that was given
    weak: bool  # extractive only: even the best sentence hardly matches the question
    trail: Trail
    warnings: list[str] = field(default_factory=list)

    @property
    def cache_hit(self) -> bool:
        return self.trail.cache.get("chat") == "hit"

    def as_dict(self, profile: Profile) -> dict[str, Any]:
        """The ``rag ask --json`` object."""
        t = self.trail
        usage = t.ledger.as_dict(profile)
        return {
            "question": self.question,
            "answer": self.answer,
            "extractive": self.extractive,
            "no_answer": self.no_answer,
            **({"weak": self.weak} if self.extractive else {}),
            "citations": [citation(s, t.score_kind, s.n in self.cited) for s in self.sources],
            "invalid_citations": self.invalid,
            "retrieved": t.retrieved(),
            "index": t.index,
            "models": t.models,
            "usage": {stage: {k: v for k, v in u.items() if k != "cost_usd"} for stage, u in usage.items()},
            "cost": {stage: u.get("cost_usd", 0.0) for stage, u in usage.items()},
            "cache": t.cache_info(),
            "latency_ms": t.latency_ms,
            "stale": t.stale.as_dict(),
            **({"refreshed": t.refreshed} if t.refreshed else {}),
            "warnings": self.warnings,
        }


def citation(source: Numbered, kind: str, cited: bool) -> dict[str, Any]:
    hit = source.hit
    score = hit.scores.get(kind)
    return {
        "n": source.n,
        "id": hit.id,
        "source": hit.source,
        "title": hit.title,
        "heading": hit.heading,
        "score": round(score if score is not None else hit.score, 6),
        "score_kind": kind if score is not None else "hybrid",
        "text": source.text,
        "truncated": source.truncated,
        "cited": cited,
    }


@dataclass
class Trail:
    question: str
    settings: Settings
    generative: bool
    mode: str = "hybrid"
    latency_ms: dict[str, float] = field(default_factory=dict)
    ledger: Ledger = field(default_factory=Ledger)
    candidates: list[Hit] = field(default_factory=list)  # as retrieved, before reranking
    reranked: list[Hit] = field(default_factory=list)
    dropped: list[Hit] = field(default_factory=list)  # below the threshold
    selected: list[Hit] = field(default_factory=list)  # the top n that passed
    # The gate: the value compared, the score it is compared with, and where the value came from:
    # calibrated (auto, from the index), default (auto, the index has no calibration), ask.threshold or --threshold.
    threshold: float = 0.0
    threshold_kind: str = "dense"
    threshold_source: str = ""
    score_kind: str = "dense"  # the score sources are ordered and shown by (rerank when reranked)
    cache: dict[str, str] = field(default_factory=dict)  # stage -> hit | miss | off
    saved: dict[str, Any] = field(default_factory=dict)  # usage a cache hit did not spend
    models: dict[str, Any] = field(default_factory=dict)
    index: dict[str, Any] = field(default_factory=dict)  # table, generation and version that answered
    stale: Staleness = field(default_factory=Staleness)
    refreshed: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    extract: dict[str, Any] = field(default_factory=dict)
    finish_reason: str | None = None
    error: str | None = None

    def result(
        self,
        answer: str,
        sources: list[Numbered],
        *,
        cited: list[int] | None = None,
        invalid: list[int] | None = None,
        no_answer: bool = False,
        weak: bool = False,
    ) -> AskResult:
        extractive = not self.generative and not no_answer
        return AskResult(self.question, answer, extractive, no_answer, sources, cited or [], invalid or [], weak, self, self.warnings)

    def cache_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"enabled": self.settings.cache, "hit": self.cache.get("chat") == "hit", **self.cache}
        if self.saved:
            info["saved"] = self.saved
        return info

    def retrieved(self) -> dict[str, Any]:
        """Ids with their scores at each stage."""
        return {
            "mode": self.mode,
            "candidates": [_scored(h) for h in self.candidates],
            "reranked": [{"id": h.id, "score": round(h.scores["rerank"], 6)} for h in self.reranked] if self.reranked else None,
            "threshold": {
                "value": self.threshold,
                "score": self.threshold_kind,
                "source": self.threshold_source,
                "passed": len(self.candidates) - len(self.dropped),
                "dropped": [{"id": h.id, "score": _round(h.scores.get(self.threshold_kind))} for h in self.dropped],
            },
            "selected": [h.id for h in self.selected],
        }

    def record(self, profile: Profile, result: AskResult | None) -> dict[str, Any]:
        """The trace line: decisions, not document text, and nothing secret."""
        usage = self.ledger.as_dict(profile)
        outcome = "error" if result is None else ("no_answer" if result.no_answer else "answered")
        out: dict[str, Any] = {
            "command": "ask",
            "query": self.question,
            "settings": self.settings.as_dict(),
            "outcome": outcome,
            "index": self.index,
            "models": self.models,
            "retrieved": self.retrieved(),
            "cache": self.cache_info(),
            "usage": usage,
            "latency_ms": self.latency_ms,
            "stale": {"changed": len(self.stale.changed), "removed": len(self.stale.removed)},
        }
        if result is not None:
            out.update(extractive=result.extractive, cited=result.cited, invalid_citations=result.invalid)
        if self.extract:
            out["extract"] = self.extract
        if self.finish_reason:
            out["finish_reason"] = self.finish_reason
        if self.refreshed:
            out["refreshed"] = self.refreshed
        if self.error:
            out["error"] = self.error
        return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _scored(hit: Hit) -> dict[str, Any]:
    return {
        "id": hit.id,
        "source": hit.source,
        "score": round(hit.score, 6),
        "ranks": hit.ranks,
        "scores": {k: round(v, 6) for k, v in hit.scores.items()},
    }
