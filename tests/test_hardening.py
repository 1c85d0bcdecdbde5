"""Hardening matrix: bad input for every command, `rag ask` while `rag index` writes, a crash before the first full-text build.

Bad input: one row per case. Each ends in the right exit code, one
``error:`` line (or a ``warning:`` line naming the file, with the rest
indexed), and no traceback. The other scenarios end in assertions about the
data: per-file chunk sets, duplicate ids, hits.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clirun import Result, rag, rag_process, write
from fault_server import FaultServer, Reply

PDF_TEXT_FREE = b"%PDF-1.4\nthis is not really a pdf\n"
HUGE_BYTES = 50 * 1024 * 1024


# --------------------------------------------------------------------------- files that rag index must skip or repair


def make_unreadable(path: Path) -> None:
    write(path, "Locked away.\n")
    path.chmod(0)


def make_huge(path: Path) -> None:
    """50 MB of 'text' in no time: real lines first, then a hole (sparse file)."""
    write(path, "A line of ordinary text.\n" * 400)
    with path.open("r+b") as fh:
        fh.truncate(HUGE_BYTES)


def make_encrypted_pdf(path: Path) -> None:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(200, 200)
    writer.encrypt(user_password="open-sesame", owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    write(path, out.getvalue())


@dataclass
class BadFile:
    name: str
    make: Callable[[Path], Any]
    warning: str  # what stderr says after the path
    kept: bool = False  # the file still reaches the index (decoded with a fallback)


BAD_FILES = [
    BadFile("report.docx", lambda p: write(p, b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256))), "skipped {path}: binary file"),
    BadFile("empty.txt", lambda p: write(p, b""), ""),  # nothing to index and nothing wrong: counted, not warned about
    BadFile("huge.txt", make_huge, "skipped {path}: 50.0 MB is over sources.max_file_mb (20 MB)"),
    BadFile(
        "latin1.txt", lambda p: write(p, "Café crème brûlée.\n".encode("latin-1")), "{path} is not valid UTF-8; decoded it as cp1252", True
    ),
    BadFile("loop", lambda p: os.symlink(p.parent, p), "skipped {path}: symlink loop"),
    BadFile("self", lambda p: os.symlink(p.name, p), "skipped {path}: cannot stat (broken link or loop)"),
    BadFile("dangling.md", lambda p: os.symlink("nowhere.md", p), "skipped {path}: broken symlink"),
    BadFile("pipe.txt", os.mkfifo, "skipped {path}: not a regular file (a named pipe)"),
    BadFile("locked.txt", make_unreadable, "skipped {path}: cannot read (Permission denied)"),
    BadFile("broken.pdf", lambda p: write(p, PDF_TEXT_FREE), "skipped {path}: corrupt or unreadable PDF"),
    BadFile("encrypted.pdf", make_encrypted_pdf, "skipped {path}: encrypted PDF (cannot decrypt without a password)"),
    BadFile(
        os.fsdecode(b"caf\xe9.md"), lambda p: write(p, "# Cafe\n\nA latin-1 file name.\n"), "skipped {path}: its name is not valid UTF-8"
    ),
]


DROP_OVERRIDE_THEN_EXEC = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH: root's power to read any file
    if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP; the exec below leaves them out
        sys.exit(f"cannot drop capability {cap}: errno {ctypes.get_errno()}")
os.execv(sys.executable, [sys.executable, "-m", "rag", *sys.argv[1:]])
"""


