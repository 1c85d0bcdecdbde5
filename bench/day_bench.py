"""A user's working day on a real corpus nobody here wrote, through the CLI as a person runs it.

    python bench/day_bench.py [--corpus DIR] [--work DIR] [--questions FILE]

The corpus is what ``../shared/tools/realcorpus DIR`` builds (docs folders of PyPI
packages: Markdown, reST, HTML, images, empty files, changelogs): $RAG_PKGDOCS,
else corpus/pkgdocs above the repository. It is copied into ``--work`` (a fresh
temp folder by default) so that the day can edit it. The default profile is
used: the embedded model, default excludes, ``ask.threshold: auto``.

In order, each step a real ``rag`` process:

1. ``rag index`` the corpus: wall time, files, chunks, skipped-file summary.
2. ``rag index`` again with nothing changed: wall time, and whether the table version moved (it must not).
3. Thirty days later (``faketime``): edit one file, delete one, add an empty one, ``rag index``: exit code,
   what was re-indexed, versions kept on disk, and the ``rag status`` upkeep line.
4. ``rag ask --json`` on off-topic questions (bench/abstain/offtopic.txt): the share that got "no answer".
5. ``rag ask --json`` on real questions (bench/questions/pkgdocs.yaml): the share answered, and the share of
   answers that name what answers the question (the terms each question lists), with no markup leaking.

It prints one line per figure, then a summary table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from answer_quality import default_corpus, leaks, names  # noqa: E402

NO_ANSWER_EXIT = 10


def rag(
    args: list[str], cwd: Path, *, faketime: str | None = None, timeout: float = 7200
) -> tuple[subprocess.CompletedProcess[str], float]:
    command = [sys.executable, "-m", "rag", *args]
    if faketime:
        command = ["faketime", faketime, *command]
    env = {k: v for k, v in os.environ.items() if k not in ("RAG_PROFILE", "RAG_STORE")}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return done, time.perf_counter() - started


def table_version(cwd: Path) -> int:
    done, _ = rag(["status", "--json"], cwd)
    return int(json.loads(done.stdout)["version"])


def versions_on_disk(store: Path) -> int:
    return len(list((store / "chunks.lance" / "_versions").glob("*.manifest")))


def index_steps(docs: Path, work: Path, out: dict[str, Any], reuse: bool) -> None:
    done, seconds = rag(["index", "docs", "--json"], work)
    if reuse:
        print("index: reused from an earlier run (--reuse); this run brought it up to date")
    if done.returncode != 0:
        sys.exit(f"rag index failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    report = json.loads(done.stdout)
    out["index_s"] = seconds
    out["files"], out["chunks"], out["skipped"] = report["files_indexed"], report["chunks_total"], report["files_skipped"]
    print(f"index: {seconds:.1f} s, {report['files_indexed']} files, {report['chunks_total']:,} chunks, {report['files_skipped']} skipped")
    kinds: dict[str, int] = {}
    for s in report["skipped"]:
        kinds[s["kind"]] = kinds.get(s["kind"], 0) + 1
    print(f"  skipped by kind: {kinds}")

    before = table_version(work)
    done, seconds = rag(["index", "docs"], work)
    after = table_version(work)
    out["noop_s"], out["noop_version_moved"] = seconds, after != before
    print(f"no-op re-run: {seconds:.2f} s, exit {done.returncode}, table version {before} -> {after}")

    # Thirty days on: an edit, a deletion and a new empty file, under a clock that has moved.
    edited = sorted(docs.rglob("*.rst"))[0]
    edited.write_text(edited.read_text(encoding="utf-8", errors="replace") + "\n\nAppendix: the day bench edited this file.\n")
    removed = sorted(docs.rglob("*.md"))[0]
    removed.unlink()
    (docs / "empty_module.py").write_text("")
    done, seconds = rag(["index", "docs", "--json"], work, faketime="+30 days")
    report = json.loads(done.stdout) if done.returncode == 0 else {}
    status, _ = rag(["status"], work, faketime="+30 days")
    upkeep = [line for line in status.stdout.splitlines() if line.startswith("upkeep")]
    out["aged_exit"] = done.returncode
    out["aged_versions_on_disk"] = versions_on_disk(work / ".rag")
    print(
        f"aged re-index (+30 days): exit {done.returncode}, {seconds:.1f} s, indexed {report.get('files_indexed')}, "
        f"deleted {report.get('files_deleted')}, versions on disk {out['aged_versions_on_disk']}, "
        f"upkeep {upkeep[0] if upkeep else 'nothing owed'}"
    )
    if done.returncode != 0:
        print(f"  stderr: {done.stderr.strip()[-400:]}")


def ask(work: Path, question: str) -> tuple[int, dict[str, Any]]:
    done, _ = rag(["ask", question, "--json", "--no-cache"], work)
    try:
        return done.returncode, json.loads(done.stdout)
    except ValueError:
        return done.returncode, {"error": done.stderr.strip()}


def question_steps(work: Path, offtopic: list[str], questions: list[dict[str, Any]], out: dict[str, Any]) -> None:
    abstained = 0
    for q in offtopic:
        code, result = ask(work, q)
        abstained += code == NO_ANSWER_EXIT
        if code != NO_ANSWER_EXIT:
            best = (result.get("retrieved") or {}).get("threshold") or {}
            print(f"  answered off-topic: {q!r} (exit {code}, threshold {best.get('value')}, passed {best.get('passed')})")
    out["offtopic_abstain"] = abstained / len(offtopic)
    print(f"off-topic: {abstained}/{len(offtopic)} got no answer (false answers {len(offtopic) - abstained})")

    answered = named = leaked = 0
    for q in questions:
        code, result = ask(work, q["question"])
        if code != 0:
            print(f"  no answer to a real question: {q['question']!r} (exit {code})")
            continue
        answered += 1
        answer = result.get("answer", "")
        named += any(names(answer, t) for t in q["expect_any"])
        leaked += bool(leaks(answer))
    n = len(questions)
    out["real_answered"], out["real_named"], out["real_leaked"] = answered / n, named / n, leaked / n
    print(f"real questions: {answered}/{n} answered (false abstains {n - answered}), {named}/{n} name the answer, {leaked} leak markup")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default=str(default_corpus()))
    ap.add_argument("--work", default=None, help="work folder (default: a new temp folder, removed after)")
    ap.add_argument("--questions", default=str(ROOT / "bench" / "questions" / "pkgdocs.yaml"))
    ap.add_argument("--offtopic", default=str(ROOT / "bench" / "abstain" / "offtopic.txt"))
    ap.add_argument("--reuse", action="store_true", help="keep --work's corpus copy and index: time only the no-op and later steps")
    args = ap.parse_args()
    if shutil.which("faketime") is None:
        sys.exit("faketime is needed (Debian: apt install faketime)")
    work = Path(args.work or tempfile.mkdtemp(prefix="rag-day-"))
    docs = work / "docs"
    reuse = args.reuse and (work / ".rag").exists()
    if not reuse:
        shutil.rmtree(docs, ignore_errors=True)
        shutil.rmtree(work / ".rag", ignore_errors=True)
        shutil.copytree(args.corpus, docs, symlinks=False)
    offtopic = [line.strip() for line in Path(args.offtopic).read_text().splitlines() if line.strip() and not line.startswith("#")]
    questions = yaml.safe_load(Path(args.questions).read_text())
    out: dict[str, Any] = {"corpus": args.corpus}
    index_steps(docs, work, out, reuse)
    question_steps(work, offtopic, questions, out)
    print()
    print(f"{'figure':<34}{'value':>12}")
    rows = [
        ("index wall s", f"{out['index_s']:.1f}"),
        ("files / chunks", f"{out['files']}/{out['chunks']}"),
        ("no-op re-run wall s", f"{out['noop_s']:.2f}"),
        ("no-op moved the table version", "yes" if out["noop_version_moved"] else "no"),
        ("aged re-index exit code", str(out["aged_exit"])),
        ("table versions kept on disk", str(out["aged_versions_on_disk"])),
        ("off-topic: no answer", f"{out['offtopic_abstain']:.0%}"),
        ("real: answered", f"{out['real_answered']:.0%}"),
        ("real: names the answer", f"{out['real_named']:.0%}"),
        ("real: markup leaked", f"{out['real_leaked']:.0%}"),
    ]
    for label, value in rows:
        print(f"{label:<34}{value:>12}")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}))


if __name__ == "__main__":
    main()
