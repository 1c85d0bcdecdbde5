"""The index in an object store: a real S3-compatible server (moto's) on 127.0.0.1, with credentials it checks.

Each test gets its own prefix in one bucket. Writers that stand for separate machines get separate local cache
folders (XDG_CACHE_HOME): their local writer locks are then no help, and only Lance's commit conflict handling
keeps them apart.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.clirun import rag, rag_process, write

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto")

BUCKET = "rag-bucket"
TOPICS = ["volcanoes", "glaciers", "tides", "deserts", "comets", "auroras", "geysers", "lagoons"]


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    """moto's server with authentication on: the first 4 requests (unauthenticated) make a user, its key, its policy
    and the bucket; every request after that must be signed with that key."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "4"}
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        iam = boto3.client("iam", endpoint_url=url, aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1")
        iam.create_user(UserName="rag")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(UserName="rag", PolicyName="all", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="rag")["AccessKey"]
        client = boto3.client(
            "s3",
            endpoint_url=url,
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=BUCKET)
        yield {"url": url, "key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
    finally:
        server.terminate()
        server.wait(timeout=10)


def project(root: Path, s3: dict[str, str], prefix: str, extra: str = "") -> dict[str, str]:
    """A project whose index is s3://rag-bucket/<prefix>; returns the environment its commands run with."""
    write(
        root / "rag.yaml",
        f"store:\n  uri: s3://{BUCKET}/{prefix}\n  storage_options:\n    endpoint: {s3['url']}\n    region: us-east-1\n"
        f"    allow_http: 'true'\n    aws_access_key_id_env: TEST_S3_KEY\n    aws_secret_access_key_env: TEST_S3_SECRET\n{extra}",
    )
    return {"TEST_S3_KEY": s3["key"], "TEST_S3_SECRET": s3["secret"], "XDG_CACHE_HOME": str(root / "cache")}


def corpus(root: Path, files: int = 8) -> Path:
    docs = root / "docs"
    for i in range(files):
        topic = TOPICS[i % len(TOPICS)]
        write(docs / f"doc{i:02d}.md", f"# {topic.title()} {i}\n\nField notes {i} about {topic}: observers recorded detail {i * 31}.\n")
    return docs


def bucket_table(s3: dict[str, str], prefix: str) -> Any:
    """The Lance table under ``prefix``, opened directly (not through rag)."""
    import lance

    options = {
        "endpoint": s3["url"],
        "region": "us-east-1",
        "allow_http": "true",
        "aws_access_key_id": s3["key"],
        "aws_secret_access_key": s3["secret"],
    }
    return lance.dataset(f"s3://{BUCKET}/{prefix}/chunks.lance", storage_options=options)


def ids_in_bucket(s3: dict[str, str], prefix: str) -> list[str]:
    return list(bucket_table(s3, prefix).to_table(columns=["id"]).column("id").to_pylist())


def test_index_query_status_and_incremental_reindex_in_a_bucket(tmp_path: Path, s3: dict[str, str]) -> None:
    env = project(tmp_path, s3, "basic")
    docs = corpus(tmp_path)
    first = rag("index", "docs", "--json", cwd=tmp_path, env=env)
    assert first.code == 0, first.err
    assert first.json()["chunks_total"] == 8
    assert not (tmp_path / ".rag").exists()  # nothing of the index on the local disk but this machine's caches
    assert (tmp_path / "cache" / "rag" / "stores" / "s3" / BUCKET / "basic" / "embed-cache.sqlite").is_file()

    hits = rag("query", "geysers", "--json", cwd=tmp_path, env=env).json()["hits"]
    assert "Geysers" in hits[0]["title"]
    status = rag("status", "--json", cwd=tmp_path, env=env)
    assert status.code == 0 and status.json()["store"].endswith("basic") and status.json()["chunks"] == 8
    assert s3["secret"] not in status.out + status.err
    write(tmp_path / "eval.yaml", "- question: geysers field notes\n  expected_sources: [docs/doc06.md]\n")
    evaluated = rag("eval", "eval.yaml", "--mode", "fts", "--k", "1", "--json", "--no-answers", cwd=tmp_path, env=env)
    assert evaluated.code == 0, evaluated.err
    assert evaluated.json()["stages"]["retrieval"]["metrics"]["mrr@1"] == 1.0
    assert rag("eval", "--ann-recall", "--json", cwd=tmp_path, env=env).json()["type"] == "exact"

    write(docs / "doc00.md", "# Volcanoes 0\n\nRewritten notes about calderas and lava domes.\n")
    (docs / "doc07.md").unlink()
    again = rag("index", "docs", "--json", cwd=tmp_path, env=env).json()
    assert (again["files_indexed"], again["files_deleted"], again["embedded_texts"]) == (1, 1, 1)
    ids = ids_in_bucket(s3, "basic")
    assert len(ids) == 7 == len(set(ids))
    assert "calderas" in rag("ask", "calderas and lava domes", cwd=tmp_path, env=env).out


def test_kill_9_mid_commit_then_rerun(tmp_path: Path, s3: dict[str, str]) -> None:
    env = project(tmp_path, s3, "killed")
    write(tmp_path / "rag.yaml", (tmp_path / "rag.yaml").read_text() + "  commit_chunks: 2\nembedding:\n  batch_size: 2\n")
    corpus(tmp_path)
    killed = rag_process("index", "docs", cwd=tmp_path, env={**env, "RAG_CRASH_AT": "commit:0.01"})
    assert killed.code == -signal.SIGKILL, killed.err
    again = rag_process("index", "docs", "--json", cwd=tmp_path, env=env)
    assert again.code == 0, again.err
    assert again.json()["chunks_total"] == 8
    ids = ids_in_bucket(s3, "killed")
    assert len(ids) == 8 == len(set(ids))


def test_two_writers_on_two_machines_do_not_duplicate(tmp_path: Path, s3: dict[str, str]) -> None:
    env = project(tmp_path, s3, "two")
    write(tmp_path / "rag.yaml", (tmp_path / "rag.yaml").read_text() + "  commit_chunks: 2\nembedding:\n  batch_size: 2\n")
    corpus(tmp_path, files=12)
    base = {k: v for k, v in os.environ.items() if k != "RAG_PROFILE"}
    procs: list[subprocess.Popen[str]] = []
    for machine in ("a", "b"):  # separate local caches: separate lock files, as on two machines
        menv = {**base, **env, "XDG_CACHE_HOME": str(tmp_path / f"cache-{machine}")}
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "rag", "index", "docs"],
                cwd=tmp_path,
                env=menv,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results: list[Any] = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    ids = ids_in_bucket(s3, "two")
    assert len(ids) == 12 == len(set(ids))


def versions_in_bucket(s3: dict[str, str], prefix: str) -> list[int]:
    return [int(v["version"]) for v in bucket_table(s3, prefix).versions()]


def test_versions_another_machine_may_be_on_are_kept_for_the_grace(tmp_path: Path, s3: dict[str, str]) -> None:
    """Retention in a bucket keeps every version younger than store.remote_grace (a writer on another machine
    resolves its commit by reading the versions since its own); past the grace, keep_runs rules as on a disk."""
    env = project(tmp_path, s3, "grace", extra="  keep_runs: 2\n")
    docs = corpus(tmp_path, files=3)
    for n in range(4):
        write(docs / "doc00.md", f"# Volcanoes\n\nRevision {n} of the notes about calderas.\n")
        run = rag("index", "docs", "--json", cwd=tmp_path, env=env)
        assert run.code == 0, run.err
        assert run.json()["maintenance"]["versions_removed"] == 0
    before = versions_in_bucket(s3, "grace")
    assert len(before) >= 8

    write(tmp_path / "rag.yaml", (tmp_path / "rag.yaml").read_text() + "  remote_grace: 0\n")
    write(docs / "doc00.md", "# Volcanoes\n\nThe last revision, about lava domes.\n")
    run = rag("index", "docs", "--json", cwd=tmp_path, env=env)
    assert run.code == 0, run.err
    after = versions_in_bucket(s3, "grace")
    assert run.json()["maintenance"]["versions_removed"] >= len(before) - len(after) > 0
    assert len(after) <= 4  # the two runs' published versions (and what they first published), the latest
    assert "lava domes" in rag("query", "lava domes", "--mode", "fts", cwd=tmp_path, env=env).out


def test_a_rebuild_in_a_bucket_builds_beside_the_live_table_and_every_machine_follows_the_switch(
    tmp_path: Path, s3: dict[str, str]
) -> None:
    env = project(tmp_path, s3, "gens")
    elsewhere = {**env, "XDG_CACHE_HOME": str(tmp_path / "cache-elsewhere")}  # a second machine: its own caches
    corpus(tmp_path, files=4)
    assert rag("index", "docs", cwd=tmp_path, env=env).code == 0
    before = rag("query", "tides", "--json", cwd=tmp_path, env=elsewhere).json()["hits"]

    write(tmp_path / "rag.yaml", (tmp_path / "rag.yaml").read_text() + "chunking:\n  max_tokens: 64\n  overlap: 8\n")
    changed = rag("index", "docs", "--json", cwd=tmp_path, env=env)
    assert changed.code == 0, changed.err
    assert "building generation 2 beside it" in changed.err and changed.json()["generation"]["generation"] == 2
    client = boto3.client(
        "s3", endpoint_url=s3["url"], aws_access_key_id=s3["key"], aws_secret_access_key=s3["secret"], region_name="us-east-1"
    )
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="gens/")["Contents"]}
    assert {"gens/chunks.generations.json", "gens/chunks.g2.meta.json"} <= keys
    assert any(k.startswith("gens/chunks.g2.lance/") for k in keys) and any(k.startswith("gens/chunks.lance/") for k in keys)

    status = rag("status", "--json", cwd=tmp_path, env=elsewhere).json()  # the other machine reads the new generation
    assert status["chunking"]["max_tokens"] == 64
    history = rag("status", "--history", "--json", cwd=tmp_path, env=elsewhere).json()
    assert [(g["id"], g["state"]) for g in history["generations"]] == [(2, "live"), (1, "retired")]
    assert history["store"] == f"s3://{BUCKET}/gens" and all(g["disk_bytes"] > 0 for g in history["generations"])

    back = rag("rollback", "--json", cwd=tmp_path, env=elsewhere)
    assert back.code == 0, back.err
    assert back.json()["to"] == 1
    assert rag("query", "tides", "--json", cwd=tmp_path, env=env).json()["hits"] == before  # nothing re-embedded
    assert s3["secret"] not in changed.err + back.out + back.err


def test_a_wrong_credential_is_one_line_without_the_secret(tmp_path: Path, s3: dict[str, str]) -> None:
    env = project(tmp_path, s3, "basic")
    wrong = {**env, "TEST_S3_SECRET": "not-the-secret-at-all"}
    for command in (["status"], ["query", "geysers"], ["index", "docs"]):
        corpus(tmp_path, files=1)
        result = rag_process(*command, cwd=tmp_path, env=wrong)
        assert result.code == 4, (command, result.err)
        assert len(result.err.strip().splitlines()) == 1, result.err
        assert "access denied" in result.err and "not-the-secret-at-all" not in result.err and s3["secret"] not in result.err
