"""Tokens and cost per stage: ``embed``, ``rerank``, ``chat``.

Providers report usage when they can; otherwise it is counted with tiktoken
and flagged ``counted_locally``. Prices per 1M tokens come from the profile
(``embedding.price_per_1m_tokens``, ``rerank.price_per_1m_tokens``,
``chat.price_in_per_1m_tokens``/``price_out_per_1m_tokens``) and are the
primary model's: a fallback that answered is priced the same.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from rag.profile import Profile
from rag.tokens import count_tokens

STAGES = ("embed", "rerank", "chat")


@dataclass
class Usage:
    """Tokens spent on one stage; ``counted`` means we counted them with tiktoken."""

    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0
    counted: bool = False

    def add(self, other: Usage) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.calls += other.calls
        self.counted = self.counted or other.counted

    def copy(self) -> Usage:
        return Usage(self.input_tokens, self.output_tokens, self.calls, self.counted)

    def __sub__(self, before: Usage) -> Usage:
        """What was spent since ``before`` was copied from the same running total."""
        return Usage(
            self.input_tokens - before.input_tokens, self.output_tokens - before.output_tokens, self.calls - before.calls, self.counted
        )

    def as_dict(self) -> dict[str, int | bool]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "calls": self.calls,
            "counted_locally": self.counted,
        }


def prices(profile: Profile, stage: str) -> tuple[float, float]:
    """(input, output) price per 1M tokens for a stage; zero when unknown."""
    if stage == "embed":
        return profile.embedding.price_per_1m_tokens, 0.0
    if stage == "rerank":
        return profile.rerank.price_per_1m_tokens, 0.0
    if stage == "chat":
        return profile.chat.price_in_per_1m_tokens, profile.chat.price_out_per_1m_tokens
    return 0.0, 0.0


def cost(profile: Profile, stage: str, usage: Usage) -> float:
    price_in, price_out = prices(profile, stage)
    return (usage.input_tokens * price_in + usage.output_tokens * price_out) / 1_000_000


def counted(texts: list[str], encoding: str = "cl100k_base") -> Usage:
    """Usage counted with tiktoken, for providers that report none."""
    return Usage(input_tokens=sum(count_tokens(t, encoding) for t in texts), calls=1, counted=True)


def reported_usage(data: Any) -> Usage | None:
    """Tokens from an OpenAI-style ``usage`` block, or Cohere's ``meta.tokens``; None when absent."""
    if not isinstance(data, dict):
        return None
    usage = data.get("usage")
    if isinstance(usage, dict):
        tokens = usage.get("prompt_tokens") or usage.get("total_tokens") or usage.get("input_tokens")
        if isinstance(tokens, int):
            output = usage.get("completion_tokens") or usage.get("output_tokens") or 0
            return Usage(input_tokens=tokens, output_tokens=output if isinstance(output, int) else 0, calls=1)
    meta = data.get("meta")
    tokens_block = meta.get("tokens") if isinstance(meta, dict) else None
    if isinstance(tokens_block, dict) and isinstance(tokens_block.get("input_tokens"), int | float):
        return Usage(input_tokens=int(tokens_block["input_tokens"]), output_tokens=int(tokens_block.get("output_tokens") or 0), calls=1)
    return None


class Ledger:
    """Usage per stage, summed over a command run. Thread-safe (the indexer embeds from a pool)."""

    def __init__(self) -> None:
        self._stages: dict[str, Usage] = {}
        self._lock = threading.Lock()

    def add(self, stage: str, usage: Usage) -> None:
        with self._lock:
            self._stages.setdefault(stage, Usage()).add(usage)

    def usage(self, stage: str) -> Usage:
        with self._lock:
            total = Usage()
            total.add(self._stages.get(stage, Usage()))
            return total

    def as_dict(self, profile: Profile | None = None) -> dict[str, dict[str, Any]]:
        """``{stage: {input_tokens, output_tokens, calls, counted_locally[, cost_usd]}, ..., "total": {...}}``.

        Stages come in pipeline order; ``cost_usd`` appears only with a profile.
        """
        with self._lock:
            stages = sorted(self._stages.items(), key=lambda kv: (_order(kv[0]), kv[0]))
            out: dict[str, dict[str, Any]] = {}
            total = Usage()
            total_cost = 0.0
            for stage, usage in stages:
                entry: dict[str, Any] = dict(usage.as_dict())
                if profile is not None:
                    entry["cost_usd"] = round(cost(profile, stage, usage), 8)
                    total_cost += entry["cost_usd"]
                out[stage] = entry
                total.add(usage)
        out["total"] = dict(total.as_dict())
        if profile is not None:
            out["total"]["cost_usd"] = round(total_cost, 8)
        return out


def _order(stage: str) -> int:
    return STAGES.index(stage) if stage in STAGES else len(STAGES)
