"""Calibrate ``rag ask``'s "the documents do not answer" gate to one index.

A fixed cosine cannot hold across corpora: how high an unrelated question
reaches depends on how large and how generic the corpus is, and on the
embedding model. So each index measures it. At index time every question of
a fixed bank of everyday probes (:mod:`rag.probes`) is matched against the
index; the best cosine of each is one draw from the null distribution of
"best score of a question this index does not answer". The threshold is a
high quantile of those draws plus a margin::

    threshold = quantile(best cosine of each probe, Q) + MARGIN

A quantile rather than the maximum, so the few probes that happen to be
on-topic for a corpus (a medical probe against biomedical abstracts) do not
lift it. Q and MARGIN were set before measuring; ``bench/abstain_bench.py``
measures the rule on five corpora against a fixed cosine, a per-query z-score,
a gap statistic and a BM25 cut, and sweeps Q and MARGIN.

The core (:func:`best_scores`, :func:`calibrate`) is pure. :func:`calibrate_store`
reads every published vector once, in batches, and takes one matrix product
per batch with the probes: exact (a sample's maximum is biased low, and
extrapolating its tail overshot as much on test data), at the cost of ~150
flat-scan queries. :func:`update_calibration`, which the indexer calls, redoes
it only when a tenth of the table changed since, which bounds that cost by the
embedding work it follows. The probe vectors are cached beside the index,
keyed by the model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.errors import RagError
from rag.probes import PROBES, bank_version
from rag.providers.base import Embedder, Vectors

if TYPE_CHECKING:
    from rag.store import Snapshot, Store

METHOD = "probe-quantile"
QUANTILE = 0.9
MARGIN = 0.05
# Used when an index has no calibration (built before rag calibrated, or its calibration failed).
# Tuned for the embedded MiniLM; run rag index to calibrate the index instead.
DEFAULT_THRESHOLD = 0.3
DRIFT = 0.1  # recalibrate once this share of the table changed since the last calibration
BATCH_ROWS = 8192  # vectors read at a time: memory stays flat whatever the size of the table
PROBE_CACHE = "calibration-probes.npz"
PROBE_BATCH = 64


def best_scores(probes: Vectors, batches: Iterable[Vectors]) -> np.ndarray:
    """Each probe's best cosine over every chunk vector, the vectors streamed in batches (pure)."""
    q = _unit(np.asarray(probes, dtype=np.float32))
    best = np.full(len(q), -np.inf, dtype=np.float32)
    for batch in batches:
        if len(batch):
            np.maximum(best, (_unit(np.asarray(batch, dtype=np.float32)) @ q.T).max(axis=0), out=best)
    return best


def calibrate(best: np.ndarray, *, quantile: float = QUANTILE, margin: float = MARGIN) -> dict[str, Any]:
    """The calibration record from each probe's best cosine against the index (pure)."""
    best = np.asarray(best, dtype=np.float64)
    quantiles = {f"q{int(q * 100)}": round(float(np.quantile(best, q)), 4) for q in (0.5, 0.75, 0.9, 0.95)}
    return {
        "method": METHOD,
        "threshold": round(float(np.quantile(best, quantile)) + margin, 4),
        "quantile": quantile,
        "margin": margin,
        "probes": len(best),
        "bank": bank_version(),
        "null": {**quantiles, "max": round(float(best.max()), 4)},
    }


def calibrate_store(store: Store, embedder: Embedder) -> dict[str, Any]:
    """Calibrate the published version of ``store`` for questions embedded by ``embedder``."""
    started = time.perf_counter()
    snapshot = store.published()
    total = snapshot.count()
    if total == 0:
        raise RagError(f"the index at {store.root} is empty: nothing to calibrate")
    prefix = str((store.meta().get("embedding") or {}).get("query_prefix") or "")
    record = calibrate(null_scores(snapshot, probe_vectors(embedder, prefix, store.root)))
    record.update(
        model=embedder.ref,
        model_version=embedder.version,
        chunks=total,
        version=snapshot.version,
        seconds=round(time.perf_counter() - started, 3),
    )
    return record


def null_scores(snapshot: Snapshot, probes: Vectors) -> np.ndarray:
    """Each probe's best cosine over one version's vectors: one streamed pass, a matrix product per batch."""

    return best_scores(probes, snapshot.vector_batches(BATCH_ROWS))


