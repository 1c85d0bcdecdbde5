"""The extractive answer: the source sentences that best answer the question. Pure.

Used when no chat model is configured. The sources are split into sentences
(:mod:`rag.sentences`), each sentence is scored by cosine similarity with the question under the
embedding model (the caller passes ``encode``), and a few are picked by
maximal marginal relevance, so a near-copy of a picked sentence (overlapping
chunks repeat text) never comes twice. Picked sentences are shown grouped by
source, best source first, in document order within a source, each followed
by its ``[n]``. A sentence that opens with "This"/"It"/"However" or follows
a short "No." brings the sentence before it, so it makes sense on its own;
a short picked sentence brings the next one when that one leans on it.
Sentences answering a question in the text (FAQs) are as relevant as the
question, nearly, and a source whose heading matches the question is
preferred over one whose heading does not.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rag.providers.base import Vectors
from rag.sentences import split_sentences

Encode = Callable[[str, list[str]], tuple[Vectors, Vectors]]  # (question, sentences) -> (question vector, sentence vectors)

MAX_SENTENCES = 3
MAX_PER_SOURCE = 60  # sentences scored per source: bounds the embedding cost of one answer
MIN_WORDS = 4
NEAR_COPY = 0.92  # cosine above which two sentences say the same thing
BELOW_BEST = 0.15  # picked sentences score at most this far below the best one
DIVERSITY = 0.3  # weight of redundancy against relevance in MMR
SOURCE_BONUS = 0.04  # the best-ranked source's sentences get this much, the last source's none
WEAK = 0.25  # cosine below which the best sentence hardly relates to the question (MiniLM)
SECTION_WEIGHT = 0.3  # share of a heading's similarity (above the floor) added to its sentences
SECTION_FLOOR = 0.2  # headings such as "page 2" or "faq" say nothing; they lift nothing
INHERIT = 0.95  # share of a question's similarity passed on to the sentences that answer it
FOLLOW_BELOW_WORDS = 10  # a picked sentence shorter than this brings the next one when that one leans on it

_LEANS_BACK = {
    "also", "but", "hence", "however", "it", "its", "so", "such", "that", "these", "they", "their", "this", "those",
    "thus", "therefore", "then", "there", "he", "she", "his", "her", "both", "instead", "otherwise",
}  # fmt: skip


@dataclass
class Sentence:
    text: str
    source: int  # index of its source, 0 = best ranked
    position: int  # order within its source
    paragraph: int
    question: bool = False  # never picked, but the sentences after it answer it (FAQs)
    short: bool = False  # "No.", "Yes.": never picked or embedded, shown before the sentence that follows

    @property
    def pickable(self) -> bool:
        return not (self.question or self.short)


@dataclass
class Picked:
    sentence: Sentence
    score: float  # what selection ranked by: similarity plus source and section priors
    context: Sentence | None = None  # the sentence before, shown first because this one leans on it
    follow: Sentence | None = None  # the sentence after, shown too because it continues this short one
    similarity: float = 0.0  # cosine with the question (or with the question it answers, in an FAQ)


@dataclass
class Extract:
    answer: str
    picked: list[Picked]
    cited: list[int]  # source numbers (1-based), in the order they appear in the answer
    scored: int  # sentences embedded

    @property
    def best(self) -> float:
        return max((p.similarity for p in self.picked), default=0.0)

    @property
    def weak(self) -> bool:
        """Even the best sentence is barely related to the question: the sources probably do not answer it."""
        return self.best < WEAK


def candidates(texts: Sequence[str], per_source: int = MAX_PER_SOURCE) -> list[Sentence]:
    """Sentences of every source, each distinct sentence once (at its best-ranked source)."""
    seen: set[str] = set()
    out: list[Sentence] = []
    for source, text in enumerate(texts):
        kept = 0
        for position, (sentence, paragraph) in enumerate(split_sentences(text)):
            key = " ".join(sentence.lower().split())
            if kept >= per_source:
                break
            short = len(sentence.split()) < MIN_WORDS
            if key in seen and not short:
                continue
            seen.add(key)
            out.append(Sentence(sentence, source, position, paragraph, question=sentence.endswith("?"), short=short))
            kept += not short
    return out


def select(
    question: Vectors,
    vectors: Vectors,
    sentences: Sequence[Sentence],
    sources: int,
    k: int = MAX_SENTENCES,
    section: Sequence[float] | None = None,
) -> list[tuple[int, float]]:
    """Indices of the picked sentences with their scores, best first (maximal marginal relevance).

    ``section`` holds each source's heading similarity to the question: a heading that matches lifts all
    of its sentences alike, which moves the choice between sources, never the order within one.
    """
    pickable = np.array([s.pickable for s in sentences], dtype=bool)
    if not pickable.any():
        return []
    bonus = np.array([SOURCE_BONUS * (1 - s.source / max(1, sources - 1)) if sources > 1 else 0.0 for s in sentences])
    if section is not None:
        bonus += np.array([SECTION_WEIGHT * max(0.0, section[s.source] - SECTION_FLOOR) for s in sentences])
    relevance = _inherit(vectors @ question, sentences) + bonus
    relevance[~pickable] = -np.inf
    floor = float(relevance.max()) - BELOW_BEST
    chosen: list[int] = []
    while len(chosen) < k:
        best, best_value = -1, -np.inf
        for i in np.argsort(-relevance, kind="stable"):
            if relevance[i] < floor:
                break
            if i in chosen:
                continue
            redundancy = max((float(vectors[i] @ vectors[j]) for j in chosen), default=0.0)
            if redundancy > NEAR_COPY:
                continue
            value = (1 - DIVERSITY) * relevance[i] - DIVERSITY * redundancy
            if value > best_value:
                best, best_value = int(i), value
        if best < 0:
            break
        chosen.append(best)
    return [(i, float(relevance[i])) for i in chosen]


def _inherit(similarity: Vectors, sentences: Sequence[Sentence]) -> Vectors:
    """A sentence answering a question in the text (FAQ style) is as relevant as that question, nearly."""
    out = similarity.copy()
    asked: float | None = None
    for i, s in enumerate(sentences):
        if i and (s.source, s.paragraph) != (sentences[i - 1].source, sentences[i - 1].paragraph):
            asked = None
        if s.question:
            asked = float(similarity[i])
        elif asked is not None and not s.short:
            out[i] = max(out[i], INHERIT * asked)
    return out


def compose(picked: list[Picked]) -> tuple[str, list[int]]:
    """The answer text: sources in order of their best sentence, sentences in document order, each with its [n]."""
    order: list[int] = []
    for p in picked:
        if p.sentence.source not in order:
            order.append(p.sentence.source)
    parts: list[str] = []
    for source in order:
        shown: set[int] = set()
        for p in sorted((p for p in picked if p.sentence.source == source), key=lambda p: p.sentence.position):
            if p.context is not None and p.context.position not in shown:
                shown.add(p.context.position)
                parts.append(p.context.text)  # cited by the sentence it leads into
            for s in (p.sentence, p.follow):
                if s is not None and s.position not in shown:
                    shown.add(s.position)
                    parts.append(cite(s.text, source + 1))
    return " ".join(parts), [s + 1 for s in order]


def cite(sentence: str, n: int) -> str:
    """``"Files are skipped."`` -> ``"Files are skipped [1]."``; other endings get the marker after them."""
    if sentence.endswith(".") and not sentence.endswith(".."):
        return f"{sentence[:-1]} [{n}]."
    return f"{sentence} [{n}]"


def extract(question: str, texts: Sequence[str], encode: Encode, k: int = MAX_SENTENCES, headings: Sequence[str] | None = None) -> Extract:
    """Pick up to ``k`` sentences from ``texts`` (sources, best first) that answer ``question``.

    ``headings`` (one per source, e.g. its heading path's last part) are embedded in the same call.
    """
    sentences = candidates(texts)
    embedded = [i for i, s in enumerate(sentences) if not s.short]
    if not any(s.pickable for s in sentences):
        return _fallback(texts)
    titles = [h.strip() for h in headings] if headings is not None else []
    unique = [t for t in dict.fromkeys(titles) if t]
    q, some = encode(question, [sentences[i].text for i in embedded] + unique)
    q, some = np.asarray(q, dtype=np.float32), np.asarray(some, dtype=np.float32)
    vectors = np.zeros((len(sentences), some.shape[1]), dtype=np.float32)
    vectors[embedded] = some[: len(embedded)]
    heading_similarity = dict(zip(unique, (some[len(embedded) :] @ q).tolist(), strict=True))
    section = [heading_similarity.get(t, 0.0) for t in titles] if titles else None
    similarity = _inherit(vectors @ q, sentences)
    picked = []
    for i, score in select(q, vectors, sentences, len(texts), k, section):
        s = sentences[i]
        picked.append(Picked(s, score, _context(s, sentences), _follow(s, sentences), float(similarity[i])))
    answer, cited = compose(picked)
    return Extract(answer, picked, cited, len(embedded) + len(unique))


def _context(s: Sentence, sentences: Sequence[Sentence]) -> Sentence | None:
    """The sentence before ``s`` when ``s`` leans on it ("This ...") or it is a short answer ("No.")."""
    before = next((o for o in sentences if (o.source, o.paragraph, o.position) == (s.source, s.paragraph, s.position - 1)), None)
    if before is None or before.question:
        return None
    first = re.sub(r"[^\w]", "", s.text.split(None, 1)[0]).lower()
    return before if first in _LEANS_BACK or before.short else None


def _follow(s: Sentence, sentences: Sequence[Sentence]) -> Sentence | None:
    """The sentence after a short picked one when it leans on it ("Hybrid search is the default. It runs ...")."""
    if len(s.text.split()) >= FOLLOW_BELOW_WORDS:
        return None
    after = next((o for o in sentences if (o.source, o.paragraph, o.position) == (s.source, s.paragraph, s.position + 1)), None)
    if after is None or not after.pickable:
        return None
    return after if re.sub(r"[^\w]", "", after.text.split(None, 1)[0]).lower() in _LEANS_BACK else None


def _fallback(texts: Sequence[str]) -> Extract:
    """No prose to pick from (code, tables): the start of the best source."""
    for source, text in enumerate(texts):
        flat = " ".join(text.split())
        if flat:
            words = flat.split()
            head = " ".join(words[:60]) + (" …" if len(words) > 60 else "")
            return Extract(cite(head, source + 1), [], [source + 1], 0)
    return Extract("", [], [], 0)