def index_without_root_override(root: Path) -> Result:
    """`rag index docs` as a process for which chmod 000 means unreadable, even when the tests run as root (CI)."""
    if os.geteuid() != 0:
        return rag("index", "docs", "--json", cwd=root)
    env = {k: v for k, v in os.environ.items() if k != "RAG_PROFILE"}
    command = [sys.executable, "-c", DROP_OVERRIDE_THEN_EXEC, "index", "docs", "--json"]
    proc = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=120)
    if proc.stderr.startswith("cannot drop capability"):
        pytest.skip(f"running as root where chmod 000 does not stop reads, and {proc.stderr.strip()}")
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.parametrize("bad", BAD_FILES, ids=[b.name.replace("\udce9", "?") for b in BAD_FILES])
def test_index_skips_or_repairs_a_bad_file_and_names_it(tmp_path: Path, bad: BadFile) -> None:
    docs = tmp_path / "docs"
    write(docs / "good.md", "# Good\n\nFoxes eat berries in autumn.\n")
    path = docs / bad.name
    bad.make(path)
    result = index_without_root_override(tmp_path) if bad.name == "locked.txt" else rag("index", "docs", "--json", cwd=tmp_path)

    assert result.code == 0, result.err
    assert "Traceback" not in result.err
    if bad.warning:
        shown = os.path.relpath(path, tmp_path) if bad.warning.startswith("skipped") else path  # skips are named from here
        assert f"warning: {bad.warning.format(path=shown)}" in result.err.splitlines()[0], result.err
        assert result.err.count("\n") == 1  # one line for the one bad file
    else:
        assert result.err == "" and result.json()["files_empty"] == 1
    status = rag("status", "--json", cwd=tmp_path).json()
    sources = {Path(f["source"]).name for f in status["files"]}
    assert sources == ({"good.md", bad.name} if bad.kept else {"good.md"})
    hits = rag("query", "foxes berries", "--mode", "fts", "--json", cwd=tmp_path).json()["hits"]
    assert [Path(h["source"]).name for h in hits] == ["good.md"]
    if bad.kept:
        repaired = rag("query", "brûlée", "--mode", "fts", "--json", cwd=tmp_path).json()["hits"]
        assert repaired and repaired[0]["text"].startswith("Café crème brûlée")


# --------------------------------------------------------------------------- bad profiles, arguments and queries


QUERY_100KB = "fox " * 25_000
TABS = "embedding:\n\tmodel: local/all-MiniLM-L6-v2\n"
WRONG_TYPE = "embedding:\n  batch_size: many\n"
UNKNOWN_KEY = "retrieval:\n  top_k: 3\n  colour: red\n"
NO_KEY = (
    "providers:\n  remote:\n    kind: openai\n    base_url: http://127.0.0.1:9\n    api_key_env: RAG_TEST_SURELY_UNSET_KEY\n"
    "store:\n  uri: {store}\n"
)
# rag query has no stage of its own to name: it embeds with the model that built the live generation (rag.lifecycle),
# so a profile naming another model is not in its path (test_lifecycle covers that it still answers).
NO_KEY_STAGE = {
    "index": "embedding:\n  model: remote/embed-x\n",
    "ask": "chat:\n  model: remote/chat-x\n",
    "rerank": "rerank:\n  model: remote/rerank-x\n",
}
COMMAND = {
    "index": ["index", "docs"],
    "query": ["query", "what do foxes eat"],
    "ask": ["ask", "what do foxes eat", "--extractive"],
    "rerank": ["rerank", "what do foxes eat", "docs/foxes.md"],
}


@dataclass
class Case:
    id: str
    args: list[str]
    code: int
    message: str  # the stderr line starts with "error: " and holds this
    profile: str | None = None  # rag.yaml text ({store} is the shared index)
    files: dict[str, bytes] | None = None


