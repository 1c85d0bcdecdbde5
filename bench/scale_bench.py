"""ANN against exact dense search at 100k and 1M chunks: build time, peak RSS, query p50/p95, recall@10.

    python bench/scale_bench.py                        # synthetic clustered vectors, 100k
    nice -n 10 python bench/scale_bench.py --rows 1000000 --kinds IVF_SQ --keep /tmp/scale-1m   # table kept, reused next time
    python bench/scale_bench.py --real /tmp/x/.rag     # a real index's vectors, repeated with perturbation
    python bench/scale_bench.py --ray-docs /work/corpus/pkgdocs   # plain rag index against --ray on 1 and 2 workers

Tables are written with rag's own schema and read through rag's Snapshot, so "exact" is what rag does without an
index (one matrix product in memory up to FLAT_MAX_ROWS, a Lance scan past it) and "ann" is what it does with one
(rag.store.ann, the query knobs of the profile). Ground truth is exact cosine top-10 by numpy. The index build
runs in a child process so its peak RSS is its own. Latencies are wall times on a shared machine: compare the
two columns of one run, not runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("LANCE_LOG", "error")

DIM = 384
WHERE = "source LIKE '/docs/f1%'"  # about a tenth of the sources: a filter the prefilter must honour


def clustered(rows: int, clusters: int = 2000, spread: float = 0.35, seed: int = 0) -> np.ndarray:
    """Unit vectors around ``clusters`` random centres: the shape of chunk embeddings (topics), unlike uniform noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((rows, DIM), dtype=np.float32)
    for start in range(0, rows, 100_000):
        n = min(100_000, rows - start)
        block = centres[rng.integers(0, clusters, n)] + spread / np.sqrt(DIM) * rng.standard_normal((n, DIM)).astype(np.float32) * 3
        out[start : start + n] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def repeated(store: Path, rows: int, noise: float = 0.02, seed: int = 0) -> np.ndarray:
    """A real index's vectors repeated to ``rows``, each copy perturbed (so no two are equal) and renormalised."""
    import lance

    table = next(p for p in store.glob("*.lance"))
    column = lance.dataset(str(table)).to_table(columns=["vector"]).column("vector").combine_chunks()
    base = column.values.to_numpy().reshape(len(column), -1).astype(np.float32)
    rng = np.random.default_rng(seed)
    out = base[rng.integers(0, len(base), rows)] + noise * rng.standard_normal((rows, base.shape[1])).astype(np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def queries_like(vectors: np.ndarray, n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q = vectors[rng.integers(0, len(vectors), n)] + 0.05 * rng.standard_normal((n, vectors.shape[1])).astype(np.float32)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def write_table(vectors: np.ndarray, folder: Path) -> str:
    """A chunk table with rag's schema (short dummy text) and the meta a Store needs."""
    import lance
    import pyarrow as pa

    from rag.store.schema import schema

    dim = vectors.shape[1]
    uri = str(folder / "chunks.lance")

    def batches():  # type: ignore[no-untyped-def]
        for start in range(0, len(vectors), 50_000):
            n = min(50_000, len(vectors) - start)
            ids = [f"c{start + i}" for i in range(n)]
            ordinal = (np.arange(start, start + n) % 20).astype(np.int32)  # 20 chunks a source, as the sources below
            text = pa.array([f"chunk {start + i}" for i in range(n)])
            cols = {
                "id": pa.array(ids),
                "source": pa.array([f"/docs/f{(start + i) // 20}.md" for i in range(n)]),
                "title": text,
                "heading": text,
                "text": text,
                "body": text,
                # Offsets as a corpus has them: a column of one constant value is slow for Lance to take rows
                # from (11 ms for 10 rows of 1M zeros, 0.7 ms for varied ones), which would bill every query for it.
                "start": pa.array(ordinal.astype(np.int64) * 500),
                "end": pa.array(ordinal.astype(np.int64) * 500 + 480),
                "tokens": pa.array(np.full(n, 120, dtype=np.int32) - ordinal),
                "ordinal": pa.array(ordinal),
                "sha256": text,
                "kind": pa.array(["markdown"] * n),
                "file_mtime": pa.array(np.zeros(n)),
                "file_size": pa.array(np.zeros(n, dtype=np.int64)),
                "file_sha256": text,
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors[start : start + n].ravel()), dim),
            }
            yield pa.RecordBatch.from_pydict(cols, schema=schema(dim))

    lance.write_dataset(pa.RecordBatchReader.from_batches(schema(dim), batches()), uri, max_rows_per_file=1 << 20)
    (folder / "chunks.meta.json").write_text(json.dumps({"embedding": {"model": "bench", "dimensions": dim}}))
    return uri


