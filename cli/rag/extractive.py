"""The extractive answer: the source sentences and code blocks that best answer the question. Pure.

Used when no chat model is configured. The sources are split into pieces
(:mod:`rag.sentences`): sentences, and code blocks with the sentence that
introduces them ("To capture output, use:"). Each piece is scored by cosine
similarity with the question under the embedding model (the caller passes
``encode``); a code block is embedded with its introduction (or heading)
before its first lines, as that is what says what the code is for. A few
pieces are picked by maximal marginal relevance, so a near-copy of a picked
piece (overlapping chunks repeat text) never comes twice, and a prior
follows the retriever's order: the best-ranked sources carry signal that a
sentence's cosine lacks. Picked pieces are shown grouped by source, best
source first, in document order within a source, each followed by its
``[n]``; a code block is shown indented, after its introduction. A sentence
that opens with "This"/"It"/"However" or follows a short "No." brings the
sentence before it, so it makes sense on its own; a short picked sentence
brings the next one when that one leans on it. Sentences answering a
question in the text (FAQs) are as relevant as the question, nearly, and a
section whose heading matches the question is preferred over one whose
heading does not. A sentence under a heading that names something (an
option, a setting, a function) and does not name it itself is shown after
that name ("`--line-length`: How many characters per line to allow."). What
is shown has its markup stripped; the citation points at the stored chunk.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rag import markup
from rag.providers.base import Vectors
from rag.sentences import split_pieces

Encode = Callable[[str, list[str]], tuple[Vectors, Vectors]]  # (question, texts) -> (question vector, text vectors)

MAX_SENTENCES = 3
MAX_PER_SOURCE = 60  # pieces scored per source: bounds the embedding cost of one answer
MIN_WORDS = 4
NEAR_COPY = 0.92  # cosine above which two pieces say the same thing
BELOW_BEST = 0.15  # picked pieces score at most this far below the best one
DIVERSITY = 0.3  # weight of redundancy against relevance in MMR
RANK_BONUS = 0.1  # the best-ranked source's pieces get this much, the second's half, the third's a third...
WEAK = 0.25  # cosine below which the best piece hardly relates to the question (MiniLM)
SECTION_WEIGHT = 0.15  # share of a heading's similarity (above the floor) added to its pieces
SECTION_FLOOR = 0.2  # headings such as "page 2" or "faq" say nothing; they lift nothing
INHERIT = 0.95  # share of a question's similarity passed on to the sentences that answer it
FOLLOW_BELOW_WORDS = 10  # a picked sentence shorter than this brings the next one when that one leans on it
CODE_EMBED_LINES = 8  # a code block is embedded with this many of its first lines
CODE_SHOWN_LINES = 10  # and shown with at most this many
POINTER_WORDS = 16  # "See X for more." shorter than this points elsewhere and answers nothing
UNINTRODUCED = 0.05  # a code block no sentence introduces is harder to read: it must match this much better
NAMES_CODE = 0.04  # a piece that shows code (a block, or a name in backticks) says what to type: it gets this much
MAX_CODE = 1  # code blocks in one answer: a second one is rarely more than another variant of the first

_POINTER = re.compile(
    r"(?:see|refer to|read|(?:you can )?(?:learn|read) more|for (?:more|further) (?:information|details|examples))\b",
    re.IGNORECASE,
)
_LEANS_BACK = {
    "also", "but", "hence", "however", "it", "its", "so", "such", "that", "these", "they", "their", "this", "those",
    "thus", "therefore", "then", "there", "he", "she", "his", "her", "both", "instead", "otherwise",
}  # fmt: skip
# A heading that names a thing: code, a setting (DOWNLOAD_DELAY), an option (--check), a config key ([run] branch)
_NAME = re.compile(
    r"`[^`]+`|\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b|(?<![\w-])--?[a-z][\w-]*|\b[a-z]+_[a-z_]+\b"
    r"|\b[A-Za-z_]\w*\.[A-Za-z_]\w*\b|^\[[\w:.-]+\]\s+\w+$"
)


@dataclass
class Sentence:
    """A piece an answer can quote: a sentence, or a code block (``code``) introduced by ``lead``."""

    text: str
    source: int  # index of its source, 0 = best ranked
    position: int  # order within its source
    paragraph: int
    question: bool = False  # never picked, but the sentences after it answer it (FAQs)
    short: bool = False  # "No.", "Yes.": never picked or embedded, shown before the sentence that follows
    code: bool = False
    lead: str = ""
    heading: str = ""  # the section it is in, as shown

    @property
    def pickable(self) -> bool:
        return not (self.question or self.short or self.pointer)

    @property
    def pointer(self) -> bool:
        """A cross-reference ("See the integration docs for more examples."): its words match the question, and
        it answers nothing."""
        return not self.code and len(self.text.split()) < POINTER_WORDS and _POINTER.match(self.text) is not None

    def embedded(self) -> str:
        """What is embedded: a code block is known by what introduces it, then by its first lines."""
        if not self.code:
            return self.text
        head = "\n".join(self.text.splitlines()[:CODE_EMBED_LINES])
        intro = self.lead or self.heading
        return f"{intro}\n{head}" if intro else head


@dataclass
class Picked:
    sentence: Sentence
    score: float  # what selection ranked by: similarity plus rank and section priors
    context: Sentence | None = None  # the sentence before, shown first because this one leans on it
    follow: Sentence | None = None  # the sentence after, shown too because it continues this short one
    similarity: float = 0.0  # cosine with the question (or with the question it answers, in an FAQ)


@dataclass
class Extract:
    answer: str
    picked: list[Picked]
    cited: list[int]  # source numbers (1-based), in the order they appear in the answer
    scored: int  # texts embedded

    @property
    def best(self) -> float:
        return max((p.similarity for p in self.picked), default=0.0)

    @property
    def weak(self) -> bool:
        """Even the best piece is barely related to the question: the sources probably do not answer it."""
        return self.best < WEAK


def candidates(texts: Sequence[str], per_source: int = MAX_PER_SOURCE, headings: Sequence[str] | None = None) -> list[Sentence]:
    """Pieces of every source, each distinct piece once (at its best-ranked source)."""
    seen: set[str] = set()
    out: list[Sentence] = []
    for source, text in enumerate(texts):
        kept = 0
        above = markup.inline(headings[source].strip()) if headings is not None else ""
        for position, piece in enumerate(split_pieces(text)):
            key = piece.text if piece.code else " ".join(piece.text.lower().split())
            if kept >= per_source:
                break
            short = not piece.code and len(piece.text.split()) < MIN_WORDS
            if key in seen and not short:
                continue
            seen.add(key)
            question = not piece.code and piece.text.endswith("?")
            heading = piece.heading or above
            out.append(Sentence(piece.text, source, position, piece.paragraph, question, short, piece.code, piece.lead, heading))
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
    """Indices of the picked pieces with their scores, best first (maximal marginal relevance).

    ``section`` holds each piece's heading similarity to the question: a heading that matches lifts all
    of its pieces alike, which moves the choice between sections, never the order within one. A piece
    may be picked when it is within BELOW_BEST of the best either with its priors or on similarity alone:
    the priors can bring a piece in (the retriever knew better), but not push a close one out.
    """
    pickable = np.array([s.pickable for s in sentences], dtype=bool)
    if not pickable.any():
        return []
    bonus = np.array([rank_bonus(s.source, sources) + _code_prior(s) for s in sentences])
    if section is not None:
        bonus += np.array([SECTION_WEIGHT * max(0.0, h - SECTION_FLOOR) for h in section])
    similarity = _inherit(vectors @ question, sentences)
    similarity[~pickable] = -np.inf
    relevance = similarity + bonus
    near = relevance >= float(relevance.max()) - BELOW_BEST
    eligible = near | (similarity >= float(similarity.max()) - BELOW_BEST)
    chosen: list[int] = []
    while len(chosen) < k:
        best, best_value = -1, -np.inf
        for i in np.argsort(-relevance, kind="stable"):
            if not eligible[i] or i in chosen or (sentences[i].code and sum(sentences[j].code for j in chosen) >= MAX_CODE):
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


def _code_prior(s: Sentence) -> float:
    if s.code:
        return NAMES_CODE - (0.0 if s.lead else UNINTRODUCED)
    return NAMES_CODE if "`" in s.text else 0.0


def rank_bonus(source: int, sources: int) -> float:
    """The retriever's order as a prior, steepest at the top: the best-ranked source is the one most often right.

    (On the package-docs questions, ``bench/answer_quality.py``, 1/(1 + rank) did as well as a linear decay
    from twice as high, and better than a linear one this high; none of them moved more than a few answers.)
    """
    return RANK_BONUS / (1 + source) if sources > 1 else 0.0


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
    """The answer text: sources in order of their best piece, pieces in document order, each with its [n].

    One paragraph per source; a code block breaks it, indented by four spaces.
    """
    order: list[int] = []
    for p in picked:
        if p.sentence.source not in order:
            order.append(p.sentence.source)
    blocks: list[str] = []
    for source in order:
        run: list[str] = []
        shown: set[int] = set()
        named_last = ""
        for p in sorted((p for p in picked if p.sentence.source == source), key=lambda p: p.sentence.position):
            if p.context is not None and p.context.position not in shown:
                shown.add(p.context.position)
                run.append(p.context.text)  # cited by the sentence it leads into
            for s in (p.sentence, p.follow):
                if s is None or s.position in shown:
                    continue
                shown.add(s.position)
                if s.code:
                    run.append(cite(s.lead, source + 1) if s.lead else f"{s.heading} [{source + 1}]:".lstrip())
                    blocks.append(" ".join(run))
                    blocks.append(indent_code(s.text))
                    run = []
                else:
                    run.append(cite(named(s) if s.heading != named_last else s.text, source + 1))
                    named_last = s.heading
        if run:
            blocks.append(" ".join(run))
    return "\n\n".join(b for b in blocks if b), [s + 1 for s in order]


def named(s: Sentence) -> str:
    """A sentence under a short heading that names something it does not name itself, after that name."""
    found = _NAME.search(s.heading) if len(s.heading.split()) <= 4 else None
    if found is None or found.group(0).strip("`") in s.text:
        return s.text
    return f"{s.heading}: {s.text}"


def indent_code(code: str) -> str:
    lines = code.splitlines()
    if len(lines) > CODE_SHOWN_LINES:
        lines = [*lines[:CODE_SHOWN_LINES], "…"]
    return "\n".join(f"    {line}" if line.strip() else "" for line in lines)


def cite(sentence: str, n: int) -> str:
    """``"Files are skipped."`` -> ``"Files are skipped [1]."``; ``"Use:"`` -> ``"Use [1]:"``; a sentence ending
    in inline code gets a full stop after the marker; other endings get the marker after them."""
    if not sentence:
        return f"[{n}]"
    if sentence.endswith((".", ":")) and not sentence.endswith(("..", "::")):
        return f"{sentence[:-1]} [{n}]{sentence[-1]}"
    if sentence.endswith("`"):
        return f"{sentence} [{n}]."  # "Install it with pip: `pip install .`" ends a sentence without a full stop
    return f"{sentence} [{n}]"


def extract(question: str, texts: Sequence[str], encode: Encode, k: int = MAX_SENTENCES, headings: Sequence[str] | None = None) -> Extract:
    """Pick up to ``k`` pieces from ``texts`` (sources, best first) that answer ``question``.

    ``headings`` (one per source, e.g. its heading path's last part) are the section of the pieces that
    come before any heading in the text; headings are embedded in the same call as the pieces.
    """
    sentences = candidates(texts, headings=headings)
    embedded = [i for i, s in enumerate(sentences) if not s.short]
    if not any(s.pickable for s in sentences):
        return _fallback(texts)
    titles = list(dict.fromkeys(s.heading for s in sentences if s.heading))
    q, some = encode(question, [sentences[i].embedded() for i in embedded] + titles)
    q, some = np.asarray(q, dtype=np.float32), np.asarray(some, dtype=np.float32)
    vectors = np.zeros((len(sentences), some.shape[1]), dtype=np.float32)
    vectors[embedded] = some[: len(embedded)]
    heading_similarity = dict(zip(titles, (some[len(embedded) :] @ q).tolist(), strict=True))
    section = [heading_similarity.get(s.heading, 0.0) for s in sentences] if titles else None
    similarity = _inherit(vectors @ q, sentences)
    picked = []
    for i, score in select(q, vectors, sentences, len(texts), k, section):
        s = sentences[i]
        picked.append(Picked(s, score, _context(s, sentences), _follow(s, sentences), float(similarity[i])))
    answer, cited = compose(picked)
    return Extract(answer, picked, cited, len(embedded) + len(titles))


def _neighbour(s: Sentence, sentences: Sequence[Sentence], step: int) -> Sentence | None:
    """The sentence just before (-1) or after (+1) ``s`` in its paragraph."""
    return next((o for o in sentences if (o.source, o.paragraph, o.position) == (s.source, s.paragraph, s.position + step)), None)


def _context(s: Sentence, sentences: Sequence[Sentence]) -> Sentence | None:
    """The sentence before ``s`` when ``s`` leans on it ("This ...") or it is a short answer ("No.")."""
    before = _neighbour(s, sentences, -1)
    if s.code or before is None or before.question or before.code:
        return None
    first = re.sub(r"[^\w]", "", s.text.split(None, 1)[0]).lower()
    return before if first in _LEANS_BACK or before.short else None


def _follow(s: Sentence, sentences: Sequence[Sentence]) -> Sentence | None:
    """The sentence after a short picked one when it leans on it ("Hybrid search is the default. It runs ...")."""
    if s.code or len(s.text.split()) >= FOLLOW_BELOW_WORDS:
        return None
    after = _neighbour(s, sentences, 1)
    if after is None or not after.pickable or after.code:
        return None
    return after if re.sub(r"[^\w]", "", after.text.split(None, 1)[0]).lower() in _LEANS_BACK else None


def _fallback(texts: Sequence[str]) -> Extract:
    """No prose to pick from (tables): the start of the best source, its markup stripped."""
    for source, text in enumerate(texts):
        flat = " ".join(markup.strip(text).split())
        if flat:
            words = flat.split()
            head = " ".join(words[:60]) + (" …" if len(words) > 60 else "")
            return Extract(cite(head, source + 1), [], [source + 1], 0)
    return Extract("", [], [], 0)
