"""Extractive answers (pure): sentence splitting, selection, composition.

Selection is tested with a bag-of-words encoder (deterministic, so the
expected picks are obvious) and once with the real embedded model.
"""

from __future__ import annotations

import re

import numpy as np

from rag.extractive import CODE_SHOWN_LINES, cite, extract
from rag.sentences import split_pieces, split_sentences


def bag_of_words(question: str, sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
    vocab: dict[str, int] = {}
    texts = [question, *sentences]
    for t in texts:
        for w in re.findall(r"[a-z0-9]+", t.lower()):
            vocab.setdefault(w, len(vocab))
    vecs = np.zeros((len(texts), len(vocab)), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in re.findall(r"[a-z0-9]+", t.lower()):
            vecs[i, vocab[w]] += 1
    vecs /= np.clip(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-9, None)
    return vecs[0], vecs[1:]


def texts(text: str) -> list[str]:
    return [s for s, _ in split_sentences(text)]


def test_markdown_headings_code_and_wrapped_lines() -> None:
    md = (
        "# Install\n\nInstall rag with pip from a checkout\nof the repository:\n\n    pip install .\n\n"
        "Python 3.10 or newer is required. No API key is needed.\n\n```\nrag index ./docs\n```\n\n| a | b |\n|---|---|\n"
    )
    assert texts(md) == [
        "Install rag with pip from a checkout of the repository: `pip install .`",
        "Python 3.10 or newer is required.",
        "No API key is needed.",
    ]


def test_rst_headings_lists_and_abbreviations() -> None:
    rst = (
        "Metrics\n-------\n\nFor each query rag computes nDCG, e.g. at 10. Dr. Smith and J. Doe agree.\n\n"
        "- Recall counts found documents\n- Precision counts right ones\n"
    )
    assert texts(rst) == [
        "For each query rag computes nDCG, e.g. at 10.",
        "Dr. Smith and J. Doe agree.",
        "Recall counts found documents",
        "Precision counts right ones",
    ]


def test_html_like_heading_lines_and_hyphenated_pdf_text_and_links() -> None:
    text = "Configuring rag with a profile\n\nEvery command reads a pro-\nfile written in [YAML](https://yaml.org). It is **strict**.\n"
    # a hyphen at a line end is kept: in wrapped Markdown it is part of a compound ("well-known")
    assert texts(text) == ["Every command reads a pro-file written in YAML.", "It is strict."]


def test_structured_abstract_labels_are_dropped() -> None:
    text = "BACKGROUND Foxes are red animals. RESULTS Of the 32,441 samples 16 were positive. AIDS patients were not affected."
    assert texts(text) == ["Foxes are red animals.", "Of the 32,441 samples 16 were positive.", "AIDS patients were not affected."]


def test_picks_the_answer_and_cites_its_source() -> None:
    sources = [
        "Files larger than 20 MB are skipped with a warning. Binary files are skipped too.",
        "The index lives in a LanceDB table. Queries run offline.",
    ]
    found = extract("which files larger than 20 MB are skipped", sources, bag_of_words, k=1)
    assert found.answer == "Files larger than 20 MB are skipped with a warning [1]."
    assert found.cited == [1]


def test_near_copies_from_overlapping_chunks_come_once() -> None:
    sentence = "Hybrid search fuses dense and full-text rankings with reciprocal rank fusion."
    sources = [
        f"{sentence} It is the default.",
        f"{sentence}",
        "Hybrid search fuses dense and full text rankings with reciprocal rank fusion.",
    ]
    found = extract("how does hybrid search fuse rankings", sources, bag_of_words)
    assert found.answer.count("reciprocal rank fusion") == 1


def test_readable_order_sources_by_best_sentence_then_document_order() -> None:
    sources = [
        "Cats sleep a lot. Foxes hunt mice at night. Foxes also eat berries.",
        "Foxes eat mice, berries and insects.",
    ]
    found = extract("what do foxes eat mice berries", sources, bag_of_words)
    parts = re.findall(r"[^.]+\[\d\]\.", found.answer)
    assert parts, found.answer
    assert "Cats" not in found.answer
    # within source 1, document order: hunting comes before berries
    if "hunt" in found.answer and "berries [1]" in found.answer:
        assert found.answer.index("hunt") < found.answer.index("berries [1]")
    assert all(re.search(r"\[\d\]", p) for p in parts)


def test_faq_answers_inherit_the_question_and_keep_their_short_opener() -> None:
    faq = "Can two index runs write at the same time?\nNo. A writer takes a lock on the index.\n\nHow do I filter?\nPass --where with SQL."
    found = extract("can two index runs write at the same time", [faq], bag_of_words, k=1)
    assert found.answer == "No. A writer takes a lock on the index [1]."


def test_leaning_sentence_brings_the_one_before() -> None:
    text = "The embedded model is MiniLM with 384 dimensions. It runs on the CPU without any network access."
    found = extract("does it need network access on the cpu", [text], bag_of_words, k=1)
    assert found.answer == "The embedded model is MiniLM with 384 dimensions. It runs on the CPU without any network access [1]."


def test_no_prose_falls_back_to_the_start_of_the_best_source() -> None:
    found = extract("config", ["| key | value |\n|---|---|\n| a | 1 |"], bag_of_words)
    assert found.answer.endswith("[1]") and found.cited == [1]


def test_cite_puts_the_marker_before_the_full_stop() -> None:
    assert cite("Files are skipped.", 2) == "Files are skipped [2]."
    assert cite("Is it?", 1) == "Is it? [1]"
    assert cite("Install: `pip install .`", 1) == "Install: `pip install .` [1]."
    assert cite("Example:", 3) == "Example [3]:"


def test_with_the_embedded_model() -> None:
    from rag.providers.local import shared_model

    model = shared_model()

    def encode(question: str, sentences: list[str]) -> tuple[np.ndarray, np.ndarray]:
        vectors, _ = model.encode([question, *sentences])
        return vectors[0], vectors[1:]

    sources = [
        "Chunks are stored in LanceDB. The store keeps one table per profile.",
        "Files larger than 20 MB are skipped with a warning that names them. Binary files are skipped.",
    ]
    found = extract("what happens to very big files?", sources, encode)
    assert found.picked[0].sentence.text.startswith("Files larger than 20 MB")
    assert "[2]" in found.answer and not found.weak
    assert extract("what is the capital of Peru?", sources, encode).weak


RST = """.. _excluding:

.. This comment spans
   two lines.

===============
Excluding code
===============

You can tell :mod:`coverage` to ignore code. In this code, the ``if debug`` clause
is excluded from reporting::

    a = my_function1()
    if debug:  # pragma: no cover
        msg = "blah"

.. note:: Excluded code is executed as usual.
   Its execution is recorded.

.. code-block:: ini
   :caption: .coveragerc

   [report]
   exclude_also =
       def __repr__

=======  ===========
Setting  Meaning
=======  ===========
branch   Measure branches.
=======  ===========

See `the docs <https://coverage.rtfd.io>`_ for more.
"""


def test_rst_pieces_have_no_markup_and_code_keeps_its_introduction() -> None:
    pieces = split_pieces(RST)
    assert [p.text for p in pieces if not p.code] == [
        "You can tell `coverage` to ignore code.",
        "Excluded code is executed as usual.",
        "Its execution is recorded.",
        "See the docs for more.",
    ]
    code = [p for p in pieces if p.code]
    assert [(p.lead, p.text) for p in code] == [
        (
            "In this code, the `if debug` clause is excluded from reporting:",
            'a = my_function1()\nif debug:  # pragma: no cover\n    msg = "blah"',
        ),
        ("", "[report]\nexclude_also =\n    def __repr__"),  # its :caption: option is not code
    ]
    assert {p.heading for p in pieces} == {"Excluding code"}


MYST = """(capture)=
# Testing

If you need it, use {func}`structlog.testing.capture_logs`:

```{doctest}
>>> with capture_logs() as logs:
...     log.info("hi")
```

:::{note}
`capture_logs()` relies on changing the **configuration**.
:::

:::{versionchanged} 14.0.0 Allow a {any}`dict`.
:::

#### `-l`, `--line-length`

How many characters per line to allow. The default is 88.

- An item that goes on

    with a second paragraph that is prose, not code.

Check them all:

    black --check src/ tests/ docs/ scripts/ examples/ more/ and/more/
"""


def test_myst_and_markdown_pieces() -> None:
    pieces = split_pieces(MYST)
    shown = [(p.text, p.lead, p.heading) if p.code else (p.text, p.heading) for p in pieces]
    assert shown == [
        ('>>> with capture_logs() as logs:\n...     log.info("hi")', "If you need it, use `structlog.testing.capture_logs()`:", "Testing"),
        ("`capture_logs()` relies on changing the configuration.", "Testing"),
        ("Changed in version 14.0.0: Allow a `dict`.", "Testing"),
        ("How many characters per line to allow.", "`-l`, `--line-length`"),
        ("The default is 88.", "`-l`, `--line-length`"),
        ("An item that goes on", "`-l`, `--line-length`"),
        ("with a second paragraph that is prose, not code.", "`-l`, `--line-length`"),
        ("black --check src/ tests/ docs/ scripts/ examples/ more/ and/more/", "Check them all:", "`-l`, `--line-length`"),
    ]


def test_versioned_directives_read_as_sphinx_shows_them() -> None:
    text = "Intro text here.\n\n.. versionchanged:: 7.10.0\n   The ``...`` default was added.\n\n.. versionadded:: 2.0\n"
    assert texts(text) == ["Intro text here.", "Changed in version 7.10.0.", "The `...` default was added.", "New in version 2.0."]


def test_an_introduction_that_leans_back_brings_the_sentence_before() -> None:
    text = (
        "Processors can be passed to the context manager. For example:\n\n```\nwith capture_logs(processors=[p]) as logs:\n    pass\n```\n"
    )
    (code,) = split_pieces(text)
    assert code.lead == "Processors can be passed to the context manager. For example:"


def test_a_code_block_competes_and_is_shown_after_its_introduction() -> None:
    sources = [
        "Tests often need output.\n\nTo capture what a test prints to stdout, use the capsys fixture:\n\n"
        "```python\ndef test_out(capsys):\n    print('hi')\n    assert capsys.readouterr().out == 'hi\\n'\n```\n",
        "Logging is configured once at start-up. Stdout is a stream.",
    ]
    found = extract("how do I capture what a test prints to stdout", sources, bag_of_words, k=1)
    assert found.picked[0].sentence.code
    assert found.answer == (
        "To capture what a test prints to stdout, use the capsys fixture [1]:\n\n"
        "    def test_out(capsys):\n        print('hi')\n        assert capsys.readouterr().out == 'hi\\n'"
    )
    assert found.cited == [1]


def test_a_long_code_block_is_shown_cut() -> None:
    code = "\n".join(f"x{i} = {i}" for i in range(30))
    found = extract("how do I set the values", [f"To set the values, write:\n\n```\n{code}\n```\n"], bag_of_words, k=1)
    shown = found.answer.split("\n\n", 1)[1].splitlines()
    assert len(shown) == CODE_SHOWN_LINES + 1 and shown[-1] == "    …"


def test_the_best_ranked_source_wins_a_near_tie() -> None:
    # the second source's sentence matches a little better word for word; the retriever ranked the first higher
    sources = ["Foxes hunt mice at dusk in open fields.", "Foxes hunt mice at dusk in fields."]
    q, v = bag_of_words("when do foxes hunt mice", [texts(s)[0] for s in sources])
    assert float(v[1] @ q) > float(v[0] @ q)
    found = extract("when do foxes hunt mice", sources, bag_of_words, k=1)
    assert found.cited == [1]
    assert extract("when do foxes hunt mice", sources[::-1], bag_of_words, k=1).cited == [1]


def test_a_sentence_under_a_named_heading_is_shown_after_the_name() -> None:
    text = "#### `-l`, `--line-length`\n\nHow many characters per line to allow.\n"
    found = extract("how many characters per line", [text], bag_of_words, k=1)
    assert found.answer == "`-l`, `--line-length`: How many characters per line to allow [1]."


def test_shown_text_has_no_markup() -> None:
    found = extract("which clause is excluded from reporting or executed", [RST], bag_of_words)
    assert not re.search(r":\w+:`|``|\.\. |====|`_", found.answer), found.answer


def test_code_cut_at_the_chunk_start_is_left_out() -> None:
    # chunking cut these blocks: the tail of a fence, and code whose first line lost its indentation
    fenced = '    processors=[renderer],\n)\n```\n\nThen call it:\n\n```python\nstructlog.get_logger().info("hi")\n```\n'
    assert [(p.text, p.code) for p in split_pieces(fenced)] == [('Then call it: `structlog.get_logger().info("hi")`', False)]
    trimmed = "next_page = response.css('a').get()\n        if next_page is not None:\n            yield response.follow(next_page)\n\nThe spider follows the link.\n"
    assert texts(trimmed) == ["The spider follows the link."]


def test_sentences_fenced_as_text_read_as_text() -> None:
    reply = "Reply with this:\n\n```text\nBlack used to remove the trailing comma. Now a trailing comma tells Black to explode the collection.\n```\n"
    assert texts(reply) == ["Black used to remove the trailing comma.", "Now a trailing comma tells Black to explode the collection."]
    output = "It prints:\n\n```text\nreformatted src/app.py\nAll done!\n```\n"
    assert [p.code for p in split_pieces(output)] == [True]


def test_a_cross_reference_is_not_an_answer() -> None:
    sources = [
        "See the version control docs for more examples of running black with pre-commit.",
        "Add the black hook to the pre-commit config of your repository to run black with pre-commit.",
    ]
    found = extract("how do I run black with pre-commit", sources, bag_of_words, k=1)
    assert found.cited == [2]


def test_the_retrievers_first_source_can_bring_in_a_less_similar_piece() -> None:
    # the second source matches more words but says little; the best-ranked source's answer is 0.154 less similar,
    # outside the window on similarity alone, inside it with the rank prior
    sources = ["To fix the client address behind a proxy, wrap the app in the ProxyFix middleware.", "The client address behind a proxy."]
    found = extract("how do I fix the client address behind a proxy", sources, bag_of_words)
    assert "ProxyFix" in found.answer and found.cited == [2, 1]
