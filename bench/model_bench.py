"""The embedded model on this CPU: the packaged graph against the int8-kernel graphs derived from it (issue 12).

Prints, in one run:
  - session build CPU seconds: the packaged graph, the int8 graph derived in memory, the cached optimised file;
  - for each setting (intra-op threads x calls in flight x texts per call x token budget), docs/s and docs per
    CPU-second of a raw loop over both graphs on the same SciFact abstracts, as the ratio int8 / packaged,
    and each run's peak RSS (every run is its own process: peak RSS is per process);
  - how far a text's vector moves when it shares a call with others (int8 quantizes activations per call);
  - with --index N: `rag index` over N abstracts against the raw int8 loop on the same texts.

    python bench/model_bench.py [--docs 200] [--repeats 2] [--index N] [--quick] [--only builds|drift|headline|curve|index]

The two graphs run alternately (A B A B ...) so that load from other processes hits both alike; read the
ratios, not the absolute numbers, on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# ../shared/data/scifact-dev from the repo (or from a worktree one level deeper); --data overrides
DATA = next(
    (p / "shared/data/scifact-dev" for p in Path(__file__).resolve().parents[1:4] if (p / "shared/data/scifact-dev").is_dir()), Path(".")
)
# (intra-op threads, calls in flight, texts per call, padded tokens per call)
SETTINGS = [
    (2, 1, 1, 10**9),
    (2, 1, 4, 10**9),
    (2, 1, 8, 10**9),
    (2, 1, 16, 10**9),
    (2, 1, 32, 10**9),
    (1, 1, 1, 10**9),
    (1, 1, 8, 10**9),
    (1, 2, 1, 10**9),
    (1, 2, 8, 10**9),
    (2, 1, 64, 1024),
    (2, 1, 64, 2048),
    (2, 1, 64, 4096),
]
QUICK = [(2, 1, 8, 10**9), (1, 2, 1, 10**9), (1, 2, 8, 10**9)]


def texts(n: int, kind: str = "abstracts") -> list[str]:
    """The first ``n`` SciFact abstracts (title + text) or queries (claims, ~20 tokens)."""
    out = []
    with (DATA / ("corpus.jsonl" if kind == "abstracts" else "queries.jsonl")).open() as fh:
        for line in fh:
            d = json.loads(line)
            out.append(f"{d['title']} {d['text']}" if kind == "abstracts" else d["text"])
            if len(out) == n:
                break
    return out


def encoder(graph: str, threads: int, max_batch: int, budget: int, workers: int):  # type: ignore[no-untyped-def]
    """A MiniLM-shaped encoder over ``graph``: "packaged"; "fused" (the graph rag derives and caches: the encoder
    rebuilt on onnxruntime's fused int8 kernels, derived in memory here); "int8" (the earlier rewrite: each
    product in int8 kernels, uint8 weights) or "int8-signed" (that rewrite with the int8 weights as stored)."""
    from tokenizers import Tokenizer

    from rag.providers.local.encoder import Batching, TextEncoder, configure_tokenizer, new_session
    from rag.providers.local.minilm import MAX_TOKENS, TOKENIZER_PATH, packaged_graph
    from rag.providers.local.quantize import int8_matmuls

    path, _ = packaged_graph()
    if graph == "packaged":
        session = new_session(str(path), threads=threads)
    elif graph == "fused":
        from rag.providers.local.fuse import DERIVED_LEVEL, fused_bert

        session = new_session(fused_bert(path.read_bytes()), threads=threads, level=DERIVED_LEVEL)
    else:
        weights = "int8" if graph == "int8-signed" else "uint8"
        session = new_session(int8_matmuls(path.read_bytes(), weights=weights)[0], threads=threads, level="extended")
    tok = configure_tokenizer(Tokenizer.from_file(str(TOKENIZER_PATH)), MAX_TOKENS)
    batching = Batching(max_batch=max_batch, token_budget=budget, workers=workers)
    return TextEncoder(session, tok, output="last_hidden_state", pooled=False, batching=batching)


def one_run(graph: str, setting: tuple[int, int, int, int], n: int, kind: str = "abstracts") -> dict[str, float]:
    """Run in a child process: load, warm up, encode ``n`` texts; report throughput and peak RSS."""
    threads, workers, max_batch, budget = setting
    model = encoder(graph, threads, max_batch, budget, workers)
    docs = texts(n, kind)
    model.encode(docs[:8])
    cpu, wall = time.process_time(), time.perf_counter()
    model.encode(docs)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"docs_s": n / wall, "docs_cpu_s": n / cpu, "rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak RSS since exec (VmHWM; ru_maxrss would carry the parent's peak over the fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(graph: str, setting: tuple[int, int, int, int], n: int, kind: str = "abstracts") -> dict[str, float]:
    code = (
        f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import model_bench as m; "
        f"m.DATA = m.Path({str(DATA)!r}); print(json.dumps(m.one_run({graph!r}, {setting!r}, {n}, {kind!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def curve(settings: list[tuple[int, int, int, int]], n: int, repeats: int) -> None:
    print(f"\nthroughput: {n} SciFact abstracts (256-token truncation), {repeats} alternating runs per graph, medians")
    print(
        f"{'threads':>7} {'inflight':>8} {'batch':>5} {'budget':>6} | {'packaged docs/s':>15} {'fused docs/s':>12} {'ratio':>5} | "
        f"{'cpu ratio':>9} | {'RSS MB pkg':>10} {'fused':>5}"
    )
    for setting in settings:
        runs: dict[str, list[dict[str, float]]] = {"packaged": [], DERIVED: []}
        for _ in range(repeats):
            for graph in runs:
                runs[graph].append(child(graph, setting, n))
        med = {g: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for g, rs in runs.items()}
        ratios = [b["docs_s"] / a["docs_s"] for a, b in zip(runs["packaged"], runs[DERIVED], strict=True)]
        cpu_ratios = [b["docs_cpu_s"] / a["docs_cpu_s"] for a, b in zip(runs["packaged"], runs[DERIVED], strict=True)]
        threads, workers, batch, budget = setting
        shown = "-" if budget >= 10**9 else str(budget)
        p, q = med["packaged"], med[DERIVED]
        print(
            f"{threads:>7} {workers:>8} {batch:>5} {shown:>6} | {p['docs_s']:>15.1f} {q['docs_s']:>12.1f} {statistics.median(ratios):>5.2f} | "
            f"{statistics.median(cpu_ratios):>9.2f} | {p['rss_mb']:>10.0f} {q['rss_mb']:>5.0f}",
            flush=True,
        )


DERIVED = "fused"  # the graph rag runs
TODAY = (2, 1, 8, 10**9)  # the packaged graph as rag ran it before: 2 threads, 8 texts per call
DEFAULT = (1, 0, 1, 10**9)  # the int8 graph as rag runs it now: 1 thread per call, one call per core, 1 text per call


def signed_weights(n: int, repeats: int) -> None:
    """The derived graphs in the default setting: the fused one rag runs, and the plain rewrite with uint8 weights
    (exact everywhere) or int8 ones as stored (8-bit weights: AVX2 may saturate)."""
    runs: dict[str, list[dict[str, float]]] = {"packaged": [], "int8": [], "int8-signed": [], "fused": []}
    for _ in range(repeats):
        for graph in runs:
            runs[graph].append(child(graph, DEFAULT, n))
    base = [r["docs_cpu_s"] for r in runs["packaged"]]
    print(f"\nderived graphs, 1 thread x cores, 1 text per call ({n} abstracts, docs per CPU-second as a ratio to the packaged graph):")
    for graph in ("int8", "int8-signed", "fused"):
        ratio = statistics.median(r["docs_cpu_s"] / b for r, b in zip(runs[graph], base, strict=True))
        print(f"  {graph:<12} {ratio:.2f}")


def headline(n: int, repeats: int, kind: str) -> None:
    """Before against after, each with its own settings, alternating."""
    before, after = [], []
    for _ in range(repeats):
        before.append(child("packaged", TODAY, n, kind))
        after.append(child(DERIVED, DEFAULT, n, kind))
    ratio = statistics.median(b["docs_s"] / a["docs_s"] for a, b in zip(before, after, strict=True))
    cpu = statistics.median(b["docs_cpu_s"] / a["docs_cpu_s"] for a, b in zip(before, after, strict=True))
    a_med = {k: statistics.median(r[k] for r in before) for k in before[0]}
    b_med = {k: statistics.median(r[k] for r in after) for k in after[0]}
    print(
        f"  {kind:<9} packaged/2 threads/batch 8: {a_med['docs_s']:6.1f}/s, {a_med['rss_mb']:4.0f} MB | "
        f"{DERIVED}/1 thread x cores/1 per call: {b_med['docs_s']:6.1f}/s, {b_med['rss_mb']:4.0f} MB | ratio {ratio:.2f} (CPU {cpu:.2f})",
        flush=True,
    )


def session_builds(repeats: int) -> None:
    """CPU seconds to get a ready session, each in a fresh process (imports excluded)."""
    code = r"""
