"""Citations in an answer: ``[n]`` markers that must name a source that was given. Pure.

A marker is a bracketed list of source numbers: ``[2]``, ``[1, 3]``, ``[2-4]``
(``;`` and en dashes work too). Numbers outside the given sources are removed
— a marker left with none is dropped with the space before it — and
reported, so a reader never follows a citation to nothing. A marker glued to
a word (``items[0]``) whose numbers are not all sources is code, left alone.

:class:`CitationFilter` does the same to a stream of text deltas, holding
back only what could still turn out to be a marker, so a streamed answer
reads exactly like the checked one: ``check(text, n)`` is by definition the
filter fed ``text`` in one piece.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_ITEM = r"\d{1,4}(?:\s*[-–]\s*\d{1,4})?"
_ONE = rf"\[\s*({_ITEM}(?:\s*[,;]\s*{_ITEM})*)\s*\]"
MARKER = re.compile(_ONE)
RUN = re.compile(rf"(\s*)((?:{_ONE})+)")  # adjacent markers, "[1][7]", are checked together
# A suffix that may still grow into (or onto) a run of markers: whitespace, whole markers, then "[" and marker characters.
_OPEN_TAIL = re.compile(rf"\s*(?:{_ONE})*(?:\[[\d\s,;\-–]*)?\Z")
_MAX_RANGE = 50  # "[1-9999]" is not a citation worth expanding


@dataclass
class Checked:
    """An answer with its invalid citations removed: which sources it cites and which numbers were dropped."""

    text: str
    cited: list[int] = field(default_factory=list)  # in order of first citation
    invalid: list[int] = field(default_factory=list)


def marker_numbers(inner: str) -> list[int]:
    """The numbers a marker's inside names: ``"1, 3-5"`` -> ``[1, 3, 4, 5]``."""
    numbers: list[int] = []
    for item in re.split(r"\s*[,;]\s*", inner.strip()):
        bounds = [int(x) for x in re.split(r"\s*[-–]\s*", item) if x.isdigit()]
        if len(bounds) == 2 and 0 <= bounds[1] - bounds[0] <= _MAX_RANGE:
            numbers.extend(range(bounds[0], bounds[1] + 1))
        else:
            numbers.extend(bounds)
    return list(dict.fromkeys(numbers))


def parse_citations(text: str) -> list[int]:
    """Every source number cited in ``text``, in order of first citation."""
    found: list[int] = []
    for match in MARKER.finditer(text):
        found.extend(marker_numbers(match.group(1)))
    return list(dict.fromkeys(found))


def check(text: str, sources: int) -> Checked:
    """Remove citations of numbers outside ``1..sources``."""
    f = CitationFilter(sources)
    cleaned = f.feed(text) + f.flush()
    cited = [n for n in parse_citations(cleaned) if 1 <= n <= sources]  # glued code such as x[0] is no citation
    return Checked(cleaned, cited, f.invalid)


class CitationFilter:
    """Streaming :func:`check`: ``feed`` each delta, print what it returns, then print ``flush()``."""

    def __init__(self, sources: int) -> None:
        self.sources = sources
        self.invalid: list[int] = []
        self._held = ""
        self._before = ""  # the last character given out, for a marker at the start of the next piece

    def feed(self, delta: str) -> str:
        text = self._held + delta
        tail = _OPEN_TAIL.search(text)
        cut = tail.start() if tail else len(text)
        self._held = text[cut:]
        return self._clean(text[:cut])

    def flush(self) -> str:
        text, self._held = self._held, ""
        return self._clean(text)

    def _clean(self, text: str) -> str:
        if not text:
            return text
        before = self._before
        self._before = text[-1]

        def replace(match: re.Match[str]) -> str:
            prev = "" if match.group(1) else (text[match.start() - 1] if match.start() else before)
            return self._replace(match, prev.isalnum() or prev == "_")

        return RUN.sub(replace, text)

    def _replace(self, run: re.Match[str], glued: bool) -> str:
        kept: list[str] = []
        invalid: list[int] = []
        for marker in MARKER.finditer(run.group(2)):
            numbers = marker_numbers(marker.group(1))
            valid = [n for n in numbers if 1 <= n <= self.sources]
            invalid.extend(n for n in numbers if n not in valid)
            if len(valid) == len(numbers):
                kept.append(marker.group(0))
            elif valid:
                kept.append(f"[{', '.join(map(str, valid))}]")
        if glued and invalid:
            return run.group(0)  # code such as items[0], not a citation
        self.invalid.extend(n for n in dict.fromkeys(invalid) if n not in self.invalid)
        return run.group(1) + "".join(kept) if kept else ""
