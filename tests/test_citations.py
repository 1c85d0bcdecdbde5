"""Citation parsing and checking (pure): what counts as [n], what is removed, and streaming equals batch."""

from __future__ import annotations

import random

import pytest

from rag.citations import CitationFilter, check, marker_numbers, parse_citations


def test_parse_in_order_of_first_citation() -> None:
    assert parse_citations("Foxes [2] eat mice [1][2]. Dogs [3, 1] and cats [4-6].") == [2, 1, 3, 4, 5, 6]
    assert parse_citations("no citations here, only [links](http://x) and [notes]") == []


@pytest.mark.parametrize(
    ("inner", "numbers"),
    [("1", [1]), ("1, 3", [1, 3]), ("2-4", [2, 3, 4]), ("2 – 3", [2, 3]), ("1; 2", [1, 2]), ("3, 3", [3]), ("1-9999", [1, 9999])],
)
def test_marker_numbers(inner: str, numbers: list[int]) -> None:
    assert marker_numbers(inner) == numbers


def test_invalid_citations_are_removed_and_reported() -> None:
    checked = check("Foxes eat mice [1]. They fly [7]. Both [1, 9]. See [2-4].", 3)
    assert checked.text == "Foxes eat mice [1]. They fly. Both [1]. See [2, 3]."
    assert checked.cited == [1, 2, 3]
    assert checked.invalid == [7, 9, 4]


def test_zero_and_adjacent_markers() -> None:
    checked = check("A [0][2] b [5][1].", 2)
    assert checked.text == "A [2] b [1]."
    assert checked.invalid == [0, 5]


def test_code_indexing_is_not_a_citation() -> None:
    checked = check("Use `args[0]` or items[12] as in [1].", 1)
    assert checked.text == "Use `args[0]` or items[12] as in [1]."
    assert checked.cited == [1] and checked.invalid == []


def test_no_citations_and_empty_text() -> None:
    assert check("The sources do not say.", 3).cited == []
    assert check("", 3).text == ""


TEXT = "Foxes eat mice [1]. They fly [7].  Both [1, 7]; x[0] [link](u) [2-4]\n[9][2] end [3 foxes[1] and [12"


def test_streaming_equals_batch_for_every_split() -> None:
    expected = check(TEXT, 3)
    for i in range(len(TEXT) + 1):
        for j in range(i, len(TEXT) + 1, 3):
            f = CitationFilter(3)
            streamed = f.feed(TEXT[:i]) + f.feed(TEXT[i:j]) + f.feed(TEXT[j:]) + f.flush()
            assert streamed == expected.text, (i, j)
            assert f.invalid == expected.invalid


def test_streaming_one_character_at_a_time() -> None:
    rng = random.Random(7)
    for _ in range(20):
        f = CitationFilter(3)
        out, pos = [], 0
        while pos < len(TEXT):
            step = rng.randint(1, 4)
            out.append(f.feed(TEXT[pos : pos + step]))
            pos += step
        out.append(f.flush())
        assert "".join(out) == check(TEXT, 3).text


def test_filter_holds_back_only_what_may_be_a_marker() -> None:
    f = CitationFilter(2)
    assert f.feed("Foxes eat mice") == "Foxes eat mice"
    assert f.feed(" [") == ""  # could still become a citation
    assert f.feed("9]") == ""  # an invalid one: dropped with its space
    assert f.feed(". Next [") == ". Next"
    assert f.feed("link") == " [link"
    assert f.flush() == ""
    assert f.invalid == [9]