def cases() -> list[Case]:
    out: list[Case] = []
    for command, args in COMMAND.items():
        out += [
            Case(f"{command}: YAML with tabs", args, 3, "rag.yaml:2: malformed YAML", TABS),
            Case(
                f"{command}: YAML wrong type", args, 3, "rag.yaml:2: 'embedding.batch_size' must be a whole number, got 'many'", WRONG_TYPE
            ),
            Case(f"{command}: YAML unknown key", args, 3, "rag.yaml:3: unknown key 'retrieval.colour'", UNKNOWN_KEY),
        ]
        if command in NO_KEY_STAGE:
            out.append(
                Case(
                    f"{command}: API key env var missing",
                    args,
                    3,
                    "provider 'remote' needs an API key: export RAG_TEST_SURELY_UNSET_KEY",
                    NO_KEY + NO_KEY_STAGE[command],
                )
            )
    out.append(
        Case(
            "index: YAML value out of range",
            COMMAND["index"],
            3,
            "rag.yaml:5: 'providers.remote.timeout' must be above 0 seconds",
            "providers:\n  remote:\n    kind: openai\n    base_url: http://127.0.0.1:9\n    timeout: 0\nembedding:\n  model: remote/x\n",
        )
    )
    for command in ("query", "ask"):
        out += [
            Case(
                f"{command}: --where syntax error",
                [command, "fox", "--where", "source LIKE"],
                2,
                "--where 'source LIKE' is not a valid filter",
            ),
            Case(f"{command}: --top-k 0", [command, "fox", "--top-k", "0"], 2, "--top-k must be at least 1, not 0"),
            Case(f"{command}: --top-k negative", [command, "fox", "--top-k", "-3"], 2, "--top-k must be at least 1, not -3"),
            Case(f"{command}: empty query", [command, "   "], 2, "the query is empty"),
            Case(f"{command}: 100 kB query", [command, QUERY_100KB, "--json"], 0, ""),
        ]
    docs = ["docs/foxes.md"]
    out += [
        Case("rerank: empty query", ["rerank", "  ", *docs], 2, "query is required for rerank"),
        Case("rerank: --top-n 0", ["rerank", "fox", *docs, "--top-n", "0"], 2, "top_n must be at least 1"),
        Case("rerank: --top-n negative", ["rerank", "fox", *docs, "--top-n", "-2"], 2, "top_n must be at least 1"),
        Case("rerank: 100 kB query", ["rerank", QUERY_100KB, *docs, "--json"], 0, ""),
        Case("rerank: 0-byte file", ["rerank", "fox", "empty.txt"], 2, "(empty.txt has none)", files={"empty.txt": b""}),
        Case("rerank: binary file", ["rerank", "fox", "a.png"], 2, "a.png: not UTF-8 text", files={"a.png": b"\x89PNG\x00\x00\xff"}),
        Case("rerank: invalid UTF-8", ["rerank", "fox", "l.txt"], 2, "l.txt: not UTF-8 text", files={"l.txt": "crème".encode("latin-1")}),
        Case("rerank: missing file", ["rerank", "fox", "nope.txt"], 2, "nope.txt: no such file"),
    ]
    # Bytes that are not UTF-8 in a query reach Python as lone surrogates (argv is decoded with surrogateescape).
    out += [
        Case("query: query not UTF-8", ["query", "caf\udce9 fox", "--json"], 0, ""),
        Case("ask: question not UTF-8", ["ask", "caf\udce9 fox", "--json"], 0, ""),
        Case("rerank: query not UTF-8", ["rerank", "caf\udce9 fox", *docs, "--json"], 0, ""),
    ]
    return out


@pytest.fixture(scope="module")
def shared_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shared")
    write(root / "docs" / "foxes.md", "# Foxes\n\nFoxes eat berries, insects and small mammals.\n")
    write(root / "docs" / "rivers.md", "# Rivers\n\nRivers carry water from the hills to the sea.\n")
    assert rag("index", "docs", cwd=root).code == 0
    return root / ".rag"


@pytest.mark.parametrize("case", cases(), ids=lambda c: c.id)
def test_bad_input_matrix(tmp_path: Path, shared_index: Path, case: Case) -> None:
    write(tmp_path / "docs" / "foxes.md", "# Foxes\n\nFoxes eat berries, insects and small mammals.\n")
    for name, data in (case.files or {}).items():
        write(tmp_path / name, data)
    profile = case.profile or "store:\n  uri: {store}\n"
    write(tmp_path / "rag.yaml", profile.replace("{store}", str(shared_index)))

    result = rag(*case.args, cwd=tmp_path)
    assert result.code == case.code, result.err
    assert "Traceback" not in result.err
    if case.code == 0:  # the long query is cut to what retrieval can use; bytes that are not UTF-8 are decoded; answered
        out = result.json()
        assert out.get("hits") or out.get("citations") or out.get("results"), out
        assert result.err == ""
        if "caf\udce9" in case.args[1]:
            assert (out.get("query") or out.get("question") or "café fox") == "café fox"
        return
    assert result.out == ""
    assert result.err.count("\n") == 1 and result.err.startswith("error: "), result.err
    assert case.message in result.err
    assert (shared_index / "chunks.lance").is_dir() and not (tmp_path / ".rag").exists()  # nothing written anywhere else


# --------------------------------------------------------------------------- rag ask while rag index rewrites every file


class SlowEmbeddings(FaultServer):
    """Fake embeddings, each call a little slow, so that indexing lasts long enough to be asked during."""

    def _default(self, path: str, body: dict[str, Any]) -> Reply:
        reply = super()._default(path, body)
        if path.endswith("/embeddings"):
            reply.delay = 0.03
        return reply


NOTES = 24


def write_notes(docs: Path, version: str) -> None:
    for i in range(NOTES):
        lines = [f"Note {i} {version}: observers logged tide height {i * 7 + j} metres at station {version}{i}." for j in range(6)]
        write(docs / f"note{i:02d}.md", f"# Tide note {i}\n\n" + "\n\n".join(lines) + "\n")


