"""Where the index lives: found walking up from the current folder, as git finds .git.

Precedence: --store / $RAG_STORE, then a profile's own store.uri, then the nearest folder
holding .rag or rag.yaml, then ./.rag for a new index. Readers and writers ask the same
place (Profile.store_path), so an index written from a subfolder is the one read from the root.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.clirun import Result, rag, write

DOC = "# Locking\n\nA second writer waits for the lock on the store before it commits anything.\n"


def project(tmp_path: Path) -> tuple[Path, Path]:
    """A project root with a docs folder and an empty subfolder two levels down."""
    root = tmp_path / "proj"
    write(root / "docs" / "lock.md", DOC)
    deep = root / "a" / "b"
    deep.mkdir(parents=True)
    return root, deep


def no_index_at(result: Result, where: Path) -> bool:
    return result.code == 4 and result.err == f"error: no index at {where} (table 'chunks'); run: rag index PATH\n"


def test_index_at_the_root_is_found_two_levels_down(tmp_path: Path) -> None:
    root, deep = project(tmp_path)
    assert rag("index", "docs", cwd=root).code == 0
    hits = rag("query", "who waits for the lock", "--json", cwd=deep).json()["hits"]
    assert hits and hits[0]["source"].endswith("lock.md")
    assert rag("status", "--json", cwd=deep).json()["store"] == str(root / ".rag")
    assert not (deep / ".rag").exists()


def test_index_from_a_subfolder_writes_where_the_root_reads(tmp_path: Path) -> None:
    root, deep = project(tmp_path)
    assert rag("index", "docs", cwd=root).code == 0
    write(root / "docs" / "new.md", "# Retention\n\nThe published version is never cleaned up.\n")
    report = rag("index", "../../docs", "--json", cwd=deep).json()
    assert report["files_indexed"] == 1 and report["files_unchanged"] == 1
    assert not (deep / ".rag").exists()
    assert rag("status", "--json", cwd=root).json()["sources"] == 2


def test_a_fresh_folder_gets_its_own_index(tmp_path: Path) -> None:
    root, _ = project(tmp_path)
    assert no_index_at(rag("status", cwd=root), root / ".rag")
    assert rag("index", "docs", cwd=root).code == 0
    assert (root / ".rag").is_dir()


def test_nearest_index_wins(tmp_path: Path) -> None:
    root, deep = project(tmp_path)
    (root / ".rag").mkdir()
    (root / "a" / ".rag").mkdir()  # a subfolder with its own index is its own project, as nested git repositories
    assert no_index_at(rag("status", cwd=deep), root / "a" / ".rag")
    assert no_index_at(rag("status", cwd=root), root / ".rag")


def test_store_option_and_environment_win(tmp_path: Path) -> None:
    root, deep = project(tmp_path)
    write(root / "rag.yaml", "store:\n  uri: from-profile\n")
    (root / ".rag").mkdir()
    elsewhere = tmp_path / "elsewhere"
    assert no_index_at(rag("--store", str(elsewhere), "status", cwd=deep), elsewhere)
    assert no_index_at(rag("status", cwd=deep, env={"RAG_STORE": str(elsewhere)}), elsewhere)
    # relative to the current folder, like any path on the command line; the flag beats the variable
    assert no_index_at(rag("--store", "here", "status", cwd=deep, env={"RAG_STORE": str(elsewhere)}), deep / "here")


def test_store_option_is_where_index_writes(tmp_path: Path) -> None:
    root, _ = project(tmp_path)
    assert rag("--store", "../idx", "index", "docs", cwd=root).code == 0
    assert (tmp_path / "idx" / "chunks.lance").is_dir() and not (root / ".rag").exists()
    assert rag("status", "--json", cwd=root, env={"RAG_STORE": str(tmp_path / "idx")}).json()["sources"] == 1


def test_profile_store_uri_wins_over_the_walk(tmp_path: Path) -> None:
    root, deep = project(tmp_path)
    (root / "a" / ".rag").mkdir()  # nearer than the profile's folder, but the profile names its store
    shared = tmp_path / "shared-index"
    write(tmp_path / "profiles" / "team.yaml", f"store:\n  uri: {shared}\n")
    assert no_index_at(rag("status", "--profile", str(tmp_path / "profiles" / "team.yaml"), cwd=deep), shared)
    # a relative store.uri resolves against the profile's own folder, not the current one
    write(root / "rag.yaml", "store:\n  uri: index-dir\n")
    assert no_index_at(rag("status", cwd=root / "docs"), root / "index-dir")


def test_profile_is_found_walking_up_and_named_as_typed(tmp_path: Path) -> None:
    root, deep = project(tmp_path)
    write(root / "rag.yaml", "retrieval:\n  top_k: 1\n")
    assert rag("index", "docs", cwd=root).code == 0
    write(root / "docs" / "other.md", "# Other\n\nA writer that waits for a lock gives up after lock_timeout.\n")
    assert rag("index", "docs", cwd=root).code == 0
    assert len(rag("query", "lock", "--json", cwd=deep).json()["hits"]) == 1  # the root's profile applies here
    write(root / "rag.yaml", "retrieval:\n  top_kk: 1\n")
    code, _, err = rag("status", cwd=deep)
    assert code == 3 and err.startswith("error: ../../rag.yaml:2: unknown key 'retrieval.top_kk'")


def test_profile_without_store_uri_uses_the_walk(tmp_path: Path) -> None:
    """A profile kept outside the project (--profile, $RAG_PROFILE) that does not name a store uses the project's."""
    root, deep = project(tmp_path)
    (root / ".rag").mkdir()
    write(tmp_path / "profiles" / "fast.yaml", "retrieval:\n  top_k: 3\n")
    assert no_index_at(rag("status", cwd=deep, env={"RAG_PROFILE": str(tmp_path / "profiles" / "fast.yaml")}), root / ".rag")


@pytest.mark.parametrize("marker", [".rag", "rag.yaml"])
def test_walk_stops_at_the_ceiling(tmp_path: Path, marker: str) -> None:
    root, deep = project(tmp_path)
    if marker == ".rag":
        (root / marker).mkdir()
    else:
        write(root / marker, "")
    assert no_index_at(rag("status", cwd=deep), root / ".rag")
    assert no_index_at(rag("status", cwd=deep, env={"RAG_CEILING_DIRECTORIES": str(root / "a")}), deep / ".rag")
