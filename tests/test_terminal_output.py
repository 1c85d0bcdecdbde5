"""What gets indexed and what the terminal shows: default excludes, one line for skipped files, progress,
hits that fit 80 columns, merged Sources. End to end on real LanceDB, piped and on a pseudo-terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from tests.clirun import rag, write

from rag.discover import DEFAULT_EXCLUDE

DEEP = "docs/reference/configuration-and-deployment/advanced-settings-for-production.md"
LIMITS = " ".join(f"Files over twenty megabytes are skipped by the indexer, rule {i} of the size limits." for i in range(60))


def corpus(root: Path) -> Path:
    """Two files worth indexing (one long section: several chunks under one heading) among junk of every kind."""
    docs = root / "docs"
    write(docs / "guide.md", f"# Guide\n\n## Limits\n\n{LIMITS}\n\n## Install\n\nRun pip install rag to install the toolkit.\n")
    write(root / DEEP, "# Advanced settings\n\n## Proxy headers\n\nSet trusted proxy headers when the server runs behind a proxy.\n")
    write(docs / "logo.svg", '<svg xmlns="http://www.w3.org/2000/svg"><path d="' + "M12.5 3.2L4.1 9.9 " * 200 + '"/></svg>')
    write(docs / "theme.css", "body { color: #333; font-family: serif; }\n" * 30)
    write(docs / "app.js.map", '{"version":3,"sources":["app.js"],"mappings":"AAAA,SAAS"}')
    write(docs / "vendor.min.js", "var a=1;function b(c){return c}")
    write(docs / "bundle.js", "function a(b){return b+1};var c=a(2);" * 300)  # minified, by its content
    write(docs / "yarn.lock", 'left-pad@^1.0.0:\n  version "1.3.0"\n' * 30)
    write(docs / "package-lock.json", '{"lockfileVersion": 3, "packages": {}}\n')
    write(docs / "poetry.lock", '[[package]]\nname = "attrs"\nversion = "23.1.0"\n')
    write(docs / "_static" / "custom.js", "document.addEventListener('load', () => {})\n")
    write(docs / ".DS_Store", b"\x00\x00\x00\x01Bud1" + bytes(64))
    write(docs / "photo.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    write(docs / "report.docx", b"PK\x03\x04" + bytes(range(256)))  # a document the user may expect indexed: a skip
    write(docs / "huge.txt", "word " * 300_000)  # 1.4 MB, over the 1 MB limit below
    write(root / "rag.yaml", "sources:\n  max_file_mb: 1\n")
    return docs


def indexed(root: Path) -> set[str]:
    return {os.path.relpath(f["source"], root) for f in rag("status", "--json", cwd=root).json()["files"]}


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r", "", text)


def on_pty(args: list[str], cwd: Path, columns: int = 80) -> str:
    """Run ``rag ARGS`` with stdout and stderr on a pseudo-terminal ``columns`` wide; everything it drew, escapes removed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("RAG_PROFILE", "COLUMNS", "LINES", "NO_COLOR")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen([sys.executable, "-m", "rag", *args], cwd=cwd, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    data = bytearray()
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        data += chunk
    os.close(master)
    assert proc.wait(timeout=600) == 0, data.decode(errors="replace")
    return strip_ansi(data.decode(errors="replace"))


# --------------------------------------------------------------------------- 1. what gets indexed


def test_default_excludes_leave_out_junk_silently_and_can_be_undone_one_by_one(tmp_path: Path) -> None:
    corpus(tmp_path)
    result = rag("index", "docs", "--json", cwd=tmp_path)
    assert result.code == 0, result.err
    report = result.json()
    assert indexed(tmp_path) == {"docs/guide.md", DEEP}
    kinds = {Path(s["path"]).name: s["kind"] for s in report["skipped"]}
    assert kinds == {"bundle.js": "minified", "report.docx": "binary", "huge.txt": "too large"}  # excluded files are no skips
    assert result.err.splitlines() == ["warning: skipped 3 files: 1 binary, 1 minified, 1 too large; rag index -v lists them"]

    write(tmp_path / "rag.yaml", "sources:\n  max_file_mb: 1\n  exclude: ['!*.svg', '!bundle.js', 'reference/']\n")
    assert rag("index", "docs", cwd=tmp_path).code == 0
    assert indexed(tmp_path) == {"docs/guide.md", "docs/logo.svg", "docs/bundle.js"}  # own excludes add to the defaults

    write(tmp_path / "rag.yaml", "sources:\n  max_file_mb: 1\n  default_exclude: false\n")
    assert rag("index", "docs", cwd=tmp_path).code == 0
    assert {"docs/theme.css", "docs/yarn.lock", "docs/_static/custom.js", "docs/bundle.js", "docs/logo.svg"} <= indexed(tmp_path)


def test_a_file_named_on_the_command_line_is_always_read(tmp_path: Path) -> None:
    write(tmp_path / "logo.svg", '<svg><title>Company logo in blue</title><path d="M0 0L1 1"/></svg>')
    result = rag("index", "logo.svg", "--json", cwd=tmp_path)
    assert result.code == 0 and result.json()["files_indexed"] == 1, result.err


def test_example_profile_lists_every_default_exclude() -> None:
    example = (Path(__file__).resolve().parents[1] / "rag.yaml.example").read_text(encoding="utf-8")
    comments = " ".join(line.strip("# ") for line in example.splitlines() if line.lstrip().startswith("#"))
    missing = [p for p in DEFAULT_EXCLUDE if f" {p} " not in f" {comments} "]
    assert not missing, missing


# --------------------------------------------------------------------------- 2. skipped files


def test_skipped_files_are_one_line_and_verbose_lists_them(tmp_path: Path) -> None:
    corpus(tmp_path)
    first = rag("index", "docs", cwd=tmp_path)
    assert first.code == 0, first.err
    assert first.err.splitlines() == ["warning: skipped 3 files: 1 binary, 1 minified, 1 too large; rag index -v lists them"]
    assert first.out.startswith("indexed 2 files (3 skipped) · ")

    again = rag("index", "docs", cwd=tmp_path)  # the same three, unchanged: counted in the result line, not warned about again
    assert again.err == "" and again.out.startswith("nothing to do (2 unchanged, 3 skipped) · ")

    for args in (["index", "docs", "-v"], ["-v", "index", "docs"]):
        listed = rag(*args, cwd=tmp_path).err.splitlines()
        assert listed[0] == "skipped 3 files: 1 binary, 1 minified, 1 too large"
        assert sorted(listed[1:4]) == [
            "  docs/bundle.js: looks minified (lines of 8,192+ characters, 8% whitespace); add '!bundle.js' to sources.exclude to index it",
            "  docs/huge.txt: 1.4 MB is over sources.max_file_mb (1 MB)",
            "  docs/report.docx: binary file",
        ]

    write(tmp_path / "docs" / "scan.pdf.bin", b"\x00\x01" * 10)  # one new skip: named outright
    assert rag("index", "docs", cwd=tmp_path).err.splitlines() == [
        "warning: skipped docs/scan.pdf.bin: binary file (3 more as before; rag index -v lists them)"
    ]


# --------------------------------------------------------------------------- 3. progress


def test_progress_on_a_terminal_and_a_summary_that_is_never_wrapped(tmp_path: Path) -> None:
    corpus(tmp_path)
    write(tmp_path / "rag.yaml", "sources:\n  max_file_mb: 1\nembedding:\n  batch_size: 2\n")
    shown = on_pty(["index", "docs"], tmp_path)
    assert "2/2 files · " in shown and " chunks/s · " in shown  # the last frame, drawn as the bar stops
    summary = [line for line in shown.split("\n") if line.startswith("indexed 2 files")]
    assert len(summary) == 1 and summary[0].endswith(" chunks/s"), shown
    assert "warning: skipped 3 files" in shown

    piped = rag("index", "docs", "--rebuild", cwd=tmp_path, env={"COLUMNS": "40"})
    assert len(piped.out.splitlines()) == 1 and len(piped.out) > 40  # one line, however narrow the terminal


def test_progress_line_fits_80_columns_and_moves_per_batch() -> None:
    from rich.console import Console

    from rag.commands.index_cmd import _ProgressEvents

    events = _ProgressEvents(show_bar=True, console=Console(width=80, force_terminal=True, color_system=None))
    assert events.progress is not None
    with events:
        events.total(400)
        events.advance(files=40, chunks=320)  # 8 chunks a file so far
        events.advance(chunks=80)  # a batch of the next files, none finished yet
        task = events.progress.tasks[0]
        assert task.completed == pytest.approx(50.0)
        line = "".join(seg.text for seg in events.progress.console.render(events.progress.get_renderable()))
    assert len(line.rstrip("\n")) <= 80
    assert re.search(r"40/400 files · 400 chunks · [0-9.]+ chunks/s · (\d+s|\d+:\d\d) left", line), line


# --------------------------------------------------------------------------- 4. hits at 80 columns


def places(out: str) -> list[str]:
    return [line for line in out.splitlines() if re.match(r"^ +\d+ +-?[0-9.]+  \S", line)]


@pytest.mark.parametrize("columns", ["80", "120"])
def test_query_and_rerank_fit_the_width_without_breaking_paths(tmp_path: Path, columns: str) -> None:
    corpus(tmp_path)
    assert rag("index", "docs", cwd=tmp_path).code == 0
    env = {"COLUMNS": columns}
    for mode in ("hybrid", "dense", "fts"):
        result = rag("query", "proxy headers behind a server", "--mode", mode, cwd=tmp_path, env=env)
        assert result.code == 0, result.err
        lines = places(result.out)
        assert lines and f"  {DEEP}" in lines[0]  # whole, relative to here; the heading gives way when there is no room
        assert lines[0].endswith(DEEP if columns == "80" else f"{DEEP} › … › Proxy headers")
        assert all(len(line) <= int(columns) for line in result.out.splitlines() if line not in lines)
        scores = [float(line.split()[1]) for line in lines]
        assert scores == sorted(scores, reverse=True)  # the score follows the order
    hybrid = rag("query", "size limits for files", cwd=tmp_path, env=env)
    assert float(places(hybrid.out)[0].split()[1]) > 0  # fused z-score: the first is above its query's candidates
    assert "fused z-score, std devs above this query's candidates" in hybrid.err

    result = rag("rerank", "proxy headers", "docs/guide.md", DEEP, cwd=tmp_path, env=env)
    assert result.code == 0, result.err
    lines = places(result.out)
    assert [line.split()[2] for line in lines] == [DEEP, "docs/guide.md"]
    assert all(len(line) <= int(columns) for line in result.out.splitlines() if line not in lines)


def test_status_and_query_on_a_terminal_80_columns_wide(tmp_path: Path) -> None:
    corpus(tmp_path)
    assert rag("index", "docs", cwd=tmp_path).code == 0
    status = on_pty(["status", "--files"], tmp_path)
    assert f"  1  {DEEP}" in status.split("\n") and "index      .rag (table chunks" in status
    query = on_pty(["query", "proxy headers"], tmp_path).split("\n")
    assert any(line.endswith(f"  {DEEP}") for line in query)  # longer than the room for it: whole, without its heading
    assert all(len(line) <= 80 for line in query if DEEP not in line)


# --------------------------------------------------------------------------- 5. sources under an answer


def test_sources_merge_one_file_and_heading_and_scores_follow_the_order(tmp_path: Path) -> None:
    corpus(tmp_path)
    assert rag("index", "docs", cwd=tmp_path).code == 0
    question = "what happens to files over twenty megabytes?"
    result = rag("ask", question, "--top-n", "4", cwd=tmp_path)
    assert result.code == 0, result.err
    sources = result.out.split("\nSources\n", 1)[1].splitlines()
    merged = [line for line in sources if "docs/guide.md › Guide › Limits" in line]
    assert len(merged) == 1 and re.match(r"^(\[\d\]){2,}", merged[0]), sources
    numbers = [int(n) for line in sources for n in re.findall(r"\[(\d+)\]", line.split(" ", 1)[0])]
    assert sorted(numbers) == [1, 2, 3, 4]  # every source keeps its number
    scores = [float(line.rsplit("(", 1)[1].rstrip(")")) for line in sources]
    assert scores == sorted(scores, reverse=True)
    answer = rag("ask", question, "--top-n", "4", "--json", cwd=tmp_path).json()
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", answer["answer"])}
    assert cited and cited <= set(numbers)
    for c in answer["citations"]:
        line = next(s for s in sources if f"[{c['n']}]" in s.split(" ", 1)[0])
        assert os.path.relpath(c["source"], tmp_path) in line


# --------------------------------------------------------------------------- the pure rules behind it


def test_shown_score_follows_the_stage_that_ordered_the_hits() -> None:
    from rag.fusion import rrf
    from rag.render import shown_score

    fused = dict(rrf({"dense": ["a", "b", "c"], "fts": ["a", "c"]}, k=60))
    assert shown_score({"dense": 0.7, "fts": 9.1, "hybrid": fused["a"]}, 60) == pytest.approx(1.0)  # first for both
    assert shown_score({"dense": 0.6, "hybrid": fused["b"]}, 60) == pytest.approx(61 / 62 / 2)  # second for one only
    assert shown_score({"dense": 0.6, "hybrid": fused["b"], "rerank": 0.12}, 60) == 0.12  # reranked: its score
    assert shown_score({"dense": 0.42}, 60) == 0.42 and shown_score({"fts": 7.5}, 60) == 7.5
    from rag.profile import RetrievalConfig

    assert shown_score({"dense": 0.6, "hybrid": 1.25}, RetrievalConfig()) == 1.25  # zscore fusion: the fused z as it is


def test_merge_sources_keeps_rank_order_numbers_and_first_score() -> None:
    from rag.render import SourceLine, merge_sources

    merged = merge_sources([(1, "a.md › Limits", 0.9), (2, "b.md", 0.8), (3, "a.md › Limits", 0.7), (4, "a.md › Install", 0.6)])
    assert merged == [SourceLine([1, 3], "a.md › Limits", 0.9), SourceLine([2], "b.md", 0.8), SourceLine([4], "a.md › Install", 0.6)]


def test_skip_summary_names_one_counts_many_and_stays_quiet_about_known_ones() -> None:
    from rag.render import skip_summary

    one = {"path": "/elsewhere/a.bin", "reason": "binary file", "kind": "binary"}
    many = [one, {**one, "path": "/x/b.bin"}, {"path": "/x/c.txt", "reason": "too big", "kind": "too large"}]
    assert skip_summary([]) is None
    assert skip_summary([one]) == "skipped /elsewhere/a.bin: binary file"
    assert skip_summary(many) == "skipped 3 files: 2 binary, 1 too large; -v lists them"
    assert skip_summary([{**s, "new": i == 2} for i, s in enumerate(many)]) == "skipped /x/c.txt: too big (2 more as before; -v lists them)"
    assert (
        skip_summary([{**s, "new": i > 0} for i, s in enumerate(many)]) == "skipped 3 files (2 new): 2 binary, 1 too large; -v lists them"
    )
    assert skip_summary([{**s, "new": False} for s in many]) is None


def test_progress_counts_part_of_a_file_and_an_eta_only_with_a_pace() -> None:
    from rag.render import duration, eta, files_done

    assert files_done(0, 64, 0, 10) == 0  # no file finished: no chunks-per-file rate to go by
    assert files_done(2, 30, 20, 10) == pytest.approx(3.0)  # 10 chunks a file, 10 more embedded
    assert files_done(2, 500, 20, 10) < 10  # never reaches the end before the last file is finished
    assert eta(0, 10, 5.0) is None and eta(5, 10, 20.0) == pytest.approx(20.0)
    assert [duration(s) for s in (4.4, 75, 3725)] == ["4s", "1:15", "1:02:05"]


def test_a_place_gives_way_in_its_heading_never_in_its_path() -> None:
    from rag.render import place

    heading = "Running Batch Migrations for SQLite › Working in Offline Mode"
    assert place("docs/batch.rst", heading) == f"docs/batch.rst › {heading}"
    assert place("docs/batch.rst", heading, width=60) == "docs/batch.rst › … › Working in Offline Mode"
    assert place("docs/batch.rst", heading, width=36) == "docs/batch.rst › Working in Offline…"
    assert place("docs/a/very/long/path/to/batch.rst", heading, width=36) == "docs/a/very/long/path/to/batch.rst"
    assert place("docs/batch.rst", "", "Batch", width=10) == "docs/batch.rst"


def test_html_headings_lose_the_permalink_sign() -> None:
    from rag.loaders import load

    html = b'<h1>Offline Mode<a class="headerlink" href="#offline">#</a></h1><p>See <a href="x.html">the guide</a>.</p>'
    doc = load(Path("page.html"), html)
    assert [(s.heading, s.text) for s in doc.sections] == [(["Offline Mode"], "Offline Mode\n\nSee the guide.")]


def test_snippets_leave_out_the_heading_lines_the_place_already_names() -> None:
    from rag.render import without_headings

    assert without_headings("# Guide\n\n## Limits\n\nFiles over 20 MB.") == "Files over 20 MB."
    assert without_headings("Notes\n=====\n\nAbout proxies.\n") == "About proxies.\n"
    assert without_headings("Plain text\nwith two lines") == "Plain text\nwith two lines"
    assert without_headings("## Only a heading") == "## Only a heading"


def test_scores_near_zero_never_show_a_minus_sign() -> None:
    from rag.render import score_text

    assert [score_text(v) for v in (-0.0001, -0.0, 0.004, -0.006, -1.5, 12.34, -250.0)] == [
        "0.00",
        "0.00",
        "0.00",
        "-0.01",
        "-1.50",
        "12.3",
        "-250",
    ]


def test_hit_snippets_show_markup_as_a_page_does() -> None:
    from rag.render import hit_lines

    _, second = hit_lines(1, "1.00", "docs/ci.rst", "Use ``--min ndcg@10=0.70`` with :func:`gate` in CI.", 80)
    assert "``" not in second and ":func:" not in second
    assert "--min ndcg@10=0.70" in second and "gate" in second
