"""Extractive answers on the sample documents: does the answer hold the sentence a reader needs?

A regression guard for sentence splitting, scoring and selection together,
with the real embedded model and retrieval. Each case names text the answer
must contain; a few misses are tolerated (MiniLM is small), a drop is not.
"""

from __future__ import annotations

from pathlib import Path

from rag.ask import Asker
from rag.indexer import index_paths
from rag.profile import parse_profile

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
CASES = [
    ("which rerankers are supported", "Cohere, Jina, vLLM"),
    ("what is hybrid search", "fuses the two rankings"),
    ("how do I change the embedding model", "rag index --rebuild"),
    ("which metrics does eval compute", "nDCG, recall, precision"),
    ("how do I use an environment variable in the profile", "${VAR}"),
    ("what happens to files larger than the limit", "20 MB are skipped"),
    ("can two processes index at the same time", "No. A writer takes a lock on the index"),
    ("How do I install rag?", "pip install"),
    ("What happens if I press Ctrl-C while indexing?", "The index stays consistent"),
    ("Does rag send my documents anywhere?", "Not with the default profile"),
    ("what file formats can be indexed", "Markdown, HTML"),
    ("how does reciprocal rank fusion score documents", "1 / (k + rank)"),
]


def test_extractive_answers_hold_the_needed_sentence(tmp_path: Path) -> None:
    profile = parse_profile(f"store:\n  uri: {tmp_path / 'index'}\n", base_dir=tmp_path)
    index_paths(profile, [SAMPLES])
    asker = Asker(profile)
    misses = []
    for question, needed in CASES:
        result = asker.ask(question)
        assert result.extractive and result.cited and not result.no_answer
        assert len(result.answer.split()) <= 120, result.answer  # a few sentences, not a dump
        if needed not in result.answer:
            misses.append((question, result.answer))
    assert len(misses) <= 3, misses
