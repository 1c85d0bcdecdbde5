"""Load `rag serve` with concurrent /v1/embeddings and /v1/rerank requests from a second process.

Starts `rag serve` as a subprocess on 127.0.0.1 (a free port), then sends
--requests requests (default 1,000), alternating between the two endpoints,
with at most --concurrency in flight (httpx.AsyncClient), and stops by itself
when they are done or at --deadline seconds, whichever comes first. Every
answer is checked (vector count and size; one score per document).

Prints throughput, p50/p95/p99 latency per endpoint, errors (target 0) and
the server's resident memory: idle after start-up, and its peak (VmHWM).

    python bench/load_bench.py [--requests 1000] [--concurrency 32] [--docs 8] [--deadline 300]

Traffic goes to 127.0.0.1 only. Exit status 1 when any request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from serve_process import start_server

DIMENSIONS = 384
SUBJECTS = ["The index", "A reranker", "The embedding cache", "Each commit", "The writer lock", "A hybrid query", "The server", "Chunking"]
VERBS = ["keeps", "scores", "stores", "splits", "returns", "protects", "merges", "streams"]
OBJECTS = [
    "every file whole across a crash",
    "documents against the question",
    "vectors by the hash of their text",
    "Markdown at its headings",
    "the best passages first",
    "the table from a second writer",
    "dense and full-text hits with reciprocal rank fusion",
    "answers with checked citations",
]


@dataclass
class Endpoint:
    path: str
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    texts: int = 0


def sentence(rng: random.Random) -> str:
    return f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}."


def passage(rng: random.Random) -> str:
    """A sentence or two."""
    return " ".join(sentence(rng) for _ in range(rng.randint(1, 2)))


def requests(count: int, docs: int, seed: int = 7) -> list[tuple[str, dict[str, Any], int]]:
    """(path, body, texts) for each request: embeddings and reranks alternate."""
    rng = random.Random(seed)
    out: list[tuple[str, dict[str, Any], int]] = []
    for i in range(count):
        if i % 2 == 0:
            out.append(("/v1/embeddings", {"model": "all-MiniLM-L6-v2", "input": [passage(rng)]}, 1))
        else:
            body = {"model": "local/minilm-cosine", "query": sentence(rng), "documents": [passage(rng) for _ in range(docs)]}
            out.append(("/v1/rerank", body, docs + 1))
    return out


def check(path: str, body: dict[str, Any], answer: Any) -> str | None:
    """What is wrong with an answer, or None."""
    if path == "/v1/embeddings":
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list) or len(data) != len(body["input"]):
            return "wrong number of vectors"
        if any(len(item.get("embedding") or []) != DIMENSIONS for item in data):
            return f"vectors are not {DIMENSIONS}-dimensional"
        return None
    results = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(results, list) or sorted(r.get("index") for r in results) != list(range(len(body["documents"]))):
        return "not one score per document"
    return None


async def fire(
    url: str, plan: list[tuple[str, dict[str, Any], int]], concurrency: int, deadline: float
) -> tuple[dict[str, Endpoint], float]:
    stats = {path: Endpoint(path) for path in ("/v1/embeddings", "/v1/rerank")}
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=httpx.Timeout(60.0, connect=5.0)) as client:

        async def one(path: str, body: dict[str, Any], texts: int) -> None:
            async with gate:
                started = time.perf_counter()
                try:
                    response = await client.post(path, json=body)
                    problem = f"HTTP {response.status_code}" if response.status_code != 200 else check(path, body, response.json())
                except (httpx.HTTPError, ValueError) as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                elapsed = time.perf_counter() - started
            endpoint = stats[path]
            if problem:
                endpoint.errors.append(problem)
            else:
                endpoint.latencies.append(elapsed)
                endpoint.texts += texts

        tasks = [asyncio.ensure_future(one(*item)) for item in plan]
        started = time.perf_counter()
        _, pending = await asyncio.wait(tasks, timeout=deadline)
        wall = time.perf_counter() - started
        for task in pending:  # past the deadline: stop, and count what never finished as errors
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
            for path, _, _ in [plan[tasks.index(t)] for t in pending]:
                stats[path].errors.append(f"not finished within --deadline {deadline:g}s")
    return stats, wall


def stop_server(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak resident set) of a process, in MB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0]) / 1024
    return out


def percentile_ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q)) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--requests", type=int, default=1000, help="requests in all, alternating embeddings and rerank")
    ap.add_argument("--concurrency", type=int, default=32, help="requests in flight at most")
    ap.add_argument("--docs", type=int, default=8, help="documents per rerank request")
    ap.add_argument("--deadline", type=float, default=300.0, help="stop after this many seconds, whatever is left")
    args = ap.parse_args()

    plan = requests(args.requests, args.docs)
    proc, url = start_server()
    try:
        warm = requests(2 * args.concurrency, args.docs, seed=1)
        asyncio.run(fire(url, warm, args.concurrency, 60.0))  # connections, model and micro-batcher warm
        idle = memory_mb(proc.pid)
        stats, wall = asyncio.run(fire(url, plan, args.concurrency, args.deadline))
        after = memory_mb(proc.pid)
    finally:
        stop_server(proc)

    done = sum(len(s.latencies) for s in stats.values())
    errors = sum(len(s.errors) for s in stats.values())
    print(
        f"rag serve at {url}: {args.requests} requests, {args.concurrency} in flight, {args.docs} documents per rerank, {os.cpu_count()} cores"
    )
    print(f"wall {wall:.2f} s · {done / wall:.1f} requests/s · errors {errors} (target 0)")
    print(f"{'endpoint':<15} {'ok':>5} {'err':>4} {'req/s':>7} {'texts/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for path, s in stats.items():
        lat = s.latencies
        print(
            f"{path:<15} {len(lat):>5} {len(s.errors):>4} {len(lat) / wall:>7.1f} {s.texts / wall:>8.1f} "
            f"{percentile_ms(lat, 50):>8.1f} {percentile_ms(lat, 95):>8.1f} {percentile_ms(lat, 99):>8.1f}"
        )
        for problem in sorted(set(s.errors))[:5]:
            print(f"  error ×{s.errors.count(problem)}: {problem}")
    print(
        f"server memory: {idle['VmRSS']:.0f} MB resident after warm-up, {after['VmRSS']:.0f} MB after the run, "
        f"peak (VmHWM) {after['VmHWM']:.0f} MB"
    )
    raise SystemExit(1 if errors else 0)


if __name__ == "__main__":
    main()
