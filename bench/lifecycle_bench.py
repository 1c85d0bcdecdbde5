"""Reindex duration, query unavailability during it, and the disk one previous generation costs.

    nice -n 10 python bench/lifecycle_bench.py [--packages black,marshmallow,werkzeug | --all]

Indexes part of the real corpus (/work/corpus/pkgdocs) with the embedded
model, then starts a polling reader (tests/lifecycle_reader.py: ``rag query``
through the CLI in a loop, a fresh store open per query) and, while it polls:

1. ``rag index --rebuild``: the same model and chunking, every vector from the
   embedding cache: the cost of a shadow rebuild itself;
2. ``rag reindex`` with the chunking changed to 200/24 tokens: every chunk
   new, so really re-embedded.

For each it prints the wall time, the queries answered during it, the failed
ones, the time queries were unavailable (from a failed query's start to the
next answer; the target is 0 ms) and the longest gap between two answers
(which includes the query's own latency). Then the disk of the live generation
and of the previous one kept for rollback.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path("/work/corpus/pkgdocs")
QUERY = "how do I validate a field"


def rag(*args: str, cwd: Path) -> tuple[float, dict[str, Any]]:
    began = time.time()
    proc = subprocess.run([sys.executable, "-m", "rag", *args, "--json"], cwd=cwd, capture_output=True, text=True, env=_env())
    if proc.returncode != 0:
        raise SystemExit(f"rag {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return time.time() - began, json.loads(proc.stdout)


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "RAG_PROFILE"} | {
        "PYTHONPATH": str(REPO),
        "RAG_CEILING_DIRECTORIES": tempfile.gettempdir(),
    }


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")] if path.exists() else []


def availability(lines: list[dict[str, Any]], start: float, end: float) -> dict[str, Any]:
    """Queries that overlapped [start, end]: how many, failed, unavailable ms, longest gap between answers, p50."""
    during = [q for q in lines if q["end"] >= start and q["start"] <= end]
    unavailable, failing_since = 0.0, None
    for q in during:
        if q["code"] != 0 and failing_since is None:
            failing_since = q["start"]
        elif q["code"] == 0 and failing_since is not None:
            unavailable += q["end"] - failing_since
            failing_since = None
    if failing_since is not None:
        unavailable += end - failing_since
    answered = [q["end"] for q in during if q["code"] == 0]
    gaps = [b - a for a, b in itertools.pairwise(answered)]
    return {
        "queries": len(during),
        "failed": sum(q["code"] != 0 for q in during),
        "unavailable_ms": round(unavailable * 1000, 1),
        "longest_gap_ms": round(max(gaps, default=0.0) * 1000, 1),
        "p50_ms": round(statistics.median([(q["end"] - q["start"]) * 1000 for q in during]) if during else 0.0, 1),
        "generations": sorted({q.get("generation") for q in during if q["code"] == 0}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packages", default="black,marshmallow,werkzeug")
    parser.add_argument("--all", action="store_true", help="the whole corpus")
    args = parser.parse_args()
    paths = [str(CORPUS)] if args.all else [str(CORPUS / p) for p in args.packages.split(",")]
    with tempfile.TemporaryDirectory(prefix="lifecycle-bench-") as tmp:
        cwd = Path(tmp)
        (cwd / "rag.yaml").write_text("retrieval:\n  mode: dense\n")
        (cwd / "chunk200.yaml").write_text("retrieval:\n  mode: dense\nchunking:\n  max_tokens: 200\n  overlap: 24\n")
        seconds, first = rag("index", *paths, cwd=cwd)
        print(f"corpus: {', '.join(Path(p).name for p in paths)}: {first['files_seen']} files, {first['chunks_total']:,} chunks")
        print(f"first index: {seconds:.1f} s ({first['embedded_texts']:,} embedded)")
        out, stop = cwd / "reader.jsonl", cwd / "stop"
        reader = subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "lifecycle_reader.py"), str(out), str(stop), QUERY], cwd=cwd, env=_env()
        )
        try:
            while len(read(out)) < 5:
                time.sleep(0.1)
            idle_start = time.time()
            time.sleep(3)
            idle = availability(read(out), idle_start, time.time())
            runs = []
            for name, argv in (
                ("index --rebuild (cached vectors)", ["index", *paths, "--rebuild"]),
                ("reindex, chunking 200/24 (re-embeds)", ["reindex", "--profile", "chunk200.yaml"]),
            ):
                began = time.time()
                seconds, report = rag(*argv, cwd=cwd)
                time.sleep(1.0)  # a few answers from the new generation
                runs.append((name, seconds, report, availability(read(out), began, time.time())))
        finally:
            stop.touch()
            reader.wait(timeout=120)
        print(f"reader idle: {idle['queries']} queries in 3 s, p50 {idle['p50_ms']} ms, longest gap {idle['longest_gap_ms']} ms")
        print()
        print(f"{'run':<38}{'wall s':>8}{'queries':>9}{'failed':>8}{'unavail ms':>12}{'max gap ms':>12}{'p50 ms':>8}")
        for name, seconds, _, stats in runs:
            print(
                f"{name:<38}{seconds:>8.1f}{stats['queries']:>9}{stats['failed']:>8}{stats['unavailable_ms']:>12}"
                f"{stats['longest_gap_ms']:>12}{stats['p50_ms']:>8}"
            )
        rebuilt = runs[1][2]["build"]
        print(
            f"reindex build: {rebuilt['seconds']:.1f} s, {rebuilt['chunks']:,} chunks (live had {rebuilt['live_chunks']:,}), {rebuilt['embedded']:,} embedded"
        )
        _, history = rag("status", "--history", cwd=cwd)
        kept = {g["id"]: g for g in history["generations"] if g.get("disk_bytes")}
        live = kept[history["live"]]
        previous = max((g for g in kept.values() if g["state"] == "retired"), key=lambda g: g["id"])
        print(
            f"disk: live generation {live['id']} {live['disk_bytes'] / 1e6:.1f} MB; previous generation {previous['id']} kept for rollback "
            f"{previous['disk_bytes'] / 1e6:.1f} MB (+{previous['disk_bytes'] / live['disk_bytes']:.0%} of the live one)"
        )
        print(f"generations: {[(g['id'], g['state']) for g in history['generations']]}")


if __name__ == "__main__":
    main()
