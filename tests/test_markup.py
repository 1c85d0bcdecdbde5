"""Markup stripped from what an answer shows (pure). Cases are the syntax of real package docs (Sphinx, MyST, GFM)."""

from __future__ import annotations

import pytest

from rag.markup import Directive, directive, fence, inline, is_adornment, is_hidden, is_option, is_table_border, literal_lead, strip


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        # reST roles: a name in code keeps its full target (no page around it to say where it lives)
        ("Use :meth:`~flask.Config.from_object` to load.", "Use `flask.Config.from_object()` to load."),
        ("the :class:`~werkzeug.wrappers.Request` object", "the `werkzeug.wrappers.Request` object"),
        ("call :func:`.from_object` or :meth:`!get`", "call `from_object()` or `get()`"),
        (":py:class:`marshmallow.Schema` and :rst:dir:`code-block`", "`marshmallow.Schema` and `code-block`"),
        ("Set :setting:`CONCURRENT_REQUESTS` as close to", "Set `CONCURRENT_REQUESTS` as close to"),
        (":meth:`from_object <flask.Config.from_object>`", "`from_object`"),
        (":func:`functools.partial(f, x)`", "`functools.partial(f, x)`"),
        # roles whose text is prose
        ("see :ref:`crawling in BFO order <bfo>` first", "see crawling in BFO order first"),
        ("see :ref:`topics-settings` and :doc:`/topics/jobs`", "see topics settings and jobs"),
        ("follow :pep:`8`, :rfc:`2616`, :gh:`1234` and :ticket:`99`", "follow PEP 8, RFC 2616, #1234 and #99"),
        ("thanks to :user:`hynek`", "thanks to hynek"),
        ("use the :fixture:`capsys` fixture", "use the `capsys` fixture"),  # a project's own role: a name is code
        ("see :guilabel:`Save as`", "see Save as"),
        ("docs in the Ubuntu section (:commit:`fbd010d", "docs in the Ubuntu section (fbd010d"),  # cut by a chunk boundary
        # MyST roles
        ("Use {func}`progressbar` here", "Use `progressbar()` here"),
        ("via {class}`~structlog.testing.CapturingLoggerFactory` that", "via `structlog.testing.CapturingLoggerFactory` that"),
        ("enabled for {doc}`performance <performance>`, any", "enabled for performance, any"),
        ("a {term}`bound logger`", "a bound logger"),
        # literals, interpreted text, link references
        ("a comment of ``pragma: no cover`` is excluded", "a comment of `pragma: no cover` is excluded"),
        ("- `EXCLUDE <marshmallow.EXCLUDE>`: exclude unknown fields", "- `EXCLUDE`: exclude unknown fields"),
        ("`watchdog <https://pypi.org/project/watchdog/>`_ is used", "watchdog is used"),
        ("upstream to a `large DNS server`_, to avoid", "upstream to a large DNS server, to avoid"),
        ("Install Colorama_ for colours.", "Install Colorama for colours."),
        ("See |version| and a footnote [#]_ here.", "See version and a footnote here."),
        # Markdown
        ("Use [pre-commit](https://pre-commit.com/). Once you", "Use pre-commit. Once you"),
        ("want to [`include`](attrs.filters.include) certain", "want to `include` certain"),
        ("[standard out](https://en.wikipedia.org/wiki/Standard_out#Standard_output.28stdout.29 ) and", "standard out and"),
        ("Looks like this: [![Black](https://img/b.png)](https://github.com/psf/black)", "Looks like this: "),
        ("[check them out]( api-validators) first", "check them out first"),
        ("see [the docs][docs] and <https://example.com>", "see the docs and https://example.com"),
        ("_Black_ defaults to **88** characters, *sorry*", "Black defaults to 88 characters, sorry"),
        # what is not markup stays
        ("the __init__ method and exclude_also, *args and **kwargs", "the __init__ method and exclude_also, *args and **kwargs"),
        ("the `{hostname}-{hash}` directories and `a*b*c`", "the `{hostname}-{hash}` directories and `a*b*c`"),
        ("8 × 10 domains = 80 requests", "8 × 10 domains = 80 requests"),
        # HTML
        ("Fish &amp; chips &rarr; done", "Fish & chips → done"),
        ("a <br/> break and <kbd>Ctrl</kbd>", "a break and Ctrl"),
        (r"escaped \*stars\* stay", "escaped *stars* stay"),
    ],
)
def test_inline(source: str, shown: str) -> None:
    assert inline(source) == shown


def test_directive_lines() -> None:
    assert directive(".. code-block:: python") == Directive(0, "code-block", "python")
    assert directive("   .. py:function:: f(x)") == Directive(3, "function", "f(x)")
    assert directive(".. note:: Be careful.") == Directive(0, "note", "Be careful.")
    assert directive(".. _label:") is None and directive("Just text.") is None
    assert directive(".. code-block:: python").body == "code"  # type: ignore[union-attr]
    assert directive(".. toctree::").body == "hidden"  # type: ignore[union-attr]
    assert directive(".. versionchanged:: 2.0").body == "text"  # type: ignore[union-attr]


def test_fences() -> None:
    code = fence("```{code-block} python")
    assert code is not None and code.directive == Directive(0, "code-block", "python")
    note = fence(":::{note}")
    assert note is not None and note.directive is not None and note.directive.body == "text"
    plain = fence("```python")
    assert plain is not None and plain.directive is None and plain.language == "python"
    assert plain.closes("```") and plain.closes("````") and not plain.closes("```python")
    assert fence("```tox -- tests/test_loader.py```") is None  # code inline, not a fence
    assert fence(":::{versionchanged} 14.0.0 Allow final processor to return a {any}`dict`.") is not None


def test_lines_that_are_syntax() -> None:
    assert all(is_adornment(line) for line in ("=====", "-----", "~~~~~~", "^^^^", "   ****"))
    assert not is_adornment("== x ==") and not is_adornment("--")
    assert is_table_border("=======  ==========") and not is_table_border("=========")
    for line in (
        ".. _label:",
        ".. _Colorama: https://pypi.org/project/colorama/",
        "(converters)=",
        "[ref]: https://x",
        ".. [[[cog",
        "  __ https://github.com/asottile/covdefaults",
    ):
        assert is_hidden(line), line
    assert not is_hidden(".. note::") and not is_hidden("Text.")
    assert is_option("   :caption: Example") and is_option(":linenos:") and not is_option("Default: 1")


def test_literal_block_introductions() -> None:
    assert literal_lead("In this code, the clause is excluded from reporting::") == (
        "In this code, the clause is excluded from reporting:",
        True,
    )
    assert literal_lead("Run this ::") == ("Run this", True)
    assert literal_lead("::") == ("", True)
    assert literal_lead("Nothing:") == ("Nothing:", False)


def test_strip_a_block() -> None:
    text = (
        ".. _excluding:\n\n===============\nExcluding code\n===============\n\n.. highlight:: python\n\n"
        "Use ``# pragma: no cover`` on :meth:`~coverage.Coverage.exclude` lines::\n\n    a = 1\n\n.. note:: Be careful.\n"
    )
    shown = " ".join(strip(text).split())
    assert shown == "Excluding code Use `# pragma: no cover` on `coverage.Coverage.exclude()` lines: a = 1 Be careful."
