"""Benchmark `rag serve` as an embedding provider (issue 4).

Embeds the first --limit SciFact documents (title + " " + text) three ways and
prints docs/s for each:
  - the local model alone, in this process (the ceiling);
  - through `rag serve` (a subprocess on 127.0.0.1), one batch at a time;
  - through `rag serve` with --concurrency batches in flight (the HTTP embedder rag index uses).
Target: the concurrent client keeps the server at >= 90% of the model alone.

    python bench/serve_bench.py [--limit 1000] [--batch 32] [--concurrency 4]

The corpus is read in place, never copied into the repo.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from rag.providers.base import Embedder

DATA = Path(__file__).resolve().parents[2] / "shared/data/scifact-dev"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DATA), help="folder holding corpus.jsonl")
    ap.add_argument("--limit", type=int, default=1000, help="documents to embed")
    ap.add_argument("--batch", type=int, default=32, help="texts per request")
    ap.add_argument("--concurrency", type=int, default=4, help="requests in flight for the concurrent run")
    args = ap.parse_args()

    texts = load(Path(args.data) / "corpus.jsonl", args.limit)
    batches = [texts[i : i + args.batch] for i in range(0, len(texts), args.batch)]
    print(f"corpus: {len(texts)} SciFact docs, {len(batches)} batches of {args.batch}, {os.cpu_count()} cores")

    from rag.providers.local import shared_model

    model = shared_model()
    model.encode(texts[:16])  # warm up
    started = time.perf_counter()
    local_vectors, _ = model.encode(texts, args.batch)
    local = rate(len(texts), started)
    print(f"local model alone:       {local:6.1f} docs/s")

    server, url = start_server()
    try:
        embedder = http_embedder(url)
        embedder.embed_batch(texts[:4])  # connect, warm up the server's model
        started = time.perf_counter()
        serial_vectors = np.vstack([embedder.embed_batch(b).vectors for b in batches])
        serial = rate(len(texts), started)
        print(f"rag serve, serial:       {serial:6.1f} docs/s  ({serial / local:.0%} of the model alone)")
        started = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            concurrent_vectors = np.vstack([r.vectors for r in pool.map(embedder.embed_batch, batches)])
        concurrent = rate(len(texts), started)
        print(f"rag serve, {args.concurrency} in flight:  {concurrent:6.1f} docs/s  ({concurrent / local:.0%} of the model alone)")
        stats = httpx.get(f"{url}/health", timeout=10).json()
    finally:
        server.terminate()
        server.wait(timeout=30)
    drift = max(float(np.abs(serial_vectors - local_vectors).max()), float(np.abs(concurrent_vectors - local_vectors).max()))
    print(f"max |served - local| vector difference: {drift:.2e}  (health: {stats['status']})")
    verdict = "met" if concurrent >= 0.9 * local else "NOT met"
    print(f"target (concurrent >= 90% of the model alone): {verdict}")


def load(path: Path, limit: int) -> list[str]:
    texts = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            doc = json.loads(line)
            texts.append(f"{doc['title']} {doc['text']}")
            if len(texts) == limit:
                break
    return texts


def rate(count: int, started: float) -> float:
    return count / (time.perf_counter() - started)


def start_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "rag", "serve", "--port", "0"], stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    match = re.search(r"http://127\.0\.0\.1:\d+", line)
    if not match:
        proc.kill()
        raise SystemExit(f"rag serve did not start: {line}{proc.stderr.read()}")
    return proc, match.group(0)


def http_embedder(url: str) -> Embedder:
    from rag.profile import parse_profile
    from rag.providers import make_embedder

    profile = parse_profile(f"providers:\n  serve:\n    kind: openai\n    base_url: {url}\nembedding:\n  model: serve/all-MiniLM-L6-v2\n")
    return make_embedder(profile)


if __name__ == "__main__":
    main()
