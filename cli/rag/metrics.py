"""Retrieval metrics, as trec_eval / pytrec_eval define them. Pure: no I/O.

A *run* maps a query id to ``{doc_id: score}``; *qrels* map a query id to
``{doc_id: relevance}`` (graded, integers). A document is relevant when its
judged relevance is above 0; unjudged documents count as non-relevant.

Ranking. Like trec_eval, a run is ranked by score descending, ties broken by
doc id *descending* (plain string comparison), so that numbers here match
``trec_eval`` / ``pytrec_eval`` run on the same TREC run file.

Definitions, per query, with ranks starting at 1:

- ``ndcg@k``  (trec_eval ``ndcg_cut_k``) DCG = sum over ranks i <= k of
  rel_i / log2(i + 1), divided by the DCG of the ideal ranking built from
  *all* judged documents of the query sorted by relevance.
- ``recall@k`` relevant documents in the top k / all relevant documents.
- ``precision@k`` (``P_k``) relevant documents in the top k / k, even when
  fewer than k were returned.
- ``mrr@k`` 1 / rank of the first relevant document if it is within the top
  k, else 0 (``recip_rank`` cut at k).
- ``map`` average precision: sum of precision@rank over the ranks of the
  relevant documents retrieved, divided by all relevant documents;
  ``map@k`` (``map_cut_k``) only counts ranks <= k, same divisor.

Aggregation is the mean over queries with at least one relevant judgement
(the BEIR convention); such a query with no hits scores 0 everywhere.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from rag.documents import Hit

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Mapping[str, float]]

MEASURES = ("ndcg", "recall", "precision", "mrr", "map")
DEFAULT_KS = (1, 3, 5, 10, 100)


def rank(scores: Mapping[str, float]) -> list[str]:
    """Doc ids in trec_eval order: score descending, then doc id descending."""
    return [doc for doc, _ in sorted(scores.items(), key=lambda item: (item[1], item[0]), reverse=True)]


def document_run(hits: Iterable[Hit]) -> dict[str, float]:
    """Chunk hits -> document scores: each document keeps its best (first-ranked) chunk."""
    firsts: dict[str, float] = {}
    for hit in hits:
        firsts.setdefault(hit.source, hit.score)
    return ranked_scores(list(firsts.items()))


def ranked_scores(ranking: Sequence[tuple[str, float]]) -> dict[str, float]:
    """Scores for documents given in rank order, such that :func:`rank` gives that order back.

    Scores that never increase down the ranking are kept, so equal scores are
    ordered as trec_eval orders them. Scores that do increase somewhere (a
    distance, or a reranked head followed by the retrieval tail) are not a
    ranking by score; they are replaced by len..1.
    """
    scores = [score for _, score in ranking]
    if all(a >= b for a, b in itertools.pairwise(scores)):
        return dict(ranking)
    return {doc: float(len(ranking) - i) for i, (doc, _) in enumerate(ranking)}


def _dcg(gains: Sequence[int], k: int) -> float:
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains[:k]) if g > 0)


def query_metrics(ranking: Sequence[str], judged: Mapping[str, int], ks: Iterable[int]) -> dict[str, float]:
    """Every measure at every k for one query; ``ranking`` is already in rank order."""
    relevant = {doc for doc, rel in judged.items() if rel > 0}
    gains = [max(judged.get(doc, 0), 0) for doc in ranking]
    ideal = sorted((rel for rel in judged.values() if rel > 0), reverse=True)
    hits = [doc in relevant for doc in ranking]
    first = next((i + 1 for i, hit in enumerate(hits) if hit), None)
    out: dict[str, float] = {}
    n_rel = len(relevant)
    for k in sorted(set(ks)):
        found = sum(hits[:k])
        ideal_dcg = _dcg(ideal, k)
        out[f"ndcg@{k}"] = _dcg(gains, k) / ideal_dcg if ideal_dcg > 0 else 0.0
        out[f"recall@{k}"] = found / n_rel if n_rel else 0.0
        out[f"precision@{k}"] = found / k
        out[f"mrr@{k}"] = 1.0 / first if first is not None and first <= k else 0.0
        out[f"map@{k}"] = _average_precision(hits[:k], n_rel)
    out["map"] = _average_precision(hits, n_rel)
    return out


def _average_precision(hits: Sequence[bool], n_rel: int) -> float:
    if not n_rel:
        return 0.0
    total, found = 0.0, 0
    for i, hit in enumerate(hits):
        if hit:
            found += 1
            total += found / (i + 1)
    return total / n_rel


def metric_names(ks: Iterable[int]) -> list[str]:
    """Every metric key ``query_metrics`` produces, in display order."""
    ks = sorted(set(ks))
    names = [f"{measure}@{k}" for measure in ("ndcg", "recall", "precision", "mrr", "map") for k in ks]
    return [*names, "map"]


def evaluate_run(run: Run, qrels: Qrels, ks: Iterable[int]) -> dict[str, dict[str, float]]:
    """Per query metrics for every query of ``qrels`` with a relevant judgement."""
    ks = sorted(set(ks))
    out: dict[str, dict[str, float]] = {}
    for qid, judged in qrels.items():
        if not any(rel > 0 for rel in judged.values()):
            continue
        out[qid] = query_metrics(rank(run.get(qid, {})), judged, ks)
    return out


def mean_metrics(per_query: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Mean of every metric over the queries given (an empty input gives an empty dict)."""
    if not per_query:
        return {}
    names = next(iter(per_query.values())).keys()
    return {name: sum(q[name] for q in per_query.values()) / len(per_query) for name in names}


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * pct / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass(frozen=True)
class Delta:
    name: str
    old: float | None
    new: float | None

    @property
    def change(self) -> float | None:
        return None if self.old is None or self.new is None else self.new - self.old


