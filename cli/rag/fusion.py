"""Reciprocal rank fusion. Pure.

RRF (Cormack et al., 2009): score(d) = sum over rankings of 1 / (k + rank(d)),
ranks from 1. It needs no score calibration between BM25 and cosine, which is
why it is the default way to fuse dense and full-text results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def rrf(rankings: Mapping[str, Sequence[str]], k: int = 60, weights: Mapping[str, float] | None = None) -> list[tuple[str, float]]:
    """Fuse named rankings of ids; returns (id, score) best first, ties by first appearance."""
    scores: dict[str, float] = {}
    for name, ids in rankings.items():
        weight = 1.0 if weights is None else weights.get(name, 1.0)
        for rank, item in enumerate(ids, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    order = {item: i for i, item in enumerate(scores)}
    return sorted(scores.items(), key=lambda kv: (-kv[1], order[kv[0]]))
