"""Token and cost accounting per stage."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from rag.profile import parse_profile
from rag.providers.base import Usage
from rag.tokens import count_tokens
from rag.usage import Ledger, counted, reported_usage

PRICED = parse_profile(
    "embedding:\n  price_per_1m_tokens: 0.02\n"
    "rerank:\n  price_per_1m_tokens: 2.0\n"
    "chat:\n  price_in_per_1m_tokens: 0.5\n  price_out_per_1m_tokens: 1.5\n"
)


def test_cost_per_stage_and_total() -> None:
    ledger = Ledger()
    ledger.add("chat", Usage(input_tokens=2_000, output_tokens=1_000, calls=1))
    ledger.add("embed", Usage(input_tokens=1_000_000, calls=3))
    ledger.add("rerank", Usage(input_tokens=500_000, calls=1, counted=True))
    ledger.add("embed", Usage(input_tokens=500_000, calls=1))
    out = ledger.as_dict(PRICED)
    assert list(out) == ["embed", "rerank", "chat", "total"]
    assert out["embed"] == {"input_tokens": 1_500_000, "output_tokens": 0, "calls": 4, "counted_locally": False, "cost_usd": 0.03}
    assert out["rerank"]["cost_usd"] == 1.0 and out["rerank"]["counted_locally"] is True
    assert out["chat"]["cost_usd"] == 0.0025
    assert out["total"]["cost_usd"] == 1.0325 and out["total"]["calls"] == 6


def test_without_a_profile_there_is_no_cost() -> None:
    ledger = Ledger()
    ledger.add("embed", Usage(input_tokens=5, calls=1))
    assert "cost_usd" not in ledger.as_dict()["embed"]
    assert ledger.as_dict() == {"embed": ledger.usage("embed").as_dict(), "total": ledger.usage("embed").as_dict()}


def test_thread_safe_adds() -> None:
    ledger = Ledger()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: ledger.add("embed", Usage(input_tokens=1, calls=1)), range(1000)))
    assert ledger.usage("embed").input_tokens == 1000


def test_reported_usage_shapes() -> None:
    assert reported_usage({"usage": {"prompt_tokens": 5, "total_tokens": 5}}) == Usage(5, 0, 1)
    assert reported_usage({"usage": {"prompt_tokens": 5, "completion_tokens": 3}}) == Usage(5, 3, 1)
    assert reported_usage({"usage": {"total_tokens": 9}}) == Usage(9, 0, 1)
    assert reported_usage({"meta": {"tokens": {"input_tokens": 12.0, "output_tokens": 0}}}) == Usage(12, 0, 1)
    assert reported_usage({"meta": {"billed_units": {"search_units": 1}}}) is None
    assert reported_usage([{"index": 0, "score": 1.0}]) is None


def test_counted_with_tiktoken() -> None:
    assert counted(["hello world", "x"]) == Usage(count_tokens("hello world") + count_tokens("x"), 0, 1, True)