import json, sys, time, tempfile, os
from pathlib import Path
import onnxruntime, tokenizers
from rag.providers.local.encoder import new_session
from rag.providers.local.minilm import packaged_graph
from rag.providers.local.quantize import int8_matmuls
path, _ = packaged_graph()
what = sys.argv[1]
t = time.process_time()
if what == "packaged, optimised at load (all)":
    new_session(str(path))
elif what == "int8: derive in memory + optimise (extended)":
    new_session(int8_matmuls(path.read_bytes())[0], level="extended")
elif what == "int8: derive only":
    int8_matmuls(path.read_bytes())
elif what == "fused: derive + optimise (basic)":
    from rag.providers.local.fuse import fused_bert
    new_session(fused_bert(path.read_bytes()), level="basic")
else:
    saved = Path(sys.argv[2])
    if not saved.exists():
        new_session(int8_matmuls(path.read_bytes())[0], level="extended", save_to=saved)
        t = time.process_time()
    new_session(str(saved), level="none")
print(json.dumps(time.process_time() - t))
"""
    saved = Path(tempfile.mkdtemp(prefix="rag-model-bench-")) / "int8-optimised.onnx"
    kinds = [
        "packaged, optimised at load (all)",
        "int8: derive only",
        "int8: derive in memory + optimise (extended)",
        "fused: derive + optimise (basic)",
        "int8: cached optimised file (none)",
    ]
    print("\nsession build, CPU seconds (median of fresh processes):")
    for kind in kinds:
        times = [
            float(subprocess.run([sys.executable, "-c", code, kind, str(saved)], capture_output=True, text=True, check=True).stdout)
            for _ in range(repeats)
        ]
        print(f"  {kind:<46} {statistics.median(times):.3f} s")
    print(f"  cached file: {saved.stat().st_size / 1e6:.1f} MB")


def batch_drift() -> None:
    """Cosine of a text's vector embedded alone to the same text embedded among others, per graph."""
    docs = [*texts(24), "first text", "what causes diabetes?", "x"]
    print("\nvector of a text alone vs in a call with 26 others (min / mean cosine):")
    for graph in ("packaged", DERIVED):
        model = encoder(graph, 1, 1, 10**9, 1)
        alone = model.encode(docs)[0]
        from rag.providers.local.encoder import Batching

        model.batching = Batching(max_batch=64, token_budget=10**9)
        together = model.encode(docs)[0]
        cos = (alone * together).sum(axis=1)
        print(f"  {graph:<9} {float(cos.min()):.6f} / {float(cos.mean()):.6f}")