def build_child(folder: str, kind: str, num_partitions: int) -> None:
    """In a child process: build the index as maintenance does; print seconds and this process's peak RSS."""
    import lance

    from rag.store import ann

    ds = lance.dataset(str(Path(folder) / "chunks.lance"))
    settings = ann.AnnSettings(kind=kind, min_rows=1)
    record = ann.build(ds, settings, num_partitions or None)
    record.update(ann.tune(lance.dataset(str(Path(folder) / "chunks.lance")), settings))  # as maintenance does
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({**record, "peak_rss_mb": round(peak_mb)}))


def timed(search, queries: np.ndarray) -> tuple[list[list[str]], list[float]]:  # type: ignore[no-untyped-def]
    ids, lat = [], []
    for q in queries:
        t0 = time.perf_counter()
        hits = search(q)
        lat.append(time.perf_counter() - t0)
        ids.append([h.id for h in hits])
    return ids, lat


def pct(lat: list[float], p: float) -> float:
    return float(np.percentile(lat, p) * 1000)


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def recall(found: list[list[str]], truth: np.ndarray) -> float:
    return float(np.mean([len({f"c{i}" for i in t} & set(f)) / len(t) for f, t in zip(found, truth, strict=True)]))


def ground_truth(vectors: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Exact cosine top-10 by numpy (unit vectors) and the time of each: the in-memory reference every ANN
    latency is divided by, timed in the same run so the machine's load cancels out of the ratio."""
    truth, lat = [], []
    for q in queries:
        t0 = time.perf_counter()
        scores = vectors @ q
        top = np.argpartition(-scores, 9)[:10]
        truth.append(top[np.argsort(-scores[top])])
        lat.append(time.perf_counter() - t0)
    return np.vstack(truth), lat


@dataclass
class Plan:
    """What to build and time, from the command line."""

    kinds: list[str]
    n_queries: int
    knobs: list[tuple[int, int, int]]
    skip_exact: bool = False
    partitions: int = 0  # 0: rag.store.ann.partitions decides
    keep: Path | None = None  # write the table here once and reuse it (and an index of the same kind) next time
    where: bool = True


def table_folder(vectors: np.ndarray, plan: Plan, tmp: str) -> Path:
    """The folder holding the chunk table: a kept one of the same size if there is one, else written now."""
    import lance

    folder = plan.keep or Path(tmp)
    if plan.keep and (folder / "chunks.lance").exists() and lance.dataset(str(folder / "chunks.lance")).count_rows() == len(vectors):
        print(f"\n{len(vectors):,} × {vectors.shape[1]}: reusing the table in {folder}")
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    write_table(vectors, folder)
    print(f"\n{len(vectors):,} × {vectors.shape[1]}: table written in {time.perf_counter() - t0:.1f} s")
    return folder


def run(vectors: np.ndarray, label: str, plan: Plan) -> None:
    from rag.store import Store
    from rag.store.ann import AnnSettings

    rows = len(vectors)
    queries = queries_like(vectors, plan.n_queries)
    truth, numpy_lat = ground_truth(vectors, queries)
    print(f"{label}: numpy exact in memory p50 {pct(numpy_lat, 50):6.1f} ms · p95 {pct(numpy_lat, 95):6.1f} ms ({load()})")
    with tempfile.TemporaryDirectory(prefix="rag-scale-") as tmp:
        folder = table_folder(vectors, plan, tmp)
        if not plan.skip_exact:
            exact = Store(folder, "chunks", ann=AnnSettings(mode="off")).latest()
            cold = time.perf_counter()
            exact.nearest_many(queries[:1], 10)
            cold_ms = (time.perf_counter() - cold) * 1000
            sample = queries if rows <= 250_000 else queries[:20]  # past FLAT_MAX_ROWS exact is a Lance scan: ~1 s a query
            found, lat = timed(lambda q: exact.nearest_many(q[None, :], 10)[0], sample)
            print(
                f"  rag exact   first query {cold_ms:7.0f} ms (loads the vectors) · p50 {pct(lat, 50):6.1f} ms · p95 {pct(lat, 95):6.1f} ms"
                f" · recall@10 {recall(found, truth[: len(sample)]):.3f} ({load()})"
            )
        kinds_only(folder, plan, queries, truth, pct(numpy_lat, 50))


def build_or_reuse(folder: Path, kind: str, plan: Plan) -> None:
    import lance

    from rag.store.ann import partitions, tuned_nprobes, vector_index

    ds = lance.dataset(str(folder / "chunks.lance"))
    index = vector_index(ds)
    wanted = plan.partitions or partitions(kind, ds.count_rows())
    if plan.keep and index and index["type"] == kind and index["partitions"] == wanted:
        print(f"  {kind}: reusing the index built before ({index['partitions']} partitions, nprobes tuned to {tuned_nprobes(ds)})")
        return
    command = [sys.executable, __file__, "--build-child", str(folder), kind, str(plan.partitions)]
    child = subprocess.run(command, capture_output=True, text=True, check=True)
    built = json.loads(child.stdout.strip().splitlines()[-1])
    index = vector_index(lance.dataset(str(folder / "chunks.lance")))
    parts = index["partitions"] if index else "?"
    print(
        f"  {kind} ({parts} partitions): built in {built['build_seconds']:.1f} s, tuned in {built['tune_seconds']:.1f} s "
        f"(nprobes {built['nprobes']}: recall@10 {built['recall']:.3f} on its tuning queries) · peak RSS {built['peak_rss_mb']:,} MB ({load()})"
    )


def kinds_only(folder: Path, plan: Plan, queries: np.ndarray, truth: np.ndarray, numpy_p50: float) -> None:
    """Build each kind of index in a child process (or reuse a kept one), then time and score the query knobs on it."""
    from rag.store import Store
    from rag.store.ann import AnnSettings

    for kind in plan.kinds:
        build_or_reuse(folder, kind, plan)
        for nprobes, refine, ef in plan.knobs:  # nprobes 0: the one tune recorded at the build (the default)
            settings = AnnSettings(kind=kind, min_rows=1, nprobes=nprobes or None, refine_factor=refine, ef=ef)
            snap = Store(folder, "chunks", ann=settings).latest()
            nprobes = snap.ann_knobs()["nprobes"]
            snap.nearest_many(queries[:1], 10)  # opens the index: a cost each process pays once, not each query
            found, lat = timed(lambda q, s=snap: s.nearest_many(q[None, :], 10)[0], queries)
            print(
                f"    nprobes {nprobes:>3} refine {refine:>2} ef {ef:>3}: p50 {pct(lat, 50):6.1f} ms · p95 {pct(lat, 95):6.1f} ms"
                f" · recall@10 {recall(found, truth):.3f} · p50 {pct(lat, 50) / numpy_p50:.2f}x numpy exact ({load()})"
            )
        if plan.where:
            snap = Store(folder, "chunks", ann=AnnSettings(kind=kind, min_rows=1)).latest()
            found, lat = timed(lambda q, s=snap: s.nearest_many(q[None, :], 10, WHERE)[0], queries[:20])
            ref, _ = timed(lambda q, s=snap: s.exact_nearest(q, 10, WHERE), queries[:20])
            agree = np.mean([len(set(a) & set(b)) / max(1, len(b)) for a, b in zip(found, ref, strict=True)])
            print(f'    with --where "{WHERE}": p50 {pct(lat, 50):6.1f} ms · recall@10 against exact with the same filter {agree:.3f}')
        if not plan.keep:
            import lance

            ds = lance.dataset(str(folder / "chunks.lance"))
            for index in ds.describe_indices():
                ds.drop_index(index.name)


def ray_bench(docs: Path, files: int) -> None:
    """docs/s of plain rag index, of rag index --ray on 1 worker and on 2 (a local cluster), each on a fresh store and
    cache: Ray's overhead is the gap between the first two, its scaling the gap between the last two."""
    import shutil

    import ray

    from rag.distributed import index_paths_ray
    from rag.indexer import index_paths
    from rag.profile import load_profile

    with tempfile.TemporaryDirectory(prefix="rag-ray-bench-") as tmp:
        corpus = Path(tmp) / "docs"
        picked = sorted(p for p in docs.rglob("*") if p.suffix in (".rst", ".md", ".txt") and p.is_file())[:files]
        for p in picked:
            target = corpus / p.relative_to(docs)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(p, target)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        results = {}
        for label, run in (
            ("plain rag index", lambda prof: index_paths(prof, [corpus])),
            ("--ray, 1 worker", lambda prof: index_paths_ray(prof, [corpus], workers=1)),
            ("--ray, 2 workers", lambda prof: index_paths_ray(prof, [corpus], workers=2)),
        ):
            store = Path(tmp) / "store"
            shutil.rmtree(store, ignore_errors=True)
            os.environ["RAG_STORE"] = str(store)
            t0 = time.perf_counter()
            report = run(load_profile(None))
            seconds = time.perf_counter() - t0
            results[label] = seconds
            print(
                f"  {label:<17} {len(picked)} files, {report.chunks_total:,} chunks in {seconds:6.1f} s: {len(picked) / seconds:5.2f} docs/s"
            )
        ray.shutdown()
        base = results["plain rag index"]
        print(
            f"  --ray overhead on 1 worker: {results['--ray, 1 worker'] / base:.2f}x plain; 2 workers vs 1: {results['--ray, 1 worker'] / results['--ray, 2 workers']:.2f}x"
        )


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--build-child":
        build_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000])
    parser.add_argument("--kinds", nargs="+", default=["IVF_SQ", "IVF_HNSW_SQ", "IVF_PQ"])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--real", type=Path, help="a rag store folder whose vectors are repeated with perturbation")
    parser.add_argument("--knobs", default="0,5,100;20,5,100;10,1,50", help="nprobes,refine,ef;... to try (nprobes 0: tuned)")
    parser.add_argument("--partitions", type=int, default=0, help="IVF partitions (default: rag.store.ann.partitions)")
    parser.add_argument("--keep", type=Path, help="write the table here once and reuse it (and its index) on later runs")
    parser.add_argument("--no-where", action="store_true", help="skip the filtered search")
    parser.add_argument("--ray-docs", type=Path, help="instead: index this folder plainly, then with --ray on 1 and 2 workers")
    parser.add_argument("--ray-files", type=int, default=80)
    parser.add_argument("--skip-exact", action="store_true", help="time only the ANN searches (exact at 1M: seconds a query)")
    args = parser.parse_args()
    if args.ray_docs:
        ray_bench(args.ray_docs, args.ray_files)
        return
    knobs = [tuple(int(x) for x in k.split(",")) for k in args.knobs.split(";")]
    plan = Plan(args.kinds, args.queries, knobs, args.skip_exact, args.partitions, args.keep, not args.no_where)  # type: ignore[arg-type]
    for rows in args.rows:
        if args.real:
            run(repeated(args.real, rows), f"real vectors of {args.real} repeated", plan)
        else:
            run(clustered(rows), "synthetic clustered", plan)


if __name__ == "__main__":
    main()
