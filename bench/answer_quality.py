"""Extractive answer quality on real package docs: does `rag ask` name what answers the question, and does markup leak?

    python bench/answer_quality.py [--corpus DIR] [--work DIR] [--questions FILE] [--baseline REF] [--show N]

Indexes the corpus (the docs of attrs, werkzeug, black, coverage, alembic,
marshmallow, structlog and scrapy: $RAG_PKGDOCS, else corpus/pkgdocs in a
folder above the repository; it is not part of it) into ``--work``, unless an
index is there already (``--reindex`` runs `rag index` anyway), then asks
every question of ``--questions`` with the embedded default and no chat model
(extractive), no reranker, no answer cache, and a threshold that lets every
question through (whether to answer at all is measured elsewhere). Each
question lists terms a correct answer must name (``expect_any``).

Prints, per question, whether the answer names an expected term (and whether
any source it was given contains one: if none does, retrieval failed, not
extraction), then:
  - named: share of answers that name an expected term (and the share among the reachable questions);
  - leaked: share of answers showing markup (roles, inline literals, directives, underlines, fences, link syntax);
  - words: mean answer length in words, and lines at 80 columns.
``--baseline REF`` runs the same questions on the code of a git commit (e.g. ``main``) in a second process over the
same index (built by this code when there was none; pass another ``--work`` if REF cannot read it) and prints both. ``--show N`` prints the first N answers wrapped at 80 columns, as a reader sees them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXCLUDE = ["*.svg", "*.css", "*.js", "*.map", "*.png", "*.jpg", "*.gif", "*.ico", "*.woff*", "*.ttf", "*.eot"]

# Markup a reader should never see, in the prose of an answer (code blocks, indented by 4, are shown verbatim).
LEAKS = {
    "role": re.compile(r"(?<![\w`]):[\w-]+(?::[\w-]+)?:`|(?<![\w`])\{[\w:-]+\}`[\w~!]"),
    "literal": re.compile(r"``"),
    "directive": re.compile(r"\.\. [\w:-]+::|\.\. _[^:\n]+:|^\s*\.\.\s*$", re.MULTILINE),
    "underline": re.compile(r"(?<![\w`])([=~^*#\"+])\1{3,}|(?<![\w`])-{4,}"),
    "fence": re.compile(r"```|^\s*:::", re.MULTILINE),
    "link": re.compile(r"\]\([^)\s]*\)|!\[|(?<=\w)`__?(?![\w`])|<https?://[^>\s]+>`"),
    "entity": re.compile(r"&(?:[a-z]+|#\d+);"),
}


def leaks(answer: str) -> list[str]:
    """The kinds of markup showing in the prose of ``answer``."""
    prose = "\n".join(line for line in answer.splitlines() if not line.startswith("    "))
    return [kind for kind, pattern in LEAKS.items() if pattern.search(prose)]


def names(text: str, term: str) -> bool:
    """``term`` occurs in ``text``, not inside a longer word (a short term such as ``-m`` or ``88`` matches exactly)."""
    pattern = r"(?<![\w-])" + re.escape(term) + (r"(?![\w])" if len(term) <= 3 and term[-1].isalnum() else "")
    return re.search(pattern, text, 0 if len(term) <= 3 else re.IGNORECASE) is not None


def run(corpus: Path, work: Path, questions: list[dict[str, Any]], reindex: bool = False) -> list[dict[str, Any]]:
    """Index (when there is no index yet, or ``reindex``) and ask every question with the code this process imports."""
    from rag.answer import Settings
    from rag.ask import Asker
    from rag.profile import load_profile

    profile_path = work / "rag.yaml"
    profile_path.write_text(
        f"store:\n  uri: {work / 'index'}\nsources:\n  exclude: {json.dumps(EXCLUDE)}\ncache:\n  enabled: false\ntrace:\n  path: null\n"
    )
    if reindex or not (work / "index").exists():
        command = [sys.executable, "-m", "rag", "index", str(corpus), "--profile", str(profile_path)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"rag index failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    profile = load_profile(str(profile_path))
    settings = Settings.from_profile(profile, cache=False, extractive=True, threshold=-1.0)
    asker = Asker(profile, cache=False, rerank=False)
    out = []
    try:
        for q in questions:
            started = time.perf_counter()
            result = asker.ask(q["question"], settings)
            seconds = time.perf_counter() - started
            expected = q["expect_any"]
            given = " ".join(s.hit.text for s in result.sources)
            out.append(
                {
                    "question": q["question"],
                    "answer": result.answer,
                    "named": any(names(result.answer, t) for t in expected),
                    "reachable": any(names(given, t) for t in expected),
                    "leaks": leaks(result.answer),
                    "words": len(result.answer.split()),
                    "lines": sum(len(textwrap.wrap(p, 80)) or 1 for p in result.answer.splitlines()),
                    "seconds": seconds,
                }
            )
    finally:
        asker.close()
    return out


def baseline(ref: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The same run on the code of ``ref``, in a second process with that code first on its path."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "cli"], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        env = {**os.environ, "PYTHONPATH": str(Path(tmp) / "cli")}
        command = [sys.executable, __file__, "--corpus", args.corpus, "--work", args.work, "--questions", args.questions, "--json"]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"baseline run on {ref} failed: {done.stderr.strip()[-500:]}")
        return list(json.loads(done.stdout))


def summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    n = len(rows)
    reachable = [r for r in rows if r["reachable"]]
    return {
        "named": sum(r["named"] for r in rows) / n,
        "named_reachable": sum(r["named"] for r in reachable) / max(1, len(reachable)),
        "reachable": len(reachable) / n,
        "leaked": sum(bool(r["leaks"]) for r in rows) / n,
        "words": sum(r["words"] for r in rows) / n,
        "lines": sum(r["lines"] for r in rows) / n,
        "seconds": sum(r["seconds"] for r in rows) / n,
    }


def show(rows: list[dict[str, Any]], count: int) -> None:
    for r in rows[:count]:
        print(f"\n## {r['question']}  ({'named' if r['named'] else 'MISSED'}{', leaks ' + ' '.join(r['leaks']) if r['leaks'] else ''})")
        for paragraph in r["answer"].split("\n"):
            print(paragraph if paragraph.startswith("    ") else textwrap.fill(paragraph, 80))


def default_corpus() -> Path:
    """$RAG_PKGDOCS, else corpus/pkgdocs in a folder above the repository (a worktree sits one level deeper)."""
    if os.environ.get("RAG_PKGDOCS"):
        return Path(os.environ["RAG_PKGDOCS"])
    found = [p / "corpus" / "pkgdocs" for p in ROOT.parents if (p / "corpus" / "pkgdocs").is_dir()]
    return found[0] if found else ROOT.parent / "corpus" / "pkgdocs"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default=str(default_corpus()), help="the package docs to index")
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "rag-answer-quality"), help="index folder (reused)")
    ap.add_argument("--questions", default=str(ROOT / "bench" / "questions" / "pkgdocs.yaml"))
    ap.add_argument("--reindex", action="store_true", help="run rag index over the corpus even if --work has an index")
    ap.add_argument("--baseline", metavar="REF", help="also run the code of this git commit, e.g. main")
    ap.add_argument("--show", type=int, default=0, metavar="N", help="print the first N answers at 80 columns")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON (what --baseline reads)")
    args = ap.parse_args()
    corpus, work = Path(args.corpus), Path(args.work)
    if not corpus.is_dir():
        sys.exit(f"no corpus at {corpus}: pass --corpus DIR (the package docs, e.g. built with ../shared/tools/realcorpus)")
    work.mkdir(parents=True, exist_ok=True)
    questions = yaml.safe_load(Path(args.questions).read_text())
    rows = run(corpus, work, questions, args.reindex)  # first, so the index is this code's when it builds one
    before = baseline(args.baseline, args) if args.baseline else None
    if args.json:
        json.dump(rows, sys.stdout)
        return
    show(rows, args.show)
    print(f"\n{len(rows)} questions over {corpus}")
    for i, r in enumerate(rows):
        was = "" if before is None else ("  was named" if before[i]["named"] else "  was missed")
        mark = "named " if r["named"] else ("MISSED" if r["reachable"] else "absent")
        print(f"  {mark} {r['words']:4d} words{' leaks ' + ','.join(r['leaks']) if r['leaks'] else ''}  {r['question']}{was}")
    runs = [("before " + str(args.baseline), before), ("after", rows)] if before is not None else [("this code", rows)]
    print(f"\n{'':18} {'named':>6} {'of reachable':>12} {'reachable':>9} {'leaked':>6} {'words':>6} {'lines@80':>8} {'s/ask':>6}")
    for name, data in runs:
        if data is None:
            continue
        s = summary(data)
        print(
            f"{name[:18]:18} {s['named']:6.0%} {s['named_reachable']:12.0%} {s['reachable']:9.0%} {s['leaked']:6.0%}"
            f" {s['words']:6.1f} {s['lines']:8.1f} {s['seconds']:6.2f}"
        )


if __name__ == "__main__":
    main()
