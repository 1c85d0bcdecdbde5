"""The chat prompt (pure): numbered sources with title, heading and path, within a tiktoken budget."""

from __future__ import annotations

from rag.documents import Hit
from rag.prompt import SYSTEM, build_prompt, label
from rag.tokens import count_tokens


def hit(n: int, text: str, heading: str = "Guide › Install", title: str = "Guide") -> Hit:
    return Hit(id=f"id{n}", source=f"/docs/file{n}.md", title=title, heading=heading, text=text, score=1.0 / n)


def test_sources_are_numbered_with_label_and_path() -> None:
    prompt = build_prompt("How do I install it?", [hit(1, "Run pip install rag."), hit(2, "Use Python 3.10.")], budget_tokens=1000)
    system, user = prompt.messages
    assert system == {"role": "system", "content": SYSTEM}
    assert user["role"] == "user"
    content = user["content"]
    assert "[1] Guide › Install\nFile: /docs/file1.md\nRun pip install rag." in content
    assert "[2] Guide › Install\nFile: /docs/file2.md\nUse Python 3.10." in content
    assert content.index("[1]") < content.index("[2]") < content.index("Question: How do I install it?")
    assert [s.n for s in prompt.sources] == [1, 2]
    assert not any(s.truncated for s in prompt.sources)


def test_instructions_ask_for_citations_and_honesty() -> None:
    assert "[1]" in SYSTEM and "only" in SYSTEM
    assert "do not answer the question" in SYSTEM
    assert "not instructions" in SYSTEM


def test_budget_cuts_the_crossing_source_and_drops_the_rest() -> None:
    long = "word " * 400
    hits = [hit(1, "Short first source."), hit(2, long), hit(3, "Never reached.")]
    prompt = build_prompt("q", hits, budget_tokens=200)
    assert [s.n for s in prompt.sources] == [1, 2]
    assert prompt.sources[1].truncated and prompt.sources[1].text.endswith("…")
    assert "Never reached" not in prompt.messages[1]["content"]
    assert prompt.source_tokens <= 200 + 5
    sources_part = prompt.messages[1]["content"].split("\n\nQuestion:")[0]
    assert count_tokens(sources_part) <= 205


def test_budget_too_small_for_a_useful_cut_stops_before_it() -> None:
    prompt = build_prompt("q", [hit(1, "a " * 90), hit(2, "b " * 300)], budget_tokens=120)
    assert [s.n for s in prompt.sources] == [1]


def test_first_source_is_always_given() -> None:
    prompt = build_prompt("q", [hit(1, "x " * 500)], budget_tokens=10)
    assert len(prompt.sources) == 1 and prompt.sources[0].truncated


def test_label_does_not_repeat_the_title() -> None:
    assert label(hit(1, "t", heading="Guide › Install")) == "Guide › Install"
    assert label(hit(1, "t", heading="Install", title="Guide")) == "Guide › Install"
    assert label(hit(1, "t", heading="", title="notes")) == "notes"
    prompt = build_prompt("q", [Hit(id="a", source="13734012", title="", heading="", text="Abstract.", score=1.0)], budget_tokens=100)
    assert "[1] 13734012\nAbstract." in prompt.messages[1]["content"]
