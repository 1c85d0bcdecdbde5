"""Small pure helpers for showing things to people (no rich import here)."""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rag.profile import RetrievalConfig


def display_path(source: str) -> str:
    """A path relative to the working folder when it is under it; anything else unchanged."""
    try:
        rel = os.path.relpath(source)
    except ValueError:
        return source
    return rel if not rel.startswith("..") and Path(source).is_absolute() else source


def snippet(text: str, width: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


_UNDERLINE = re.compile(r"^\s*([=\-~^\"'`*+#:.])\1{2,}\s*$")
_ATX = re.compile(r"^\s*#{1,6}(\s|$)")


def without_headings(text: str) -> str:
    """The text after its leading heading lines (Markdown ``## x``, reST title and underline): shown beside the
    place, which names the heading already, they would only repeat it."""
    lines = text.lstrip("\n").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or _ATX.match(line) or _UNDERLINE.match(line):
            i += 1
        elif i + 1 < len(lines) and _UNDERLINE.match(lines[i + 1]) and len(line.strip()) <= len(lines[i + 1].strip()) + 2:
            i += 2
        else:
            break
    rest = "\n".join(lines[i:])
    return rest if rest.strip() else text


# --------------------------------------------------------------------------- indexing


def duration(seconds: float) -> str:
    """``42s``, ``3:07``, ``1:02:05``: short enough for a progress line."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def files_done(files: int, chunks: int, chunks_at_files: int, total: int) -> float:
    """Files finished, counting the file being embedded in part, for a bar and an ETA that move per batch.

    Files are finished in groups (a commit), but chunks are embedded batch by batch: the chunks embedded
    since the last finished file count at the chunks-per-file rate seen so far, never up to the next file.
    """
    if files <= 0 or files >= total or chunks_at_files <= 0:
        return float(min(files, total))
    per_file = chunks_at_files / files
    return min(files + (chunks - chunks_at_files) / per_file, files + 0.99 * (total - files))


def eta(done: float, total: int, elapsed: float) -> float | None:
    """Seconds left at the average pace of the run so far; None until there is a pace to go by."""
    if done <= 0 or elapsed <= 0 or total <= 0:
        return None
    return max(0.0, elapsed * (total - done) / done)


def skip_summary(skipped: Iterable[Mapping[str, Any]], hint: str = "-v lists them") -> str | None:
    """One line for a run's skipped files: ``skipped 3 files: 2 binary, 1 too large; -v lists them``.

    None when nothing was skipped, or when every skip is one the last run reported already (``new`` false):
    those are counted in the result line instead, so a re-run every hour does not repeat the same warning.
    A single new skip is named outright.
    """
    items = list(skipped)
    new = [s for s in items if s.get("new", True)]
    if not new:
        return None
    if len(new) == 1:
        named = f"skipped {display_path(new[0]['path'])}: {new[0]['reason']}"
        before = len(items) - 1
        return named + (f" ({before} more as before; {hint})" if before else "")
    kinds = Counter(str(s.get("kind") or "unreadable") for s in items)
    listed = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))
    fresh = f" ({len(new)} new)" if len(new) < len(items) else ""
    return f"skipped {len(items)} files{fresh}: {listed}; {hint}"


def index_summary(report: Mapping[str, Any]) -> str:
    """The line ``rag index`` ends with, from its JSON report."""
    counts = [
        (report.get("files_unchanged", 0), "unchanged"),
        (report.get("files_skipped", 0), "skipped"),
        (report.get("files_empty", 0), "empty"),
        (report.get("files_deleted", 0), "deleted"),
    ]
    detail = ", ".join(f"{n:,} {what}" for n, what in counts if n)
    indexed = report.get("files_indexed", 0)
    head = f"indexed {indexed:,} file{'' if indexed == 1 else 's'}" if indexed or report.get("files_deleted") else "nothing to do"
    parts = [head + (f" ({detail})" if detail else "")]
    added, removed = report.get("chunks_added", 0), report.get("chunks_removed", 0)
    change = " ".join(f for f in (f"+{added:,}" if added else "", f"−{removed:,}" if removed else "") if f)
    parts.append(f"{report.get('chunks_total', 0):,} chunks" + (f" ({change})" if change else ""))
    embedded, cached = report.get("embedded_texts", 0), report.get("cache_hits", 0)
    if embedded or cached:
        parts.append(f"{embedded:,} embedded, {cached:,} from cache")
    seconds = float(report.get("seconds", 0.0))
    rate = f", {embedded / seconds:.1f} chunks/s" if embedded and seconds else ""
    parts.append((f"{seconds:.1f} s" if seconds < 60 else duration(seconds)) + rate)
    return " · ".join(parts)


# --------------------------------------------------------------------------- hits and scores

SCORE_LEGEND = {
    "rerank": "score: the reranker's relevance",
    "hybrid": "score: fused ranks, 1.00 = first by dense and by full text; --json has each",
    "zscore": "score: fused z-score, std devs above this query's candidates; --json has each",
    "dense": "score: cosine similarity to the query",
    "fts": "score: BM25 full-text relevance (comparable within one query only)",
}


def score_kind(scores: Mapping[str, float]) -> str:
    """The stage that put a hit where it is: the reranker when there was one, else the retrieval mode."""
    for kind in ("rerank", "hybrid", "dense", "fts"):
        if kind in scores:
            return kind
    return "dense"


def shown_score(scores: Mapping[str, float], retrieval: RetrievalConfig | int) -> float:
    """The score shown beside a hit: the one that ordered the list, so it never rises going down it.

    Hybrid with ``zscore`` fusion shows the fused z-score as it is (standard deviations above the query's
    candidates). With ``rrf`` (or a bare ``rrf_k``) it orders by reciprocal rank fusion, sum over retrievers
    of 1 / (rrf_k + rank); shown divided by its best possible value, 2 / (rrf_k + 1), so 1.00 means ranked
    first by both dense and full-text search and 0.50 first by one and not found by the other. A raw RRF
    value (0.0315) means nothing to a person. Reranked hits show the reranker's score; dense the cosine;
    fts the BM25 score. ``--json`` keeps every retriever's score and rank.
    """
    kind = score_kind(scores)
    value = scores.get(kind, 0.0)
    if kind != "hybrid" or (not isinstance(retrieval, int) and retrieval.fusion == "zscore"):
        return value
    rrf_k = retrieval if isinstance(retrieval, int) else retrieval.rrf_k
    return value * (rrf_k + 1) / 2


def score_legend(scores: Mapping[str, float], retrieval: RetrievalConfig) -> str:
    """The line under a list of hits saying what its scores are."""
    kind = score_kind(scores)
    return SCORE_LEGEND["zscore" if kind == "hybrid" and retrieval.fusion == "zscore" else kind]


def score_text(value: float) -> str:
    """Four characters for scores up to 10 (cosine, fused, rerank); BM25 values may be larger."""
    text = f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}" if abs(value) < 100 else f"{value:.0f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text  # -0.00 reads as a sign error


def place(source: str, heading: str = "", title: str = "", width: int | None = None) -> str:
    """``path › heading`` with the path relative to the working folder; the title when there is no heading.

    Within ``width`` columns the heading gives way, never the path: its outer levels first
    (``path › … › Limits``), then the end of the innermost one; a path longer than the width stays whole.
    """
    path, name = display_path(source), heading or title
    full = path + (f" › {name}" if name else "")
    if width is None or len(full) <= width or not name:
        return full
    inner = name.rsplit(" › ", 1)[-1]
    short = f"{path} › … › {inner}" if inner != name else full
    if len(short) <= width:
        return short
    room = width - len(path) - len(" › ")
    return f"{path} › {inner[: room - 1]}…" if room >= 12 else path


HIT_INDENT = 12  # "  1   0.98  ": where the place and the snippet start


def hit_lines(rank: int, score: str, where: str, text: str, width: int) -> tuple[str, str]:
    """A hit in two lines that fit ``width`` columns without breaking a path: the place in full, then a snippet.

    ``  1   0.98  docs/guide.md › Limits`` then the text without its heading lines, indented under the place
    and cut to the width, its markup shown as a page shows it (the one rule extractive answers use).
    """
    from rag.markup import inline

    head = f"{rank:>3}  {score:>5}  ".ljust(HIT_INDENT)
    body = snippet(inline(without_headings(text)), max(20, width - len(head))) if text.strip() else ""
    return head + where, (" " * len(head) + body) if body else ""


@dataclass
class SourceLine:
    """One line of the Sources list under an answer: every [n] that points at the same file and heading."""

    numbers: list[int]
    where: str
    score: float


def merge_sources(entries: Iterable[tuple[int, str, float]]) -> list[SourceLine]:
    """(n, place, score) in rank order -> one line per place, at the position and score of its first [n].

    Chunks of one section often rank together; "[1][3] guide.md › Limits" reads better than two lines.
    The numbers stay those of the answer's citations.
    """
    lines: dict[str, SourceLine] = {}
    for n, where, score in entries:
        if where in lines:
            lines[where].numbers.append(n)
        else:
            lines[where] = SourceLine([n], where, score)
    return list(lines.values())
