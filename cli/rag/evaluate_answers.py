"""Answer checks for own-documents sets: do ``rag ask``'s citations point at the expected sources?

Runs when a chat model is configured, or in extractive mode (``rag eval
--extractive``), for ``{question, expected_sources}`` sets only. Each
question goes through :class:`rag.ask.Asker` exactly as ``rag ask`` runs it
(retrieve, rerank, threshold, top n, synthesise, check citations), with the
answer cache off so that latency and spend are measured, not remembered.

Shares are over all questions, so they add up with ``no_answer``:

- ``cites_expected``   at least one valid citation names an expected source
- ``no_valid_citation`` no citation survived checking (includes no-answers)
- ``no_answer``         nothing in the index passed the threshold
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from rag.datasets import EvalSet
from rag.events import EvalEvents
from rag.metrics import percentile
from rag.profile import Profile
from rag.providers.base import Usage


@dataclass
class AnswerStats:
    generative: bool
    per_query: dict[str, dict[str, Any]] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)

    def summary(self, profile: Profile) -> dict[str, Any]:
        from rag.usage import cost

        n = max(len(self.per_query), 1)

        def share(key: str) -> float:
            return round(sum(1 for q in self.per_query.values() if q[key]) / n, 6)

        spent = cost(profile, "chat", self.usage)
        return {
            "mode": "chat" if self.generative else "extractive",
            "questions": len(self.per_query),
            "cites_expected": share("cites_expected"),
            "no_valid_citation": share("no_valid_citation"),
            "no_answer": share("no_answer"),
            "latency_ms": {"p50": round(percentile(self.latencies_ms, 50), 2), "p95": round(percentile(self.latencies_ms, 95), 2)},
            "chat_tokens_per_query": round((self.usage.input_tokens + self.usage.output_tokens) / n, 2),
            "chat_cost_per_query_usd": round(spent / n, 8),
        }


def wanted(profile: Profile, eval_set: EvalSet, extractive: bool) -> bool:
    return eval_set.kind == "docs" and (extractive or bool(profile.chat.model))


def answer_questions(profile: Profile, eval_set: EvalSet, *, mode: str | None, extractive: bool, events: EvalEvents) -> AnswerStats:
    from rag.answer import Settings
    from rag.ask import Asker

    asker = Asker(profile, cache=False)
    settings = Settings.from_profile(profile, mode=mode, extractive=extractive, stream=False, cache=False)
    stats = AnswerStats(generative=asker.generative and not extractive)
    warned: set[str] = set()
    events.phase("answers", len(eval_set.queries))
    try:
        for qid, question in eval_set.queries.items():
            result = asker.ask(question, replace(settings))
            for message in result.warnings:
                if message not in warned:
                    warned.add(message)
                    events.warn(message)
            expected = {doc for doc, rel in eval_set.qrels.get(qid, {}).items() if rel > 0}
            cited = sorted({s.hit.source for s in result.sources if s.n in result.cited})
            stats.per_query[qid] = {
                "no_answer": result.no_answer,
                "cites_expected": bool(expected & set(cited)),
                "no_valid_citation": not result.cited,
                "cited_sources": cited,
                "invalid_citations": result.invalid,
            }
            stats.latencies_ms.append(float(result.trail.latency_ms.get("total", 0.0)))
            stats.usage.add(result.trail.ledger.usage("chat"))
            events.advance()
    finally:
        asker.close()
    return stats
