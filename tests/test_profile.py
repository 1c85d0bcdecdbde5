"""Profile lookup, interpolation and validation: every error names key, file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.clirun import rag, write

from rag.errors import ConfigError
from rag.profile import META_FIELDS, Profile, load_profile, parse_profile


def test_builtin_default_is_offline() -> None:
    p = Profile()
    assert p.embedding.model.startswith("local/")
    assert p.chat.model is None and p.rerank.model is None


def test_values_and_interpolation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_TEST_URL", "http://127.0.0.1:9")
    p = parse_profile(
        "providers:\n  mine:\n    kind: tei\n    base_url: ${RAG_TEST_URL}\n"
        "embedding:\n  model: local/all-MiniLM-L6-v2\n  batch_size: 8\n"
        "retrieval:\n  mode: dense\n  top_k: 3\n"
        "rerank:\n  model: mine/bge\n"
        "store:\n  uri: ${RAG_UNSET_DIR:-idx}\n",
        "rag.yaml",
        base_dir=Path("/base"),
    )
    assert p.providers["mine"].base_url == "http://127.0.0.1:9"
    assert p.embedding.batch_size == 8 and p.retrieval.mode == "dense"
    assert p.store_path == Path("/base/idx")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("embedding:\n  modle: x\n", "rag.yaml:2: unknown key 'embedding.modle'"),
        ("embeding:\n  model: x\n", "rag.yaml:1: unknown key 'embeding'"),
        ("embedding:\n  batch_size: many\n", "rag.yaml:2: 'embedding.batch_size' must be a whole number"),
        ("retrieval:\n  top_k: 2.5\n", "rag.yaml:2: 'retrieval.top_k' must be a whole number"),
        ("sources:\n  include: '*.md'\n", "rag.yaml:2: 'sources.include' must be a list"),
        ("retrieval: [1, 2\n", "rag.yaml:2: malformed YAML"),
        ("embedding:\n\tmodel: x\n", "tabs"),
        ("chat:\n  model: ${RAG_SURELY_UNSET_VAR}\n", "rag.yaml:2: 'chat.model' uses ${RAG_SURELY_UNSET_VAR}, which is not set"),
        ("retrieval:\n  mode: semantic\n", "rag.yaml:2: 'retrieval.mode' must be one of hybrid, dense, fts"),
        ("chunking:\n  max_tokens: 100\n  overlap: 100\n", "rag.yaml:3: 'chunking.overlap' must be at least 0 and below"),
        ("embedding:\n  model: nowhere/x\n", "unknown provider 'nowhere'"),
        ("embedding:\n  model: just-a-name\n", "must be written provider/model"),
        ("providers:\n  p:\n    kind: soap\n", "providers.p.kind 'soap' is not one of"),
    ],
)
def test_validation_errors_name_key_file_and_line(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_profile(text, "rag.yaml")
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "rag.yaml", "retrieval:\n  top_k: 4\n")
    write(tmp_path / "env.yaml", "retrieval:\n  top_k: 5\n")
    write(tmp_path / "flag.yaml", "retrieval:\n  top_k: 6\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAG_PROFILE", raising=False)
    assert load_profile().retrieval.top_k == 4
    monkeypatch.setenv("RAG_PROFILE", str(tmp_path / "env.yaml"))
    assert load_profile().retrieval.top_k == 5
    assert load_profile(str(tmp_path / "flag.yaml")).retrieval.top_k == 6
    with pytest.raises(ConfigError, match="not found"):
        load_profile(str(tmp_path / "missing.yaml"))


def test_cli_reports_profile_errors_in_one_line(tmp_path: Path) -> None:
    write(tmp_path / "rag.yaml", "store:\n  url: .rag\n")
    result = rag("status", cwd=tmp_path)
    assert result.code == 3
    assert result.err.strip() == (
        "error: rag.yaml:2: unknown key 'store.url'; valid keys here: uri, table, lock_timeout, commit_chunks, keep_runs, storage_options, remote_grace"
    )


def test_example_profile_is_valid_and_documents_every_key() -> None:
    import dataclasses

    root = Path(__file__).resolve().parents[1]
    example = (root / "rag.yaml.example").read_text(encoding="utf-8")
    parse_profile(example, "rag.yaml.example")
    p = Profile()
    for section in dataclasses.fields(p):
        if section.name in (*META_FIELDS, "providers"):
            continue
        assert f"\n{section.name}:" in "\n" + example, section.name
        for key in dataclasses.fields(getattr(p, section.name)):
            assert f"  {key.name}:" in example or f"# {key.name}:" in example, f"{section.name}.{key.name}"