def chunk_sets(root: Path) -> dict[str, frozenset[str]]:
    """The latest committed version of the table: each source's set of chunk texts (and no duplicate ids)."""
    import lance

    rows = lance.dataset(str(root / ".rag" / "chunks.lance")).to_table(columns=["id", "source", "text"]).to_pylist()
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "duplicate ids in a committed version"
    out: dict[str, set[str]] = {}
    for r in rows:
        out.setdefault(r["source"], set()).add(r["text"])
    return {source: frozenset(texts) for source, texts in out.items()}


def test_ask_while_index_rewrites_every_file_answers_from_whole_versions(tmp_path: Path, serve: Any) -> None:
    provider = SlowEmbeddings()
    url = serve(provider.app)
    docs = tmp_path / "docs"
    write_notes(docs, "alpha")
    write(
        tmp_path / "rag.yaml",
        f"providers:\n  p:\n    kind: openai\n    base_url: {url}\n"
        "embedding:\n  model: p/fake\n  batch_size: 2\n  concurrency: 1\n"
        "chunking:\n  max_tokens: 40\n  overlap: 0\n"
        "store:\n  commit_chunks: 2\n",
    )
    assert rag("index", "docs", cwd=tmp_path).code == 0
    old = chunk_sets(tmp_path)
    assert len(old) == NOTES and all(len(texts) > 1 for texts in old.values())  # several chunks per file

    write_notes(docs, "beta")
    env = {k: v for k, v in os.environ.items() if k != "RAG_PROFILE"}
    proc = subprocess.Popen([sys.executable, "-m", "rag", "index", "docs"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    answered, snapshots = 0, []
    try:
        while proc.poll() is None or answered == 0:
            result = rag("ask", "tide height at station 7", "--json", "--threshold", "-1", "--no-cache", cwd=tmp_path)
            assert result.code == 0, result.err
            cited = result.json()["citations"]
            assert cited and all(c["text"] for c in cited)
            snapshots.append((chunk_sets(tmp_path), cited))
            answered += 1
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err

    new = chunk_sets(tmp_path)
    assert set(new) == set(old) and all(new[s] != old[s] for s in old)
    for sets, cited in snapshots:
        # every file is wholly the old or wholly the new version, in every committed version seen
        assert set(sets) == set(old)
        assert all(sets[s] in (old[s], new[s]) for s in sets)
        for c in cited:  # and answers quote whole chunks of one of the two versions
            assert c["text"] in old[c["source"]] | new[c["source"]]
        # and each answer is built from one version of the index: a run's changes are published at once
        assert all(c["text"] in old[c["source"]] for c in cited) or all(c["text"] in new[c["source"]] for c in cited)
    hits = rag("query", "beta7", "--mode", "fts", "--json", cwd=tmp_path).json()["hits"]
    assert hits and hits[0]["source"].endswith("note07.md")


# --------------------------------------------------------------------------- a crash before the first full-text index exists


def test_crash_before_the_first_full_text_build_then_queries_say_so(tmp_path: Path, fault: FaultServer) -> None:
    docs = tmp_path / "docs"
    for i in range(6):
        write(docs / f"n{i}.md", f"# Note {i}\n\nGeyser note keyword{i} erupts daily.\n")
    write(
        tmp_path / "rag.yaml",
        f"providers:\n  p:\n    kind: openai\n    base_url: {fault.url}\nembedding:\n  model: p/fake\nstore:\n  commit_chunks: 2\n",
    )
    killed = rag_process("index", "docs", cwd=tmp_path, env={"RAG_CRASH_AT": "fts:0"})
    assert killed.code == -signal.SIGKILL, killed.err

    fts = rag("query", "keyword3", "--mode", "fts", cwd=tmp_path)  # Lance finds nothing without the index: say so
    assert fts.code == 4 and fts.err.count("\n") == 1 and "has no full-text index yet" in fts.err
    hybrid = rag_process("query", "keyword3", "--json", cwd=tmp_path)  # the dense half still answers, with a warning
    assert hybrid.code == 0 and hybrid.json()["hits"]
    assert hybrid.err.count("\n") == 1 and hybrid.err.startswith("warning: ")  # reads like rag's other lines (-v adds logger names)
    assert "has no full-text index yet" in hybrid.err and "dense results only" in hybrid.err
    assert all(set(h["ranks"]) == {"dense", "hybrid"} for h in hybrid.json()["hits"])

    again = rag("index", "docs", "--json", cwd=tmp_path)
    assert again.code == 0, again.err
    assert again.json()["chunks_total"] == 6 and again.json()["embedded_texts"] == 0 and again.json()["fts_rebuilt"]
    hits = rag("query", "keyword3", "--mode", "fts", "--json", cwd=tmp_path).json()["hits"]
    assert [Path(h["source"]).name for h in hits][:1] == ["n3.md"]


def test_query_lines_on_stdin_that_are_not_utf8_are_answered(tmp_path: Path, shared_index: Path) -> None:
    write(tmp_path / "rag.yaml", f"store:\n  uri: {shared_index}\n")
    env = {k: v for k, v in os.environ.items() if k != "RAG_PROFILE"}
    stdin = b"foxes\ncaf\xe9 rivers\n\xff\xfe\xfa\n"
    proc = subprocess.run([sys.executable, "-m", "rag", "query", "-", "-k", "1"], cwd=tmp_path, env=env, input=stdin, capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert proc.stderr == b""
    lines = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert [line["query"] for line in lines][:2] == ["foxes", "café rivers"] and len(lines) == 3
    assert [Path(line["hits"][0]["source"]).name for line in lines][:2] == ["foxes.md", "rivers.md"]


def test_serve_takes_json_with_lone_surrogates(rag_serve_url: str) -> None:
    import httpx

    headers = {"content-type": "application/json"}
    embed = httpx.post(rag_serve_url + "/v1/embeddings", content=b'{"input": ["caf\\udce9", "fine"]}', headers=headers)
    assert embed.status_code == 200, embed.text
    assert len(embed.json()["data"]) == 2
    body = b'{"query": "caf\\ud800", "documents": ["caf\\udce9 au lait", "tea"], "return_documents": true}'
    rerank = httpx.post(rag_serve_url + "/v1/rerank", content=body, headers=headers)
    assert rerank.status_code == 200, rerank.text
    assert {r["document"]["text"] for r in rerank.json()["results"]} == {"café au lait", "tea"}


# --------------------------------------------------------------------------- damaged stores


def test_a_damaged_embedding_cache_is_moved_aside(tmp_path: Path) -> None:
    write(tmp_path / "docs" / "a.md", "# A\n\nAlpha text about otters.\n")
    write(tmp_path / ".rag" / "embed-cache.sqlite", b"this is not a database, it was torn by a bad copy\n" * 20)
    result = rag("index", "docs", "--json", cwd=tmp_path)
    assert result.code == 0, result.err
    cache = tmp_path / ".rag" / "embed-cache.sqlite"
    assert result.err == (
        f"warning: the embedding cache {cache} is damaged (file is not a database); moved it to embed-cache.sqlite.damaged "
        "and started a new one (it is only a cache: what it held is embedded again when needed)\n"
    )
    assert result.json()["chunks_total"] == 1 and result.json()["embedded_texts"] == 1
    assert (tmp_path / ".rag" / "embed-cache.sqlite.damaged").is_file()
    assert rag("query", "otters", "--json", cwd=tmp_path).json()["hits"]


def test_a_table_with_a_data_file_gone_is_one_line_then_rebuilt(tmp_path: Path) -> None:
    write(tmp_path / "docs" / "a.md", "# A\n\nAlpha text about otters.\n")
    write(tmp_path / "docs" / "b.md", "# B\n\nBeta text about herons.\n")
    assert rag("index", "docs", cwd=tmp_path).code == 0
    for data_file in (tmp_path / ".rag" / "chunks.lance" / "data").iterdir():
        data_file.unlink()  # a sync tool or a cleanup script took them
    for args in (["query", "otters"], ["query", "otters", "--mode", "fts"], ["ask", "otters"], ["status"], ["index", "docs"]):
        result = rag(*args, cwd=tmp_path)
        assert result.code == 4, (args, result.err)
        assert result.err.count("\n") == 1 and "Traceback" not in result.err
        assert f"the index at {tmp_path / '.rag'} is damaged and cannot be read (" in result.err
        assert result.err.rstrip().endswith("rebuild it with: rag index --rebuild PATH")
    rebuilt = rag("index", "docs", "--rebuild", "--json", cwd=tmp_path)
    assert rebuilt.code == 0 and rebuilt.json()["chunks_total"] == 2 and rebuilt.json()["embedded_texts"] == 0
    assert [Path(h["source"]).name for h in rag("query", "herons", "--mode", "fts", "--json", cwd=tmp_path).json()["hits"]] == ["b.md"]
