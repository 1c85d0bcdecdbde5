"""How well ``rag ask`` knows when the documents do not answer: both error rates, per corpus and per method.

    python bench/abstain_bench.py [--work DIR] [--corpora pkgdocs,pkgdocs-lean,scifact,samples,manpages] [--sweep]
    python bench/abstain_bench.py --scale 1000000     # only time the calibration pass over a synthetic table

For each corpus (see bench/abstain_corpora.py) it asks the corpus's real questions
and the held-out off-topic ones (bench/abstain/offtopic.txt) the way ``rag ask``
retrieves them (hybrid, ask.top_k candidates, each with its cosine), and prints
per method the threshold, the false-abstain rate on real questions and the
false-answer rate on off-topic ones:

- ``fixed 0.1``    the old default ask.threshold
- ``default 0.3``  what an index without a calibration (built before rag calibrated) uses
- ``fixed C``      one cosine for every corpus, C tuned on the dev corpus (pkgdocs)
- ``z-score Z``    per query: (best - mean of the other candidates) / their std >= Z, Z tuned on pkgdocs
- ``gap G``        per query: best - mean of the other candidates >= G, G tuned on pkgdocs
- ``fixed bm25 B``  the best full-text (BM25) score >= B, B tuned on pkgdocs (what a number gates in fts mode)
- ``probe max``    the calibration's null distribution at its maximum, plus the margin
- ``calibrated``   what rag ships (rag.calibrate: a quantile of the probes' best cosines plus a margin),
                   computed by rag.calibrate.calibrate_store on the index itself

Tuning picks the constant that minimises false-abstain + false-answer on pkgdocs;
the other corpora are held out. The calibration probes (rag/probes.py) and the
off-topic questions never overlap (checked below). ``--sweep`` also prints the
calibrated rule's errors over a grid of quantiles and margins, per corpus.
The work folder keeps the indexes between runs; the first run embeds ~27,000 chunks (an hour or more on 2 cores).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from abstain_corpora import QUESTIONS, Corpus, prepare, read_questions
from rag.calibrate import DEFAULT_THRESHOLD, MARGIN, QUANTILE, calibrate, calibrate_store, null_scores, probe_vectors
from rag.indexer import open_store
from rag.probes import PROBES
from rag.providers import make_embedder
from rag.retrieve import Retriever

DEV = "pkgdocs"


@dataclass
class Asked:
    """One question's candidates as rag ask sees them before the gate: their cosines, best first."""

    cosines: list[float]
    bm25: float  # the best full-text score among the candidates (0 when full text found nothing)

    @property
    def best(self) -> float:
        return self.cosines[0] if self.cosines else -1.0

    def rest(self) -> list[float]:
        return self.cosines[1:] or [0.0]

    @property
    def gap(self) -> float:
        return self.best - statistics.fmean(self.rest())

    @property
    def z(self) -> float:
        rest = self.rest()
        return (self.best - statistics.fmean(rest)) / max(statistics.pstdev(rest), 1e-6)


@dataclass
class Measured:
    corpus: Corpus
    calibration: dict[str, object]
    probe_best: np.ndarray
    real: list[Asked]
    off: list[Asked]
    questions: dict[str, list[str]]  # "false abstain": the real questions, "false answer": the off-topic ones


def ask_all(retriever: Retriever, questions: list[str], top_k: int) -> list[Asked]:
    out = []
    for q in questions:
        hits = retriever.search(q, mode="hybrid", top_k=top_k)
        cosines = sorted((h.scores["dense"] for h in hits if "dense" in h.scores), reverse=True)
        out.append(Asked(cosines, max((h.scores["fts"] for h in hits if "fts" in h.scores), default=0.0)))
    return out


