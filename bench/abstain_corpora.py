"""The corpora bench/abstain_bench.py measures on, built and indexed under a work folder (reused between runs).

- pkgdocs   /work/corpus/pkgdocs: docs folders of eight Python packages, as a user indexes them
- pkgdocs-lean  the same without theme files, style sheets, SVG and Sphinx build output (the default
            excludes issue 10 asks for; see LEAN_EXCLUDE), to show what such junk does to the calibration
- scifact   BEIR SciFact abstracts (../shared/data/scifact-dev), indexed as ``rag eval`` does
- samples   the repo's samples/ folder (5 documents)
- manpages  man pages rendered from this machine (bench/abstain/manpages.pages names them): terse reference prose
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from rag.profile import Profile, StoreConfig

REPO = Path(__file__).resolve().parents[1]
QUESTIONS = REPO / "bench" / "abstain"
PKGDOCS = Path("/work/corpus/pkgdocs")
SCIFACT = REPO.parent.parent / "shared" / "data" / "scifact-dev"
if not SCIFACT.is_dir():
    SCIFACT = Path("/work/shared/data/scifact-dev")


# Sphinx theme scripts (icon names such as "lemon" or "globe-africa"), style sheets, SVG path data, build copies.
LEAN_EXCLUDE = [
    *("*.svg", "*.css", "*.map", "*.min.js", "*.afdesign"),
    *("_static/", "_build/", "_sources/", "searchindex.js", "objects.inv", "genindex.html", "py-modindex.html"),
]


@dataclass
class Corpus:
    name: str
    profile: Profile
    real: list[str]  # questions the corpus answers


def profile_for(work: Path, name: str) -> Profile:
    profile = Profile(store=dataclasses.replace(StoreConfig(), uri=str(work / name / ".rag")), base_dir=work / name)
    if name == "pkgdocs-lean":
        profile.sources = dataclasses.replace(profile.sources, exclude=LEAN_EXCLUDE)
    return profile


def read_questions(path: Path) -> list[str]:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def build_manpages(dest: Path) -> Path:
    """Render each listed page (sections 1, 8 and 5) to text once."""
    dest.mkdir(parents=True, exist_ok=True)
    names = " ".join(read_questions(QUESTIONS / "manpages.pages")).split()
    env = {**os.environ, "MANWIDTH": "80", "MAN_KEEP_FORMATTING": "0"}
    for name in names:
        for section in ("1", "8", "5"):
            out = dest / f"{name}.{section}.txt"
            if out.exists():
                continue
            where = subprocess.run(["man", "-w", section, name], capture_output=True, text=True)
            if where.returncode != 0:
                continue
            shown = subprocess.run(["man", "-P", "cat", section, name], capture_output=True, text=True, env=env)
            plain = subprocess.run(["col", "-bx"], input=shown.stdout, capture_output=True, text=True).stdout
            if plain.strip():
                out.write_text(plain, encoding="utf-8")
    return dest


def prepare(work: Path, names: list[str], verbose: bool = True) -> list[Corpus]:
    """Index each corpus (incremental: an unchanged corpus costs a second) and return it with its real questions."""
    from rag.indexer import index_documents, index_paths

    corpora = []
    for name in names:
        profile = profile_for(work, name)
        if name == "scifact":
            from rag.datasets import iter_corpus, load_beir

            report = index_documents(profile, iter_corpus(SCIFACT), prune=True)
            real = list(load_beir(SCIFACT, "train").queries.values())
        else:
            if name == "pkgdocs-lean" and not (work / name).exists() and (work / "pkgdocs").exists():
                shutil.copytree(work / "pkgdocs", work / name)  # its index and embeddings: this run only deletes
            folder = {"pkgdocs": PKGDOCS, "pkgdocs-lean": PKGDOCS, "samples": REPO / "samples"}.get(name)
            report = index_paths(profile, [folder or build_manpages(work / "manpages-src")])
            real = read_questions(QUESTIONS / f"{name.removesuffix('-lean')}.txt")
        if verbose:
            print(f"# {name}: {report.chunks_total} chunks, indexed {report.files_indexed} files in {report.seconds:.1f} s", flush=True)
        corpora.append(Corpus(name, profile, real))
    return corpora
