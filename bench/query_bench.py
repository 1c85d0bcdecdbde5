"""Queries in bulk and cold: `rag query -` throughput, and one cold `rag query` against importing Lance.

    python bench/query_bench.py --store DIR [--queries 1000] [--mode hybrid] [--pairs 5]
    python bench/query_bench.py --build N      # first index N SciFact abstracts into a temp folder

Prints, for ``rag query -`` over ``--queries`` SciFact claims (repeated to reach the count):
wall seconds, queries/s, CPU seconds and peak RSS of the process. Then ``--pairs``
interleaved pairs of a cold ``rag query "..."`` and ``python -c 'import lance, pyarrow'``
(the floor any process that reads the index pays), with the CPU ratio of each pair and
their median: interleaving keeps the ratio honest on a noisy machine.
SciFact (BEIR, CC BY / ODC-By) is read from ../shared/data/scifact-dev; nothing is copied into the repo.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# ../shared/data/scifact-dev from the repo, or from a worktree one level deeper
DATA = next(
    (p / "shared/data/scifact-dev" for p in ROOT.parents if (p / "shared/data/scifact-dev").is_dir()),
    ROOT.parent / "shared/data/scifact-dev",
)


def timed(command: list[str], *, stdin: str | None = None, env: dict[str, str] | None = None) -> tuple[float, float, int, str]:
    """(wall s, cpu s, peak RSS KiB, stdout) of one process, from /usr/bin/time's own accounting."""
    fmt = "%e %U %S %M"
    with tempfile.NamedTemporaryFile("r", suffix=".time") as t:
        done = subprocess.run(
            ["/usr/bin/time", "-o", t.name, "-f", fmt, *command], input=stdin, capture_output=True, text=True, env=env, check=False
        )
        if done.returncode != 0:
            sys.exit(f"{' '.join(command[:4])} failed ({done.returncode}): {done.stderr.strip()[-300:]}")
        wall, user, system, rss = t.read().split()[-4:]
    return float(wall), float(user) + float(system), int(rss), done.stdout


def build(n: int, work: Path) -> Path:
    docs = work / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    with (DATA / "corpus.jsonl").open() as f:
        for i, line in enumerate(f):
            if i >= n:
                break
            d = json.loads(line)
            (docs / f"{d['_id']}.md").write_text(f"# {d['title']}\n\n{d['text']}\n", encoding="utf-8")
    store = work / "store"
    timed([sys.executable, "-m", "rag", "index", str(docs)], env={**os.environ, "RAG_STORE": str(store)})
    return store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", help="an index to query (its folder)")
    ap.add_argument("--build", type=int, metavar="N", help="index the first N SciFact abstracts first")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--mode", default="hybrid")
    ap.add_argument("--pairs", type=int, default=5)
    args = ap.parse_args()
    if not args.store and not args.build:
        sys.exit("give --store DIR or --build N")
    store = Path(args.store) if args.store else build(args.build, Path(tempfile.mkdtemp(prefix="rag-qbench-")))
    env = {**os.environ, "RAG_STORE": str(store)}
    claims = [json.loads(line)["text"] for line in (DATA / "queries.jsonl").open()]
    queries = (claims * (args.queries // len(claims) + 1))[: args.queries]

    rag = [sys.executable, "-m", "rag", "query"]
    wall, cpu, rss, out = timed([*rag, "-", "--mode", args.mode], stdin="\n".join(queries) + "\n", env=env)
    answered = len(out.splitlines())
    print(
        f"rag query - ({args.mode}, {answered} queries): {wall:.1f} s wall, {answered / wall:.1f} q/s, {cpu:.1f} s CPU, peak {rss // 1024} MiB"
    )

    ratios = []
    for _ in range(args.pairs):
        _, cold, cold_rss, _ = timed([*rag, claims[0], "--mode", args.mode], env=env)
        _, floor, floor_rss, _ = timed([sys.executable, "-c", "import lance, pyarrow"])
        ratios.append(cold / floor)
        print(
            f"  cold rag query {cold:.2f} s CPU ({cold_rss // 1024} MiB) / import lance, pyarrow {floor:.2f} s ({floor_rss // 1024} MiB) = {cold / floor:.2f}"
        )
    print(f"cold query CPU / import lance, pyarrow: median {statistics.median(ratios):.2f} over {len(ratios)} pairs")


if __name__ == "__main__":
    main()