def measure(corpus: Corpus, offtopic: list[str], limit: int | None) -> Measured:
    profile = corpus.profile
    store = open_store(profile)
    embedder = make_embedder(profile)
    started = time.perf_counter()
    record = calibrate_store(store, embedder)
    print(f"# {corpus.name}: calibrated in {time.perf_counter() - started:.2f} s: {record}", flush=True)
    probe_best = null_scores(store.published(), probe_vectors(embedder, "", store.root))
    retriever = Retriever(profile, store=store)
    real = corpus.real[:limit] if limit else corpus.real
    asked_real, asked_off = ask_all(retriever, real, profile.ask.top_k), ask_all(retriever, offtopic, profile.ask.top_k)
    return Measured(corpus, record, probe_best, asked_real, asked_off, {"false abstain": real, "false answer": offtopic})


Rule = Callable[[Asked], bool]  # True: answer


def rates(m: Measured, answers: Rule) -> tuple[float, float]:
    false_abstain = sum(not answers(a) for a in m.real) / len(m.real)
    false_answer = sum(answers(a) for a in m.off) / len(m.off)
    return false_abstain, false_answer


def tune(dev: Measured, feature: Callable[[Asked], float]) -> float:
    """The cut on ``feature`` that minimises false-abstain + false-answer on the dev corpus (midway between neighbours)."""
    values = sorted({feature(a) for a in dev.real + dev.off})
    cuts = [(x + y) / 2 for x, y in itertools.pairwise(values)] or values
    return min(cuts, key=lambda c: (sum(rates(dev, lambda a, c=c: feature(a) >= c)), c))


def report(measured: list[Measured], sweep: bool) -> None:
    dev = next((m for m in measured if m.corpus.name == DEV), measured[0])
    fixed = tune(dev, lambda a: a.best)
    z = tune(dev, lambda a: a.z)
    gap = tune(dev, lambda a: a.gap)
    bm25 = tune(dev, lambda a: a.bm25)
    print(f"\nconstants tuned on {dev.corpus.name}; calibrated = q{QUANTILE:g} of the probes' best cosines + {MARGIN:g}, per index")
    print(
        f"\n{'corpus':<12} {'chunks':>7} {'real':>5} {'off':>4}  {'method':<14} {'threshold':>9}  {'false abstain':>14}  {'false answer':>13}"
    )
    totals: dict[str, list[float]] = {}
    for m in measured:
        calibrated = float(m.calibration["threshold"])  # type: ignore[arg-type]
        probe_max = float(m.probe_best.max()) + MARGIN
        methods: list[tuple[str, str, Rule]] = [
            ("fixed 0.1", "0.100", lambda a: a.best >= 0.1),
            (f"default {DEFAULT_THRESHOLD:g}", f"{DEFAULT_THRESHOLD:.3f}", lambda a: a.best >= DEFAULT_THRESHOLD),
            ("fixed cosine", f"{fixed:.3f}", lambda a: a.best >= fixed),
            ("z-score", f"{z:.2f}", lambda a: a.z >= z),
            ("gap", f"{gap:.3f}", lambda a: a.gap >= gap),
            ("fixed bm25", f"{bm25:.2f}", lambda a: a.bm25 >= bm25),
            ("probe max", f"{probe_max:.3f}", lambda a, t=probe_max: a.best >= t),
            ("calibrated", f"{calibrated:.3f}", lambda a, t=calibrated: a.best >= t),
        ]
        for i, (name, shown, rule) in enumerate(methods):
            fa, fw = rates(m, rule)
            totals.setdefault(name, []).append(fa + fw)
            head = f"{m.corpus.name:<12} {m.calibration['chunks']!s:>7} {len(m.real):>5} {len(m.off):>4}" if i == 0 else ""
            print(f"{head:<31}  {name:<14} {shown:>9}  {_pct(fa, len(m.real)):>14}  {_pct(fw, len(m.off)):>13}")
        real, off = [a.best for a in m.real], [a.best for a in m.off]
        for kind, asked, wrong in (
            ("false abstain", m.real, lambda a, t=calibrated: a.best < t),
            ("false answer", m.off, lambda a, t=calibrated: a.best >= t),
        ):
            for question, a in zip(m.questions[kind], asked, strict=True):
                if wrong(a):
                    print(f"{'':<31}  calibrated, {kind} ({a.best:.3f}): {question}")
        print(
            f"{'':<31}  best cosine: real median {np.median(real):.3f}, min {min(real):.3f}; "
            f"off-topic median {np.median(off):.3f}, max {max(off):.3f}; probes median {np.median(m.probe_best):.3f}"
        )
        top_n = m.corpus.profile.ask.top_n
        kept = {t: statistics.fmean(min(top_n, sum(c >= t for c in a.cosines)) for a in m.real) for t in (0.1, calibrated)}
        print(f"{'':<31}  sources kept per real question (of {top_n}): {kept[0.1]:.2f} at 0.1, {kept[calibrated]:.2f} calibrated")
        own = tune(m, lambda a: a.best)
        fa, fw = rates(m, lambda a, t=own: a.best >= t)
        print(f"{'':<31}  this corpus's own best cosine cut (hindsight): {own:.3f}, {fa * 100:.1f}% / {fw * 100:.1f}%")
    print("\nmean over the corpora of false abstain + false answer:")
    for name, values in totals.items():
        print(f"  {name:<14} {statistics.fmean(values):.3f}")
    if sweep:
        _sweep(measured)


