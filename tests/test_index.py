"""`rag index` / `rag query` / `rag status` end to end, against real LanceDB in a temp dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.clirun import rag, write

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def corpus(root: Path) -> Path:
    docs = root / "docs"
    write(docs / "install.md", "# Install\n\nRun pip install rag to install the toolkit.\n\n## Limits\n\nFiles over 20 MB are skipped.\n")
    write(docs / "animals.txt", "The quick brown fox jumps over the lazy dog. Foxes are omnivores.\n")
    write(
        docs / "sub" / "page.html",
        "<html><head><title>Weather</title></head><body><h1>Rain</h1><p>Umbrellas keep you dry.</p></body></html>",
    )
    write(docs / "notes.rst", "Cooking\n=======\n\nBoil pasta in salted water for ten minutes.\n")
    return docs


def test_index_query_status_roundtrip(tmp_path: Path) -> None:
    docs = corpus(tmp_path)
    first = rag("index", str(docs), "--json", cwd=tmp_path)
    assert first.code == 0, first.err
    report = first.json()
    assert report["files_seen"] == 4 and report["files_indexed"] == 4
    assert report["chunks_added"] == report["chunks_total"] == 5
    assert report["embedding_calls"] >= 1 and report["fts_rebuilt"]

    status = rag("status", "--json", cwd=tmp_path).json()
    assert status["chunks"] == 5 and status["sources"] == 4
    assert status["embedding"]["model"] == "local/all-MiniLM-L6-v2" and status["embedding"]["dimensions"] == 384
    assert isinstance(status["version"], int)

    hits = rag("query", "what do foxes eat", "--json", cwd=tmp_path).json()["hits"]
    assert hits[0]["source"].endswith("animals.txt")
    assert {"id", "source", "title", "heading", "text", "score", "ranks"} <= set(hits[0])

    fts = rag("query", "umbrellas", "--mode", "fts", "--json", cwd=tmp_path).json()["hits"]
    assert [Path(h["source"]).name for h in fts] == ["page.html"]
    assert fts[0]["heading"] == "Rain" and fts[0]["title"] == "Weather"

    dense = rag("query", "how large may a file be", "--mode", "dense", "-k", "2", "--json", cwd=tmp_path).json()["hits"]
    assert len(dense) == 2 and dense[0]["heading"] == "Install › Limits"
    assert dense[0]["score"] >= dense[1]["score"]

    hybrid = rag("query", "pasta", "--json", cwd=tmp_path).json()["hits"]
    assert Path(hybrid[0]["source"]).name == "notes.rst"
    assert set(hybrid[0]["ranks"]) == {"dense", "fts", "hybrid"}


def test_full_text_only_hybrid_hits_carry_their_cosine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rag.profile import Profile
    from rag.retrieve import Retriever

    docs = corpus(tmp_path)
    assert rag("index", str(docs), cwd=tmp_path).code == 0
    monkeypatch.chdir(tmp_path)
    retriever = Retriever(Profile())
    dense = {h.id: h.scores["dense"] for h in retriever.search("boil pasta", mode="dense", top_k=10)}
    text_only = retriever.search("boil pasta", mode="fts", top_k=10)  # hits as the full-text retriever alone gives them
    assert text_only and all("dense" not in h.scores for h in text_only)
    retriever.fill_cosine(text_only, retriever.embed_queries(["boil pasta"])[0])  # what hybrid does for hits dense did not rank
    for hit in text_only:
        assert hit.scores["dense"] == pytest.approx(dense[hit.id], abs=1e-4)
        assert "dense" not in hit.ranks


def test_where_filter_and_errors(tmp_path: Path) -> None:
    docs = corpus(tmp_path)
    assert rag("index", str(docs), cwd=tmp_path).code == 0
    only = rag("query", "anything", "--where", "source LIKE '%.md'", "--json", cwd=tmp_path).json()["hits"]
    assert only and all(h["source"].endswith(".md") for h in only)
    bad = rag("query", "x", "--where", "source LIKE", cwd=tmp_path)
    assert bad.code == 2 and bad.err.startswith("error: --where") and bad.err.count("\n") == 1
    assert rag("query", "   ", cwd=tmp_path).code == 2
    zero = rag("query", "x", "--top-k", "0", cwd=tmp_path)
    assert zero.code == 2 and "--top-k must be at least 1" in zero.err
    assert rag("query", "x", "--top-k", "-3", cwd=tmp_path).code == 2
    huge = rag("query", "fox " * 25_000, "--json", cwd=tmp_path)  # 100 kB
    assert huge.code == 0 and huge.json()["hits"]


def test_batch_queries_from_stdin_keep_order(tmp_path: Path) -> None:
    docs = corpus(tmp_path)
    rag("index", str(docs), cwd=tmp_path)
    result = rag("query", "-", "-k", "1", cwd=tmp_path, stdin="pasta\numbrella\n\nfox\n")
    assert result.code == 0, result.err
    lines = result.lines()
    assert [line["query"] for line in lines] == ["pasta", "umbrella", "fox"]
    assert [Path(line["hits"][0]["source"]).name for line in lines] == ["notes.rst", "page.html", "animals.txt"]


def test_incremental_change_add_delete(tmp_path: Path) -> None:
    docs = corpus(tmp_path)
    rag("index", str(docs), cwd=tmp_path)
    again = rag("index", str(docs), "--json", cwd=tmp_path).json()
    assert again["embedding_calls"] == 0 and again["files_unchanged"] == 4 and again["files_indexed"] == 0

    (docs / "animals.txt").write_text("Cats sleep for most of the day.\n")
    os.utime(docs / "animals.txt", (1, 1))  # a different mtime even on coarse clocks
    write(docs / "new.md", "# New\n\nA brand new page about volcanoes.\n")
    (docs / "notes.rst").unlink()
    rep = rag("index", str(docs), "--json", cwd=tmp_path).json()
    assert rep["files_indexed"] == 2 and rep["files_deleted"] == 1
    assert rep["chunks_added"] == 2 and rep["chunks_removed"] == 2
    assert rep["embedding_calls"] == 1 and rep["embedded_texts"] == 2
    status = rag("status", "--json", cwd=tmp_path).json()
    assert status["chunks"] == 5 and status["sources"] == 4
    assert not any(f["source"].endswith("notes.rst") for f in status["files"])
    pasta = rag("query", "pasta salted water", "--mode", "fts", "--json", cwd=tmp_path).json()["hits"]
    assert pasta == []
    cats = rag("query", "cats sleep", "--mode", "fts", "--json", cwd=tmp_path).json()["hits"]
    assert Path(cats[0]["source"]).name == "animals.txt"


def test_identical_text_is_embedded_once(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(docs / "a" / "same.txt", "Same text in two files.\n")
    write(docs / "b" / "same.txt", "Same text in two files.\n")
    rep = rag("index", str(docs), "--json", cwd=tmp_path).json()
    assert rep["embedded_texts"] == 1 and rep["chunks_total"] == 2
    (docs / "b" / "same.txt").unlink()
    rag("index", str(docs), cwd=tmp_path)
    write(docs / "b" / "same.txt", "Same text in two files.\n")
    rep = rag("index", str(docs), "--json", cwd=tmp_path).json()
    assert rep["embedded_texts"] == 0 and rep["cache_hits"] == 1 and rep["chunks_total"] == 2


def test_gitignore_and_globs(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(docs / ".gitignore", "secret/\n*.log\n")
    write(docs / "keep.md", "# Keep\n\nkept\n")
    write(docs / "run.log", "log line\n")
    write(docs / "secret" / "s.md", "# S\n\nhidden\n")
    write(docs / "drafts" / "d.md", "# D\n\ndraft\n")
    write(docs / "code.py", "def f():\n    return 1\n")
    write(tmp_path / "rag.yaml", "sources:\n  exclude: ['drafts/']\n")
    rep = rag("index", str(docs), "--json", cwd=tmp_path).json()
    assert rep["files_seen"] == 2
    names = {Path(f["source"]).name for f in rag("status", "--json", cwd=tmp_path).json()["files"]}
    assert names == {"keep.md", "code.py"}
    write(tmp_path / "rag.yaml", "sources:\n  include: ['*.md']\n  exclude: ['drafts/']\n")
    rep = rag("index", str(docs), "--json", cwd=tmp_path).json()
    assert rep["files_deleted"] == 1  # code.py no longer matches: its chunks go


def test_bad_files_are_skipped_or_repaired(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(docs / "good.md", "# Good\n\nfine text\n")
    write(docs / "data.bin", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    write(docs / "empty.txt", "")
    write(docs / "latin1.txt", "Café crème brûlée, façade.\n".encode("latin-1"))
    write(docs / "big.txt", "x" * (2 * 1024 * 1024))
    write(docs / "broken.pdf", b"%PDF-1.4\nthis is not really a pdf\n")
    os.symlink(docs, docs / "loop")
    write(tmp_path / "rag.yaml", "sources:\n  max_file_mb: 1\n")
    result = rag("index", str(docs), "--json", cwd=tmp_path)
    assert result.code == 0, result.err
    rep = result.json()
    reasons = {Path(s["path"]).name: s["reason"] for s in rep["skipped"]}
    assert reasons["data.bin"] == "binary file"
    assert "over sources.max_file_mb" in reasons["big.txt"]
    assert "PDF" in reasons["broken.pdf"]
    assert "loop" in reasons
    assert "warning: skipped 4 files: 1 binary, 1 special file, 1 too large, 1 unreadable; rag index -v lists them" in result.err
    assert "latin1.txt is not valid UTF-8; decoded it as cp1252" in result.err
    hits = rag("query", "brûlée", "--mode", "fts", "--json", cwd=tmp_path).json()["hits"]
    assert hits and "Café crème brûlée" in hits[0]["text"]


def test_samples_folder_indexes_every_format(tmp_path: Path) -> None:
    rep = rag("index", str(SAMPLES), "--json", cwd=tmp_path).json()
    assert rep["files_indexed"] == 5 and rep["files_skipped"] == 0
    kinds = {Path(f["source"]).suffix for f in rag("status", "--json", cwd=tmp_path).json()["files"]}
    assert kinds == {".md", ".html", ".txt", ".rst", ".pdf"}
    hits = rag("query", "reciprocal rank fusion constant", "--json", cwd=tmp_path).json()["hits"]
    assert any(h["source"].endswith("retrieval-notes.pdf") and h["heading"] == "page 1" for h in hits[:3])


@pytest.mark.parametrize(
    ("args", "setup", "code", "message"),
    [
        (["index", "missing-folder"], None, 6, "path not found: missing-folder"),
        (["index", "empty"], "empty", 6, "nothing to index under empty"),
        (["query", "x"], None, 4, "no index at"),
        (["status"], None, 4, "run: rag index PATH"),
        (["index", "docs"], "yaml:embedding: [oops", 3, "rag.yaml:1: malformed YAML"),
        (["index", "docs"], "yaml:embedding:\n  nodel: x\n", 3, "unknown key 'embedding.nodel'"),
        (["index", "docs"], "yaml:embedding:\n  model: local/bert-huge\n", 3, "unknown local model 'bert-huge'"),
    ],
)
def test_bad_input_gives_one_line_and_exit_code(tmp_path: Path, args: list[str], setup: str | None, code: int, message: str) -> None:
    write(tmp_path / "docs" / "a.md", "# A\n\ntext\n")
    if setup == "empty":
        (tmp_path / "empty").mkdir()
    elif setup and setup.startswith("yaml:"):
        write(tmp_path / "rag.yaml", setup[5:])
    result = rag(*args, cwd=tmp_path)
    assert result.code == code, result.err
    assert message in result.err
    assert result.err.count("\n") == 1 and "Traceback" not in result.err


def test_missing_api_key_env_var(tmp_path: Path) -> None:
    write(tmp_path / "docs" / "a.md", "# A\n\ntext\n")
    write(
        tmp_path / "rag.yaml",
        "providers:\n  remote:\n    kind: openai\n    base_url: http://127.0.0.1:9\n    api_key_env: RAG_TEST_MISSING_KEY\n"
        "embedding:\n  model: remote/text-embedding-3-small\n",
    )
    result = rag("index", "docs", cwd=tmp_path)
    assert result.code == 3
    assert "RAG_TEST_MISSING_KEY" in result.err and result.err.count("\n") == 1


def test_index_built_with_another_model_is_refused(tmp_path: Path) -> None:
    docs = corpus(tmp_path)
    assert rag("index", str(docs), cwd=tmp_path).code == 0
    meta_path = tmp_path / ".rag" / "chunks.meta.json"
    import json

    meta = json.loads(meta_path.read_text())
    meta["embedding"]["model"] = "openai/text-embedding-3-small"
    meta["embedding"]["dimensions"] = 1536
    meta_path.write_text(json.dumps(meta))
    for args in (["index", str(docs)], ["query", "fox"]):
        result = rag(*args, cwd=tmp_path)
        assert result.code == 4
        assert "openai/text-embedding-3-small" in result.err and "local/all-MiniLM-L6-v2" in result.err
        assert "rag index --rebuild" in result.err
    rebuilt = rag("index", str(docs), "--rebuild", "--json", cwd=tmp_path)
    assert rebuilt.code == 0 and rebuilt.json()["chunks_total"] == 5
    assert rebuilt.json()["embedding_calls"] == 0  # the embedding cache survives a rebuild


def test_chunking_change_rechunks_without_reembedding_unchanged_text(tmp_path: Path) -> None:
    docs = corpus(tmp_path)
    rag("index", str(docs), cwd=tmp_path)
    write(tmp_path / "rag.yaml", "chunking:\n  max_tokens: 200\n")
    result = rag("index", str(docs), "--json", cwd=tmp_path)
    assert "chunking settings changed" in result.err
    rep = result.json()
    assert rep["files_indexed"] == 4 and rep["embedded_texts"] == 0 and rep["chunks_total"] == 5


def test_every_command_has_help_and_is_documented(tmp_path: Path) -> None:
    from tests.clirun import rag_process

    from rag.commands import COMMANDS

    top = rag_process("--help", cwd=tmp_path)  # python -m rag, as a separate process
    assert top.code == 0
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    for name in COMMANDS.values():
        assert name in top.out
        assert f"`rag {name}" in readme, f"rag {name} is not in the README"
        sub = rag(name, "--help", cwd=tmp_path)
        assert sub.code == 0 and "Usage" in sub.out, name
        if name not in ("serve", "mcp"):  # servers: they print no result (rag mcp speaks JSON-RPC on stdout)
            assert "--profile" in sub.out and "--json" in sub.out, name
