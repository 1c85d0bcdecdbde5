"""Benchmark `rag eval` on a BEIR folder (issue 6): every retrieval mode, then the local reranker.

    python bench/eval_bench.py [--data ../shared/data/scifact-dev] [--split train] [--work DIR]
                               [--rerank-depth 20] [--rerank-limit N]

Runs ``rag eval DATA --split SPLIT --json`` as a subprocess per configuration,
in ``--work`` (default: a fixed temp folder, so the corpus table built by the
first run is reused by the others and by the next bench run), and prints a
Markdown table with each run's wall time. Nothing is written into the repo.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def run(data: Path, split: str, work: Path, extra: list[str]) -> tuple[dict[str, Any], float]:
    cmd = [sys.executable, "-m", "rag", "eval", str(data), "--split", split, "--json", *extra]
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    return json.loads(done.stdout), wall


def row(name: str, report: dict[str, Any], wall: float) -> str:
    stage = report["stages"][list(report["stages"])[-1]]
    m, lat = stage["metrics"], stage["latency_ms"]
    queries = report["dataset"]["queries"]
    tokens = sum(s["tokens_per_query"] for s in report["stages"].values())
    index = report["index"]
    note = "table reused" if index.get("reused") else f"indexed {index['documents']} docs in {index['seconds']:.0f} s"
    cells = [
        name,
        str(queries),
        f"{m['ndcg@10']:.4f}",
        f"{m['recall@100']:.4f}",
        f"{m['mrr@10']:.4f}",
        f"{m['map']:.4f}",
        f"{lat['p50']:.1f} / {lat['p95']:.1f}",
        f"{tokens:.0f}",
        f"{wall:.1f}",
        note,
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/scifact-dev"))
    ap.add_argument("--split", default="train")
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "rag-eval-bench"))
    ap.add_argument("--reranker", default="local/minilm-cosine")
    ap.add_argument("--rerank-depth", type=int, default=20, help="documents reranked per query")
    ap.add_argument("--rerank-limit", type=int, default=None, help="queries for the rerank run (default: all)")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = Path(args.data).resolve()

    runs: list[tuple[str, list[str]]] = [(mode, ["--mode", mode]) for mode in ("dense", "fts", "hybrid")]
    rerank = ["--reranker", args.reranker, "--rerank-depth", str(args.rerank_depth)]
    if args.rerank_limit:
        rerank += ["--limit", str(args.rerank_limit)]
    runs += [(f"{mode} + {args.reranker} top {args.rerank_depth}", ["--mode", mode, *rerank]) for mode in ("fts", "hybrid")]

    lines = [
        f"`rag eval {data.name} --split {args.split} --json` (stage shown: the last one; latency is that stage's own)",
        "",
        "| run | queries | nDCG@10 | Recall@100 | MRR@10 | MAP | p50 / p95 ms | tokens/q | wall s | index |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for name, extra in runs:
        report, wall = run(data, args.split, work, extra)
        (work / f"{name.split()[0]}{'-rerank' if 'rerank' in report['stages'] else ''}.json").write_text(json.dumps(report, indent=2))
        print(row(name, report, wall), flush=True)
        if "rerank_lift" in report:
            lift = report["rerank_lift"]
            before = report["stages"]["retrieval"]["metrics"]
            print(
                f"|   ↳ retrieval stage of the same run | | {before['ndcg@10']:.4f} | {before['recall@100']:.4f} | "
                f"{before['mrr@10']:.4f} | {before['map']:.4f} | | | | lift nDCG@10 {lift['ndcg@10']:+.4f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