def _sweep(measured: list[Measured]) -> None:
    print("\ncalibrated rule, false abstain / false answer per corpus, over quantile and margin:")
    for q in (0.5, 0.75, 0.9, 0.95, 1.0):
        for margin in (0.0, 0.03, 0.05, 0.08, 0.1):
            cells = []
            for m in measured:
                t = float(calibrate(m.probe_best, quantile=q, margin=margin)["threshold"])  # type: ignore[arg-type]
                fa, fw = rates(m, lambda a, t=t: a.best >= t)
                cells.append(f"{m.corpus.name} {fa:.2f}/{fw:.2f}")
            print(f"  q{q:<4} +{margin:<4}  " + "  ".join(cells))


def scale(work: Path, rows: int) -> None:
    """Time the calibration's pass over a synthetic table of ``rows`` 384-d vectors (built once in the work folder)."""
    import lance
    import pyarrow as pa

    from rag.store import Snapshot

    path = work / f"scale-{rows}.lance"
    if not path.exists():
        rng = np.random.default_rng(0)
        batches = []
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            flat = pa.array(rng.standard_normal(n * 384, dtype=np.float32))
            batches.append(pa.record_batch([pa.FixedSizeListArray.from_arrays(flat, 384)], names=["vector"]))
        lance.write_dataset(pa.Table.from_batches(batches), str(path))
    snapshot = Snapshot(lance.dataset(str(path)), path)
    probes = np.random.default_rng(1).standard_normal((len(PROBES), 384)).astype(np.float32)
    started = time.perf_counter()
    null_scores(snapshot, probes)
    print(f"calibration pass over {rows:,} chunks ({len(PROBES)} probes): {time.perf_counter() - started:.1f} s")


def _pct(rate: float, n: int) -> str:
    return f"{rate * 100:5.1f}% ({round(rate * n)}/{n})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/rag-abstain-bench"), help="where corpora and indexes are kept")
    parser.add_argument("--corpora", default="pkgdocs,pkgdocs-lean,scifact,samples,manpages")
    parser.add_argument("--limit", type=int, default=None, help="at most this many real questions per corpus")
    parser.add_argument("--sweep", action="store_true", help="also sweep the calibrated rule's quantile and margin")
    parser.add_argument("--scale", type=int, default=0, help="only time the calibration pass over a synthetic table of this many rows")
    args = parser.parse_args()
    if args.scale:
        scale(args.work, args.scale)
        return
    offtopic = read_questions(QUESTIONS / "offtopic.txt")
    leaked = {q.lower().strip() for q in offtopic} & {p.lower().strip() for p in PROBES}
    if leaked:
        raise SystemExit(f"off-topic questions that are also calibration probes: {sorted(leaked)}")
    corpora = prepare(args.work, args.corpora.split(","))
    measured = [measure(c, offtopic, args.limit) for c in corpora]
    report(measured, args.sweep)


if __name__ == "__main__":
    main()
