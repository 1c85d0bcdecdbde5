"""Benchmark the gateway mode of `rag serve` (issue 16): what routing, budgeting and accounting add to a call.

Starts two `rag serve` processes on 127.0.0.1: an upstream (the local models, standing in for a provider)
and a gateway whose profile routes `up/all-MiniLM-L6-v2` to it, with a price, a budget and a team token.
Then sends the same kind of /v1/embeddings request (--batch short texts, each request different) three
ways, interleaved over --rounds so other load on the machine falls on all alike:
  - direct to the upstream;
  - through the gateway, cache skipped ("cache": false): auth, chain, budget estimate, ledger write;
  - through the gateway, answered from its cache (the same body again).
Prints p50/p95 latency per way and the ratios against direct.

    python bench/gateway_bench.py [--requests 60] [--batch 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from serve_process import start_server

TOKEN = "bench-team-token-0001"


def start_gateway(upstream: str, folder: Path) -> tuple[subprocess.Popen[str], str]:
    (folder / "rag.yaml").write_text(
        f"""providers:
  up: {{kind: openai, base_url: "{upstream}", max_retries: 0}}
gateway:
  tokens:
    bench: {{token_env: RAG_BENCH_TOKEN, per_day: 1000}}
  prices:
    up/all-MiniLM-L6-v2: {{input_per_1m_tokens: 0.02}}
budget:
  per_day: 1000
""",
        encoding="utf-8",
    )
    return start_server(folder, {**os.environ, "RAG_BENCH_TOKEN": TOKEN})


def timed(call: Callable[[], httpx.Response]) -> float:
    started = time.perf_counter()
    response = call()
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"HTTP {response.status_code}: {response.text[:200]}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=60, help="requests per way")
    ap.add_argument("--batch", type=int, default=8, help="texts per request")
    ap.add_argument("--rounds", type=int, default=3, help="interleave the three ways over this many slices")
    args = ap.parse_args()

    upstream, up_url = start_server()
    with tempfile.TemporaryDirectory() as folder:
        gateway, gw_url = start_gateway(up_url, Path(folder))
        try:
            run(args, up_url, gw_url)
        finally:
            gateway.terminate()
            upstream.terminate()


def run(args: argparse.Namespace, up_url: str, gw_url: str) -> None:
    client = httpx.Client(timeout=60)
    auth = {"authorization": f"Bearer {TOKEN}"}

    def texts(i: int) -> list[str]:
        return [f"request {i} text {j}: the quick brown fox jumps over the lazy dog" for j in range(args.batch)]

    def direct(i: int) -> float:
        return timed(lambda: client.post(up_url + "/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": texts(i)}))

    def through(i: int) -> float:
        body = {"model": "up/all-MiniLM-L6-v2", "input": texts(10_000 + i), "cache": False}
        return timed(lambda: client.post(gw_url + "/v1/embeddings", json=body, headers=auth))

    warm = {"model": "up/all-MiniLM-L6-v2", "input": texts(-1)}
    client.post(gw_url + "/v1/embeddings", json=warm, headers=auth)  # fills the cache for the third way

    def cached(i: int) -> float:
        return timed(lambda: client.post(gw_url + "/v1/embeddings", json=warm, headers=auth))

    for warmup in (direct, through, cached):
        warmup(-2)
    ways = {"direct": direct, "gateway": through, "gateway, cache hit": cached}
    times: dict[str, list[float]] = {name: [] for name in ways}
    per_round = max(1, args.requests // args.rounds)
    for r in range(args.rounds):
        for name, way in ways.items():
            times[name] += [way(r * per_round + i) for i in range(per_round)]

    print(f"{per_round * args.rounds} requests per way, {args.batch} texts each, {args.rounds} interleaved rounds, {os.cpu_count()} cores")
    base = statistics.median(times["direct"])
    for name, values in times.items():
        values.sort()
        p50, p95 = statistics.median(values), values[int(0.95 * (len(values) - 1))]
        print(f"  {name:<18} p50 {p50 * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms   p50 / direct {p50 / base:5.2f}x")
    usage = client.get(gw_url + "/v1/usage", headers=auth).json()
    print(
        f"  gateway ledger: {usage['total']['calls']} calls, {usage['total']['cache_hits']} cache hits, {usage['spent']:.8f} {usage['currency']}"
    )


if __name__ == "__main__":
    main()
