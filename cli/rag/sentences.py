"""Split document text into sentences. Pure.

Chunks come from Markdown, reStructuredText, HTML, PDF and plain text, so
wrapped lines are joined, headings (ATX, underlined, or a short line without
closing punctuation), code blocks and tables are left out, list items are
sentences of their own, and a short code block after a sentence ending in ":"
joins it in backticks. Sentence ends are ``.``/``!``/``?`` before a capital
(or, after a plain word, a lower-case start such as "rag supports ..."), never
after an abbreviation or an initial.
"""

from __future__ import annotations

import re

MAX_CHARS = 500  # longer "sentences" (tables flattened by PDF extraction) are cut

_FENCE = re.compile(r"^\s*(```|~~~)")
_ATX = re.compile(r"^\s{0,3}#{1,6}(\s|$)")
_UNDERLINE = re.compile(r"^\s*([=\-~^\"'`#*+.:_])\1{2,}\s*$")
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+")
_TABLE = re.compile(r"^\s*\|")
_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_EMPHASIS = re.compile(r"(\*\*|__)(.+?)\1")
_RST_LITERAL = re.compile(r"``(.+?)``")
_SECTION_LABEL = re.compile(r"^[A-Z]{4,}(?:\s+[A-Z]{2,})*\s*:?\s+(?=[A-Z][a-z])")  # "RESULTS Of the ..." in structured abstracts
_END = re.compile(r"([.!?…]+[\"'”’)\]]*)\s+(?=[\"'“‘(\[]?([A-Za-z0-9]))")
_ABBREVIATIONS = {
    "al", "approx", "ca", "cf", "co", "dr", "e.g", "eg", "eq", "etc", "fig", "figs", "i.e", "ie", "inc", "jr", "ltd",
    "mr", "mrs", "ms", "p", "pp", "prof", "ref", "refs", "sr", "st", "vol", "vs",
}  # fmt: skip


def split_sentences(text: str) -> list[tuple[str, int]]:
    """(sentence, paragraph number) for the prose in ``text``: Markdown, reStructuredText, wrapped plain text or PDF text."""
    out: list[tuple[str, int]] = []
    for unit, paragraph in _units(text):
        for sentence in _split_unit(unit):
            sentence = _SECTION_LABEL.sub("", sentence)
            if _is_prose(sentence):
                out.append((_cap(sentence), paragraph))
    return out


def _units(text: str) -> list[tuple[str, int]]:
    """Runs of prose (a paragraph, or one list item) with wrapped lines joined.

    A short code block after a sentence that ends in ":" joins it in backticks
    ("Install it with pip: `pip install .`"); other code is left out.
    """
    units: list[tuple[str, int]] = []
    lines: list[str] = []
    code: list[str] = []
    paragraph, in_fence, item = 0, False, False

    def flush() -> None:
        if lines and (item or not _looks_like_heading(lines)):
            units.append((_join(lines), paragraph))
        lines.clear()

    def end_code() -> None:
        if code and units and units[-1][0].endswith(":") and len(code) <= 2 and all(len(c) <= 80 for c in code):
            units[-1] = (units[-1][0] + " `" + "; ".join(code) + "`", units[-1][1])
        code.clear()

    for line in text.splitlines():
        stripped = line.strip()
        if _FENCE.match(line):
            flush()
            in_fence = not in_fence
            if not in_fence:
                end_code()
            continue
        if in_fence or (line.startswith(("    ", "\t")) and not lines and stripped):
            code.append(stripped) if stripped else None
            continue
        if not stripped:
            flush()
            paragraph += 1
            continue
        end_code()
        if _UNDERLINE.match(stripped):
            if lines:
                lines.pop()  # the heading this underlines
            flush()
        elif _ATX.match(line) or _TABLE.match(line):
            flush()
        elif _BULLET.match(line):
            flush()
            item = True
            lines.append(_BULLET.sub("", line, count=1).strip())
            continue
        else:
            if not lines:
                item = False
            elif len(lines) == 1 and not item and _looks_like_heading(lines, 6) and stripped[:1].isupper():
                lines.clear()  # a heading line glued to its paragraph (PDF text)
            lines.append(stripped)
    flush()
    end_code()
    return units


def _looks_like_heading(lines: list[str], words: int = 10) -> bool:
    """One short line without closing punctuation: a heading from HTML or PDF text, not a sentence."""
    return len(lines) == 1 and len(lines[0].split()) <= words and not lines[0].rstrip("\"')]`*").endswith((".", "!", "?", ":", ";", "…"))


def _join(lines: list[str]) -> str:
    text = lines[0]
    for line in lines[1:]:
        hyphenated = text.endswith("-") and len(text) > 1 and text[-2].isalpha() and line[:1].islower()
        text = text + line if hyphenated else f"{text} {line}"
    text = _IMAGE.sub("", text)
    text = _LINK.sub(r"\1", text)
    text = _RST_LITERAL.sub(r"`\1`", text)
    return _EMPHASIS.sub(r"\2", text).strip()


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
