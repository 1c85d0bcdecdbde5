"""Split document text into the pieces an answer can quote: sentences and code blocks. Pure.

The text's blocks come from :mod:`rag.blocks` (paragraphs with their markup
stripped, code as written). Sentence ends are ``.``/``!``/``?`` before a
capital (or, after a plain word, a lower-case start such as "rag supports
..."), never after an abbreviation, an initial or inside inline code. A code
block is a piece of its own, introduced by the last sentence of the
paragraph before it when that ends in ":" (its *lead*; "For example:" brings
the sentence before it too).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.blocks import parse

MAX_CHARS = 500  # longer "sentences" (tables flattened by PDF extraction) are cut

_SECTION_LABEL = re.compile(r"^[A-Z]{4,}(?:\s+[A-Z]{2,})*\s*:?\s+(?=[A-Z][a-z])")  # "RESULTS Of the ..." in structured abstracts
_END = re.compile(r"([.!?…]+[\"'”’)\]]*)\s+(?=[\"'“‘(\[`]?([A-Za-z0-9]))")
_LEAD_LEANS = {"for", "e.g.", "eg", "here", "this", "so", "then", "thus", "like", "example", "examples", "such", "also"}
_ABBREVIATIONS = {
    "al", "approx", "ca", "cf", "co", "dr", "e.g", "eg", "eq", "etc", "fig", "figs", "i.e", "ie", "inc", "jr", "ltd",
    "mr", "mrs", "ms", "p", "pp", "prof", "ref", "refs", "sr", "st", "vol", "vs",
}  # fmt: skip


@dataclass(frozen=True)
class Piece:
    """A sentence, or a code block with the sentence that introduces it."""

    text: str  # as shown: markup stripped; a code block's lines joined by newlines, dedented
    paragraph: int
    code: bool = False
    lead: str = ""  # code only: the sentence before it that ends in ":" ("To capture output, use:")
    heading: str = ""  # the heading it is under within the text, as shown ("" when the text starts under it)


def split_sentences(text: str) -> list[tuple[str, int]]:
    """(sentence, paragraph number) for the prose in ``text``: Markdown, reStructuredText, wrapped plain text or PDF text."""
    return [(p.text, p.paragraph) for p in split_pieces(text) if not p.code]


def split_pieces(text: str) -> list[Piece]:
    """The sentences and code blocks of ``text``, in document order."""
    blocks = parse(text)
    introduces = {b.intro: i for i, b in enumerate(blocks) if b.code and b.intro is not None}
    leads: dict[int, str] = {}
    out: list[Piece] = []
    for i, block in enumerate(blocks):
        if block.code:
            out.append(Piece(block.text, block.paragraph, code=True, lead=leads.get(i, ""), heading=block.heading))
            continue
        sentences = _split_unit(block.text)
        if i in introduces:
            keep = len(sentences) - 1
            if keep and _leans_back(sentences[keep]):
                keep -= 1  # "For example:" is no introduction without the sentence before it
            leads[introduces[i]] = " ".join(sentences[keep:])
            sentences = sentences[:keep]
        for sentence in sentences:
            sentence = _SECTION_LABEL.sub("", sentence)
            if _is_prose(sentence):
                out.append(Piece(_cap(sentence), block.paragraph, heading=block.heading))
    return out


def _leans_back(sentence: str) -> bool:
    """A short introduction that needs the sentence before it ("For example:", "Like this:")."""
    return len(sentence.split()) < 8 or sentence.split(None, 1)[0].lower().strip(",") in _LEAD_LEANS


def _split_unit(unit: str) -> list[str]:
    sentences: list[str] = []
    start = 0
    for match in _END.finditer(unit):
        before = unit[start : match.start()].rsplit(None, 1)
        word = before[-1].lower().rstrip(".") if before else ""
        numbered = word in ("no", "nos") and unit[match.end() : match.end() + 1].isdigit()
        if match.group(1) == "." and (word in _ABBREVIATIONS or numbered or (len(word) == 1 and word.isalpha())):
            continue  # "e.g. Python", "J. Smith", "No. 5"
        if match.group(2).islower() and not (len(word) >= 3 and word.isalpha()):
            continue  # a lower-case start ("... retrieval. rag supports") only after a plain word
        if unit.count("`", start, match.start()) % 2:
            continue  # inside inline code ("`a. b`")
        sentences.append(unit[start : match.end(1)].strip())
        start = match.end()
    sentences.append(unit[start:].strip())
    return [s for s in sentences if s]


def _is_prose(sentence: str) -> bool:
    return sum(c.isalpha() for c in sentence) >= len(sentence) / 2 and not sentence.endswith(":")


def _cap(sentence: str) -> str:
    if len(sentence) <= MAX_CHARS:
        return sentence
    return sentence[:MAX_CHARS].rsplit(" ", 1)[0].rstrip(",;:") + " …"
