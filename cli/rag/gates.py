"""Gates beside ``--min``: a ceiling on a stage's latency, and the most a metric may lose against a baseline. Pure.

``--max latency.rerank.p95=300ms`` fails when the rerank stage's 95th
percentile is above 300 ms (``s`` and ``ms`` units; a bare number is ms).
``--max-regression ndcg@10=0.01`` fails when the new run's nDCG@10 is more
than 0.01 below the baseline's (``rag reindex``: the live generation's).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from rag.errors import UsageError
from rag.metrics import Gate, parse_gate

LATENCY_STATS = ("p50", "p95", "mean")
MAX_FORM = "latency.STAGE.STAT=VALUE, e.g. latency.rerank.p95=300ms (STAT: p50, p95 or mean)"


@dataclass(frozen=True)
class LatencyGate:
    stage: str
    stat: str
    limit_ms: float

    def __str__(self) -> str:
        return f"latency.{self.stage}.{self.stat}<={self.limit_ms:g}ms"


def parse_max(text: str) -> LatencyGate:
    """``latency.rerank.p95=300ms`` -> LatencyGate. Raises UsageError (exit 2)."""
    spec, sep, raw = text.strip().partition("=")
    parts = spec.strip().lower().split(".")
    if not sep or len(parts) != 3 or parts[0] != "latency":
        raise UsageError(f"--max '{text}': write {MAX_FORM}")
    _, stage, stat = parts
    if stat not in LATENCY_STATS:
        raise UsageError(f"--max '{text}': unknown statistic '{stat}'; write {MAX_FORM}")
    value = raw.strip().lower()
    scale = 1.0
    if value.endswith("ms"):
        value = value[:-2]
    elif value.endswith("s"):
        value, scale = value[:-1], 1000.0
    try:
        limit = float(value) * scale
    except ValueError:
        raise UsageError(f"--max '{text}': '{raw}' is not a duration; write {MAX_FORM}") from None
    if limit <= 0:
        raise UsageError(f"--max '{text}': the limit must be above 0")
    return LatencyGate(stage, stat, limit)


def failed_max(gates: Iterable[LatencyGate], latency: Mapping[str, Mapping[str, float]]) -> list[str]:
    """One line per failed ceiling; ``latency`` maps stage -> {p50, p95, mean} in ms."""
    lines = []
    for gate in gates:
        stats = latency.get(gate.stage)
        if stats is None:
            ran = ", ".join(latency) or "none"
            lines.append(f"gate {gate}: stage '{gate.stage}' did not run (stages that ran: {ran})")
        elif float(stats[gate.stat]) > gate.limit_ms:
            lines.append(
                f"gate failed: {gate.stage} latency {gate.stat} = {float(stats[gate.stat]):.1f} ms, above the maximum {gate.limit_ms:g} ms"
            )
    return lines


def parse_regression(text: str) -> Gate:
    """``ndcg@10=0.01``: the metric may drop by at most 0.01. The Gate's ``minimum`` holds the tolerance."""
    try:
        gate = parse_gate(text)
    except UsageError as err:
        raise UsageError(str(err).replace("--min", "--max-regression", 1)) from None
    if gate.minimum < 0:
        raise UsageError(f"--max-regression '{text}': the tolerance must be 0 or more")
    return gate


def failed_regressions(gates: Iterable[Gate], old: Mapping[str, Mapping[str, float]], new: Mapping[str, Mapping[str, float]]) -> list[str]:
    """One line per metric that lost more than its tolerance; stages as in :func:`rag.metrics.failed_gates`."""
    lines = []
    last = list(new)[-1] if new else None
    for gate in gates:
        stage = gate.stage or last
        before, after = (old.get(stage or "") or {}).get(gate.metric), (new.get(stage or "") or {}).get(gate.metric)
        if before is None or after is None:
            lines.append(f"gate {gate.metric} may drop {gate.minimum:g}: stage '{stage}' or the metric is missing in one of the runs")
        elif before - after > gate.minimum + 1e-12:
            lines.append(
                f"gate failed: {stage} {gate.metric} dropped {before - after:.4f} ({before:.4f} -> {after:.4f}), "
                f"more than the allowed {gate.minimum:g}"
            )
    return lines
