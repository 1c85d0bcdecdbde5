"""Benchmark `rag serve` as an embedding provider (issue 4).

Embeds the first --limit SciFact documents (title + " " + text) three ways and
prints docs/s for each, interleaved over --rounds slices so that other load on
the machine falls on all three alike:
  - the local model alone, in this process (the ceiling);
  - through `rag serve` (a subprocess on 127.0.0.1), one batch at a time;
  - through `rag serve` with --concurrency batches in flight (the HTTP embedder rag index uses).
Target: the concurrent client keeps the server at >= 90% of the model alone.

    python bench/serve_bench.py [--limit 1000] [--batch 32] [--concurrency 4] [--rounds 4]

The corpus is read in place, never copied into the repo.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from rag.providers.base import Embedder
from serve_process import start_server

DATA = Path(__file__).resolve().parents[2] / "shared/data/scifact-dev"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DATA), help="folder holding corpus.jsonl")
    ap.add_argument("--limit", type=int, default=1000, help="documents to embed")
    ap.add_argument("--batch", type=int, default=32, help="texts per request")
    ap.add_argument("--concurrency", type=int, default=4, help="requests in flight for the concurrent run")
    ap.add_argument("--rounds", type=int, default=4, help="interleave the three runs over this many slices (fair on a busy machine)")
    args = ap.parse_args()

    texts = load(Path(args.data) / "corpus.jsonl", args.limit)
    print(f"corpus: {len(texts)} SciFact docs, batches of {args.batch}, {args.rounds} interleaved rounds, {os.cpu_count()} cores")

    from rag.providers.local import shared_model

    model = shared_model()
    model.encode(texts[:16])  # warm up
    server, url = start_server()
    embedder = http_embedder(url)
    embedder.embed_batch(texts[:4])  # connect, warm up the server's model

    def local(batch_texts: list[str]) -> np.ndarray:
        return model.encode(batch_texts, args.batch)[0]

    def serial(batch_texts: list[str]) -> np.ndarray:
        return np.vstack([embedder.embed_batch(b).vectors for b in split(batch_texts, args.batch)])

    def concurrent(batch_texts: list[str]) -> np.ndarray:
        with ThreadPoolExecutor(args.concurrency) as pool:
            return np.vstack([r.vectors for r in pool.map(embedder.embed_batch, split(batch_texts, args.batch))])

    runs = {"local model alone": local, "rag serve, serial": serial, f"rag serve, {args.concurrency} in flight": concurrent}
    seconds = dict.fromkeys(runs, 0.0)
    drift = 0.0
    try:
        for i, part in enumerate(split(texts, -(-len(texts) // args.rounds))):
            order = list(runs)[i % 3 :] + list(runs)[: i % 3]  # rotate who goes first
            vectors = {}
            for name in order:
                started = time.perf_counter()
                vectors[name] = runs[name](part)
                seconds[name] += time.perf_counter() - started
            reference = vectors["local model alone"]
            drift = max([drift, *(float(np.abs(v - reference).max()) for v in vectors.values())])
    finally:
        server.terminate()
        server.wait(timeout=30)
    alone = len(texts) / seconds["local model alone"]
    for name, spent in seconds.items():
        rate = len(texts) / spent
        print(f"{name:<24} {rate:6.1f} docs/s  ({rate / alone:.0%} of the model alone)")
    print(f"max |served - local| vector difference: {drift:.2e}")
    concurrent_rate = len(texts) / seconds[list(runs)[2]]
    verdict = "met" if concurrent_rate >= 0.9 * alone else "NOT met"
    print(f"target (concurrent >= 90% of the model alone): {verdict}")


def split(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def load(path: Path, limit: int) -> list[str]:
    texts = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            doc = json.loads(line)
            texts.append(f"{doc['title']} {doc['text']}")
            if len(texts) == limit:
                break
    return texts


def http_embedder(url: str) -> Embedder:
    from rag.profile import parse_profile
    from rag.providers import make_embedder

    profile = parse_profile(f"providers:\n  serve:\n    kind: openai\n    base_url: {url}\nembedding:\n  model: serve/all-MiniLM-L6-v2\n")
    return make_embedder(profile)


if __name__ == "__main__":
    main()
