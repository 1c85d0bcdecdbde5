"""Benchmark `rag ask` in extractive mode on SciFact: warm in-process latency, one cold process, and citation quality.

    RAG_PROFILE=/tmp/bench1/rag.yaml python bench/ask_bench.py [-n 50] [--data ../shared/data/scifact-dev]

Needs an index of the SciFact corpus, one Markdown file per document named
<doc id>.md (bench/index_bench.py --work DIR builds one). The index is only
read: the answer cache and traces are switched off for the run.

Prints:
  - warm: p50/p95/mean of `Asker.ask` over n claims in one process (model and table loaded once), and p50 per stage;
  - cold: wall time of one `python -m rag ask ... --json` process, with its own stage latencies;
  - quality: share of answers that cite at least one judged-relevant document, and the share of cited sources that are.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/scifact-dev"))
    ap.add_argument("-n", type=int, default=50, help="claims to ask, after 3 warm-up asks")
    ap.add_argument("--profile", default=os.environ.get("RAG_PROFILE"), help="profile of the SciFact index (default: $RAG_PROFILE)")
    args = ap.parse_args()
    if not args.profile:
        sys.exit("pass --profile or set RAG_PROFILE to the profile of a SciFact index (see bench/index_bench.py)")
    data = Path(args.data)
    queries = [json.loads(line) for line in (data / "queries.jsonl").open()]
    relevant: dict[str, set[str]] = {}
    with (data / "qrels" / "train.tsv").open() as f:
        for row in csv.DictReader(f, delimiter="\t"):
            relevant.setdefault(row["query-id"], set()).add(row["corpus-id"])
    judged = [q for q in queries if q["_id"] in relevant][: args.n + 3]

    from rag.answer import Settings
    from rag.ask import Asker
    from rag.profile import load_profile

    profile = load_profile(args.profile)
    profile = dataclasses.replace(
        profile, cache=dataclasses.replace(profile.cache, enabled=False), trace=dataclasses.replace(profile.trace, path=None)
    )
    settings = Settings.from_profile(profile, cache=False, extractive=True)
    t0 = time.perf_counter()
    asker = Asker(profile, cache=False, rerank=False)
    for q in judged[:3]:
        asker.ask(q["text"], settings)
    print(f"warm-up: 3 asks, {time.perf_counter() - t0:.1f} s including model and table load")

    totals: list[float] = []
    stages: dict[str, list[float]] = {}
    answered_with_relevant = 0
    cited_relevant = cited_all = 0
    for q in judged[3:]:
        started = time.perf_counter()
        result = asker.ask(q["text"], settings)
        totals.append((time.perf_counter() - started) * 1000)
        for stage, ms in result.trail.latency_ms.items():
            stages.setdefault(stage, []).append(ms)
        cited = {Path(s.hit.source).stem for s in result.sources if s.n in result.cited}
        hits = cited & relevant[q["_id"]]
        answered_with_relevant += bool(hits)
        cited_relevant += len(hits)
        cited_all += len(cited)
    n = len(totals)
    print(f"warm ({n} claims, extractive, {settings.mode or profile.retrieval.mode}, top_k {settings.top_k}, top_n {settings.top_n}):")
    print(f"  p50 {percentile(totals, 0.5):.0f} ms   p95 {percentile(totals, 0.95):.0f} ms   mean {statistics.mean(totals):.0f} ms")
    print("  per stage p50: " + ", ".join(f"{k} {percentile(v, 0.5):.0f} ms" for k, v in stages.items() if k != "total"))
    print(
        f"quality: {answered_with_relevant / n:.0%} of answers cite a judged-relevant abstract; {cited_relevant / max(1, cited_all):.0%} of cited abstracts are judged relevant"
    )

    claim = judged[3]["text"]
    env = {**os.environ, "RAG_PROFILE": args.profile}
    cmd = [sys.executable, "-m", "rag", "ask", claim, "--json", "--extractive", "--no-cache"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 10):
        sys.exit(f"cold run failed ({proc.returncode}): {proc.stderr.strip()}")
    inner = json.loads(proc.stdout)["latency_ms"]
    print(
        f"cold process: {wall:.2f} s wall (python -m rag ask '{claim[:40]}…' --json); inside: "
        + ", ".join(f"{k} {v:.0f} ms" for k, v in inner.items())
    )


if __name__ == "__main__":
    main()
