"""Retrieval quality variants on a BEIR folder (issue 13), each one a `rag eval` run with a profile override.

    python bench/quality_bench.py [--data ../shared/data/scifact-dev] [--split train] [--work DIR]
                                  [--only NAME,...] [--rerank-limit N] [--cross-encoder FOLDER]

Every variant is ``rag eval DATA --split SPLIT --profile <variant>.yaml --save <variant>.json`` in ``--work``
(default: a fixed temp folder), so the corpus table is built once and reused by every variant with the same
chunking and embedding settings (fusion, weights and aggregation need no re-index). Variants that change the
chunking index the corpus into a table of their own the first time. Prints a Markdown table (nDCG@10,
Recall@100, MRR@10, query p50), then today's default (RRF) against the chosen default (z-score) with a paired
randomisation test on per-query nDCG@10. Nothing is written into the repo.

``--cross-encoder FOLDER`` (a cross-encoder model folder, see docs/local-models.md) adds rerank runs at depth
10, 20 and 50 with their lift and latency per query; without it the rerank rows use ``local/minilm-cosine``
(the bi-encoder's own cosine, not a cross-encoder).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TODAY = "rrf (the old default)"
CHOSEN = "zscore (default)"

# name -> (profile YAML, extra rag eval arguments)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "dense only": ("", ["--mode", "dense"]),
    "fts only": ("", ["--mode", "fts"]),
    TODAY: ("retrieval: {fusion: rrf}\n", []),
    "rrf k=10": ("retrieval: {fusion: rrf, rrf_k: 10}\n", []),
    "rrf weights dense 2 : fts 3": ("retrieval: {fusion: rrf, weights: {dense: 2, fts: 3}}\n", []),
    CHOSEN: ("", []),
    "zscore weights dense 2 : fts 3": ("retrieval: {weights: {dense: 2, fts: 3}}\n", []),
    "zscore weights dense 3 : fts 2": ("retrieval: {weights: {dense: 3, fts: 2}}\n", []),
    "zscore + document max": ("retrieval: {aggregate: document}\n", []),
    "rrf + document max": ("retrieval: {fusion: rrf, aggregate: document}\n", []),
    "zscore + chunks in MiniLM WordPiece (254)": ("chunking: {encoding: minilm-wordpiece, max_tokens: 254}\n", []),
}


def run(data: Path, split: str, work: Path, name: str, profile: str, extra: list[str]) -> tuple[dict[str, Any], float]:
    slug = "".join(c if c.isalnum() else "-" for c in name).strip("-")
    (work / f"{slug}.yaml").write_text(profile or "{}\n", encoding="utf-8")
    saved = work / f"{slug}.json"
    cmd = [sys.executable, "-m", "rag", "eval", str(data), "--split", split, "--profile", f"{slug}.yaml", "--json", "--save", str(saved)]
    started = time.perf_counter()
    done = subprocess.run([*cmd, *extra], cwd=work, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd + extra)} failed ({done.returncode}): {done.stderr.strip()}")
    return json.loads(saved.read_text(encoding="utf-8")), time.perf_counter() - started


def cells(name: str, report: dict[str, Any], stage: str) -> str:
    s = report["stages"][stage]
    m, p50 = s["metrics"], s["latency_ms"]["p50"]
    if stage == "rerank":
        p50 += report["stages"]["retrieval"]["latency_ms"]["p50"]
    index = report["index"]
    note = "" if index.get("reused") else f"indexed {index['chunks']} chunks in {index['seconds']:.0f} s"
    return f"| {name} | {m['ndcg@10']:.4f} | {m['recall@100']:.4f} | {m['mrr@10']:.4f} | {p50:.0f} ms | {note} |"


def paired_p(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]], metric: str = "ndcg@10", rounds: int = 10000) -> float:
    """Two-sided paired randomisation test: how often random sign flips of per-query differences reach the observed mean."""
    diffs = [b[q][metric] - a[q][metric] for q in a if q in b]
    observed = abs(sum(diffs))
    rng = random.Random(13)
    hits = sum(abs(sum(d if rng.random() < 0.5 else -d for d in diffs)) >= observed - 1e-12 for _ in range(rounds))
    return (hits + 1) / (rounds + 1)


def rerank_rows(data: Path, split: str, work: Path, model: str, limit: int | None) -> list[str]:
    rows = []
    for depth in (10, 20, 50):
        extra = ["--reranker", model, "--rerank-depth", str(depth)] + (["--limit", str(limit)] if limit else [])
        report, _ = run(data, split, work, f"rerank {Path(model).name} depth {depth}", "", extra)
        lift = report["rerank_lift"]["ndcg@10"]
        rerank_ms = report["stages"]["rerank"]["latency_ms"]["p50"]
        queries = report["dataset"]["queries"]
        rows.append(
            cells(f"zscore → {model} top {depth} ({queries} queries)", report, "rerank")[:-2]
            + f"lift nDCG@10 {lift:+.4f}; rerank p50 {rerank_ms:.0f} ms/query |"
        )
    return rows


def unseen_share(table: Path, limit: int = 256) -> tuple[int, int, float]:
    """Chunks longer than MiniLM reads (``limit`` WordPieces with [CLS] and [SEP]), of all chunks, and the share
    of chunk characters (as embedded: with title and heading) past the cut, which the dense retriever never sees."""
    import lance
    from tokenizers import Tokenizer

    from rag.chunk_tokens import TOKENIZER_PATH

    tokenizer = Tokenizer.from_file(str(TOKENIZER_PATH))
    tokenizer.no_truncation()
    bodies = lance.dataset(str(table)).to_table(columns=["body"]).column("body").to_pylist()
    over = unseen = total = 0
    for body in bodies:
        offsets = tokenizer.encode(body, add_special_tokens=False).offsets
        total += len(body)
        if len(offsets) > limit - 2:
            over += 1
            unseen += len(body) - offsets[limit - 3][1]
    return over, len(bodies), unseen / max(total, 1)


def fusion_cost(depth: int = 200, rounds: int = 300) -> str:
    """Time of fusing two candidate lists of ``depth`` chunks per query, z-score against RRF, in this process."""
    from rag.documents import Hit
    from rag.fusion import fuse_hits
    from rag.profile import RetrievalConfig

    rng = random.Random(7)

    def hits(name: str) -> list[Hit]:
        scores = sorted((rng.random() for _ in range(depth)), reverse=True)
        ids = rng.sample(range(depth * 2), depth)  # about half the chunks found by both retrievers
        return [
            Hit(f"c{i}", f"d{i // 2}", "", "", "", s, ranks={name: r + 1}, scores={name: s})
            for r, (i, s) in enumerate(zip(ids, scores, strict=True))
        ]

    spent: dict[str, float] = {}
    for fusion in ("rrf", "zscore") * 5:  # interleaved, best of five: the machine is shared
        config = RetrievalConfig(fusion=fusion)
        pairs = [(hits("dense"), hits("fts")) for _ in range(rounds)]
        began = time.perf_counter()
        for dense, fts in pairs:
            fuse_hits(dense, fts, config)
        spent[fusion] = min(spent.get(fusion, 1e9), (time.perf_counter() - began) / rounds * 1000)
    return f"fusing {depth} + {depth} candidates: zscore {spent['zscore']:.2f} ms, rrf {spent['rrf']:.2f} ms per query (x{spent['zscore'] / spent['rrf']:.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/scifact-dev"))
    ap.add_argument("--split", default="train")
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "rag-quality-bench"))
    ap.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    ap.add_argument("--rerank-limit", type=int, default=None, help="queries for the rerank runs (default: all)")
    ap.add_argument("--cross-encoder", default=None, help="a cross-encoder folder's provider/model ref for the rerank rows")
    ap.add_argument("--no-rerank", action="store_true")
    args = ap.parse_args()
    work, data = Path(args.work), Path(args.data).resolve()
    work.mkdir(parents=True, exist_ok=True)
    only = {n.strip() for n in args.only.split(",") if n.strip()}

    print(f"`rag eval {data.name} --split {args.split}` per variant (latency: retrieval p50 per query, queries batched)\n")
    print("| variant | nDCG@10 | Recall@100 | MRR@10 | query p50 | note |\n|---|---|---|---|---|---|", flush=True)
    reports: dict[str, dict[str, Any]] = {}
    for name, (profile, extra) in VARIANTS.items():
        if only and name not in only:
            continue
        reports[name], _ = run(data, args.split, work, name, profile, extra)
        print(cells(name, reports[name], "retrieval"), flush=True)
    if not args.no_rerank:
        for row in rerank_rows(data, args.split, work, args.cross_encoder or "local/minilm-cosine", args.rerank_limit):
            print(row, flush=True)
    print("\n" + fusion_cost())
    tables = {r["index"]["table"]: name for name, r in reports.items()}
    if tables:
        print("\n| chunking of | chunks over 256 WordPieces | chunk text MiniLM never reads |\n|---|---|---|")
    for table, name in tables.items():
        over, chunks, share = unseen_share(work / ".rag" / f"{table}.lance")
        print(f"| {name} | {over} of {chunks} ({over / chunks:.1%}) | {share:.2%} |")
    if TODAY in reports and CHOSEN in reports:
        old, new = reports[TODAY], reports[CHOSEN]
        print("\n| default | nDCG@10 | Recall@100 | MRR@10 | query p50 | note |\n|---|---|---|---|---|---|")
        print(cells("today's: " + TODAY, old, "retrieval"))
        p = paired_p(old["per_query"]["retrieval"], new["per_query"]["retrieval"])
        print(cells("chosen: " + CHOSEN, new, "retrieval")[:-2] + f"paired randomisation p = {p:.4f} (nDCG@10) |")


if __name__ == "__main__":
    main()