def auto_threshold(meta: dict[str, Any]) -> tuple[float, str]:
    """What ``ask.threshold: auto`` means for an index with this meta: (value, "calibrated" or "default")."""
    record = meta.get("calibration")
    if isinstance(record, dict) and isinstance(record.get("threshold"), int | float):
        return float(record["threshold"]), "calibrated"
    return DEFAULT_THRESHOLD, "default"


def threshold_info(setting: float | str, meta: dict[str, Any]) -> dict[str, Any]:
    """The no-answer threshold ``rag ask`` will use, for ``rag status``: value, source and the index's calibration."""
    record = meta.get("calibration")
    info: dict[str, Any] = {"setting": setting}
    if setting == "auto":
        info["value"], info["source"] = auto_threshold(meta)
    else:
        info["value"], info["source"] = float(setting), "ask.threshold"
    info["calibration"] = record if isinstance(record, dict) else None
    return info


def describe_threshold(info: dict[str, Any]) -> str:
    """One line for ``rag status`` from :func:`threshold_info` (fits 80 columns after its label)."""
    value, record = info["value"], info.get("calibration") or {}
    if info["source"] == "calibrated":
        return f"cosine {value:.3f}, calibrated for this index ({record['probes']} probes)"
    if info["source"] == "default":
        return f"cosine {value:.3f} (default; run rag index to calibrate this index)"
    calibrated = f" (calibrated {record['threshold']:.3f}, unused)" if record else ""
    return f"{value:g} from ask.threshold{calibrated}"


def is_current(record: dict[str, Any] | None, embedder: Embedder) -> bool:
    """Whether ``record`` was made with this model and this probe bank."""
    if not record:
        return False
    made_with = (record.get("method"), record.get("bank"), record.get("model"), record.get("model_version"))
    return made_with == (METHOD, bank_version(), embedder.ref, embedder.version)


def update_calibration(store: Store, embedder: Embedder, *, changed: int, warn: Callable[[str], None]) -> dict[str, Any] | None:
    """Keep the index's calibration current after a run that added or removed ``changed`` chunks; record it in the meta.

    It is redone when missing, made with another model or probe bank, or once the
    chunks changed since it was made reach :data:`DRIFT` of the table: a few edited
    files barely move the null distribution, and a pass costs as much as ~150
    flat-scan queries, so at a million chunks it runs once per 100,000 changed
    chunks (which took far longer to embed). Never fails the run, whose data is
    committed: a failure warns in one line and the next ``rag index`` retries.
    """
    if not store.exists():
        return None
    meta = store.meta()
    old = meta.get("calibration")
    if isinstance(old, dict) and is_current(old, embedder):
        pending = int(old.get("pending", 0)) + changed
        if pending < DRIFT * max(int(old.get("chunks", 0)), 1):
            if changed:
                meta["calibration"] = {**old, "pending": pending}
                store.write_meta(meta)
            return old
    try:
        record = calibrate_store(store, embedder) if store.published().count() else None
    except RagError as err:
        kept = "the last calibration" if old else f"the default {DEFAULT_THRESHOLD}"
        warn(f"could not calibrate the no-answer threshold ({err}); rag ask uses {kept} until the next rag index")
        return None
    meta = store.meta()
    if record is None:
        meta.pop("calibration", None)  # an empty index answers nothing: no threshold to keep
    else:
        meta["calibration"] = record
    store.write_meta(meta)
    return record


def probe_vectors(embedder: Embedder, query_prefix: str, folder: Path | None = None) -> Vectors:
    """The bank embedded as questions are, cached in ``folder`` per model, model version, prefix and bank."""
    key = f"{embedder.ref}\0{embedder.version}\0{query_prefix}\0{bank_version()}"
    path = folder / PROBE_CACHE if folder is not None else None
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as cached:
                if str(cached["key"]) == key:
                    return np.asarray(cached["vectors"], dtype=np.float32)
        except (OSError, ValueError, KeyError):
            pass  # a torn or foreign file: embed again and overwrite it
    from rag.embed import EmbedService

    service = EmbedService(embedder, batch_size=PROBE_BATCH)
    vectors = service.embed([query_prefix + p for p in PROBES])
    if path is not None:
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, key=np.array(key), vectors=vectors)
        tmp.replace(path)
    return vectors


def _unit(vectors: Vectors) -> Vectors:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.clip(norms, 1e-12, None)).astype(np.float32)