def compare_metrics(old: Mapping[str, float], new: Mapping[str, float]) -> list[Delta]:
    """Pairs every metric of either side, in ``new``'s order, then those only in ``old``."""
    names = list(new) + [name for name in old if name not in new]
    return [Delta(name, old.get(name), new.get(name)) for name in names]


def signed(value: float | None, digits: int = 4) -> str:
    """``+0.0123`` / ``-0.0040`` / ``±0.0000``; an em dash when one side is missing."""
    if value is None:
        return "—"
    text = f"{abs(value):.{digits}f}"
    if float(text) == 0:
        return f"±{text}"
    return f"+{text}" if value > 0 else f"-{text}"


# --------------------------------------------------------------------------- CI gates

ALIASES = {"p": "precision", "r": "recall", "rr": "mrr", "ndcg_cut": "ndcg", "map_cut": "map", "recip_rank": "mrr"}
STAGES = ("retrieval", "rerank")
GATE_FORM = "METRIC@K=VALUE, e.g. ndcg@10=0.70 or recall@100=0.9 (optionally stage-prefixed: retrieval:ndcg@10=0.6)"


@dataclass(frozen=True)
class Gate:
    """A minimum for one metric; ``stage`` None means the last stage that ran."""

    metric: str
    minimum: float
    stage: str | None = None

    def __str__(self) -> str:
        prefix = f"{self.stage}:" if self.stage else ""
        return f"{prefix}{self.metric}>={self.minimum:g}"

    @property
    def k(self) -> int | None:
        _, _, k = self.metric.partition("@")
        return int(k) if k else None


def parse_gate(text: str) -> Gate:
    """``ndcg@10=0.70`` -> Gate. Raises UsageError (a bad argument, exit 2)."""
    from rag.errors import UsageError

    def bad(why: str) -> UsageError:
        return UsageError(f"--min '{text}': {why}; write {GATE_FORM}")

    spec, sep, raw_value = text.strip().partition("=")
    if not sep:
        raise bad("missing '=VALUE'")
    stage: str | None = None
    if ":" in spec:
        stage, _, spec = spec.partition(":")
        stage = stage.strip().lower()
        if stage not in STAGES:
            raise bad(f"unknown stage '{stage}' (stages: {', '.join(STAGES)})")
    name, at, raw_k = spec.strip().lower().partition("@")
    if not at and "_" in name and name.rsplit("_", 1)[1].isdigit():
        name, raw_k = name.rsplit("_", 1)  # trec_eval style: ndcg_cut_10, P_5
    name = ALIASES.get(name, name)
    if name not in MEASURES:
        raise bad(f"unknown metric '{name}' (metrics: {', '.join(MEASURES)})")
    if raw_k:
        if not raw_k.isdigit() or int(raw_k) < 1:
            raise bad(f"'{raw_k}' is not a cut-off k of 1 or more")
        metric = f"{name}@{int(raw_k)}"
    elif name == "map":
        metric = "map"
    else:
        raise bad(f"'{name}' needs a cut-off k")
    try:
        minimum = float(raw_value)
    except ValueError:
        raise bad(f"'{raw_value}' is not a number") from None
    if not 0.0 <= minimum <= 1.0:
        raise bad(f"{raw_value} is outside 0..1")
    return Gate(metric, minimum, stage)


def parse_ks(text: str) -> list[int]:
    """``1,3,5,10,100`` -> sorted cut-offs. Raises UsageError (a bad argument, exit 2)."""
    from rag.errors import UsageError

    ks: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise UsageError(f"--k '{text}': '{part}' is not a cut-off of 1 or more; write e.g. --k 1,3,5,10,100")
        ks.add(int(part))
    return sorted(ks)


def failed_gates(gates: Iterable[Gate], stages: Mapping[str, Mapping[str, float]]) -> list[str]:
    """One line per failed gate; ``stages`` maps stage name -> mean metrics, in run order."""
    lines: list[str] = []
    last = list(stages)[-1] if stages else None
    for gate in gates:
        stage = gate.stage or last
        if stage is None or stage not in stages:
            lines.append(f"gate {gate}: stage '{stage}' did not run (configure a reranker for the rerank stage)")
            continue
        value = stages[stage].get(gate.metric)
        if value is None:
            lines.append(f"gate {gate}: {gate.metric} was not computed")
        elif value < gate.minimum:
            lines.append(f"gate failed: {stage} {gate.metric} = {value:.4f}, below the minimum {gate.minimum:g}")
    return lines