def index_run(n: int) -> None:
    """`rag index` over ``n`` abstracts (a subprocess; the int8 graph cached) against raw loops over the same texts."""
    work = Path(tempfile.mkdtemp(prefix="rag-model-bench-index-"))
    docs_dir = work / "docs"
    docs_dir.mkdir()
    with (DATA / "corpus.jsonl").open() as fh:
        for i, line in enumerate(fh):
            if i == n:
                break
            d = json.loads(line)
            (docs_dir / f"{d['_id']}.md").write_text(f"# {d['title']}\n\n{d['text']}\n", encoding="utf-8")
    (work / "rag.yaml").write_text(f"store:\n  uri: {work / 'index'}\n", encoding="utf-8")
    env = {**os.environ, "RAG_PROFILE": str(work / "rag.yaml")}
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "rag", "index", str(docs_dir), "--json"], env=env, capture_output=True, text=True, check=True
    )
    wall = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    report = json.loads(out.stdout)
    raw_int8 = child(DERIVED, DEFAULT, n)["docs_s"]
    raw_packaged = child("packaged", TODAY, n)["docs_s"]
    print(
        f"rag index: {n / wall:.1f} docs/s ({report['chunks_total']} chunks, {wall:.1f} s, peak RSS {rss:.0f} MB) "
        f"= {n / wall / raw_int8:.2f} x the raw {DERIVED} loop ({raw_int8:.1f} docs/s), "
        f"{n / wall / raw_packaged:.2f} x the raw packaged loop ({raw_packaged:.1f} docs/s)",
        flush=True,
    )


def main() -> None:
    global DATA
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=200, help="abstracts per throughput run")
    ap.add_argument("--repeats", type=int, default=2, help="alternating runs per graph and setting")
    ap.add_argument("--index", type=int, default=0, help="also time `rag index` over this many abstracts")
    ap.add_argument("--quick", action="store_true", help="three settings only")
    ap.add_argument("--data", default=None, help=f"BEIR SciFact folder (default {DATA})")
    ap.add_argument(
        "--only", choices=["builds", "drift", "headline", "signed", "curve", "index"], action="append", help="run only these parts"
    )
    args = ap.parse_args()
    parts = set(args.only or ["builds", "drift", "headline", "signed", "curve", *(["index"] if args.index else [])])
    import onnxruntime

    print(f"onnxruntime {onnxruntime.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    if args.data:
        DATA = Path(args.data)
    if "index" in parts:  # first, while this process is small (a child's peak RSS starts from its parent's)
        index_run(args.index or 500)
    if "builds" in parts:
        session_builds(max(3, args.repeats))
    if "drift" in parts:
        batch_drift()
    if "headline" in parts:
        print(f"\nbefore -> after ({args.docs} texts each, {args.repeats} alternating runs, medians):")
        headline(args.docs, args.repeats, "abstracts")
        headline(args.docs, args.repeats, "queries")
    if "signed" in parts:
        signed_weights(args.docs, args.repeats)
    if "curve" in parts:
        curve(QUICK if args.quick else SETTINGS, args.docs, args.repeats)


if __name__ == "__main__":
    main()
