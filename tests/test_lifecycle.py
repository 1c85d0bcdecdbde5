"""Model lifecycle end to end: shadow rebuilds, rag reindex with gates, rollback, history, trace fields.

Two real local models: the embedded MiniLM builds generation 1, a tiny ONNX
folder model (built here with the onnx helper API, as in test_local_models)
the next. Crashes are real: the process SIGKILLs itself at a named step
(rag.faults), and the live generation must answer throughout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tests.clirun import REPO, rag, rag_process, write

pytest.importorskip("onnx")
from tests.test_local_models import embed_folder

TINY = "mine/tiny-embed"
DOCS = {
    "cats.md": "# Cats\n\nCats are small felines. They eat fish and sleep most of the day.\n",
    "dogs.md": "# Dogs\n\nDogs are loyal companions. They chew bones and bark at the mail carrier.\n",
    "sky.md": "# Sky\n\nThe sky looks blue because air scatters short wavelengths of sunlight.\n",
    "grass.md": "# Grass\n\nGrass is green: its leaves are full of chlorophyll, which absorbs red light.\n",
    "rain.md": "# Rain\n\nRain falls from clouds when droplets grow too heavy to stay aloft.\n",
}
QUESTIONS = [
    ("what do cats eat", "cats.md"),
    ("why do dogs bark", "dogs.md"),
    ("why is the sky blue", "sky.md"),
    ("why is grass green", "grass.md"),
    ("where does rain come from", "rain.md"),
]


def project(tmp_path: Path, lifecycle: str = "") -> Path:
    """Docs, a folder of one tiny model, a questions file, and a profile naming them (dense retrieval: the model decides)."""
    embed_folder(tmp_path / "models", "tiny-embed", seed=1, pooling="mean")
    for name, text in DOCS.items():
        write(tmp_path / "docs" / name, text)
    questions = "".join(f"- question: {q}\n  expected_sources: [docs/{s}]\n" for q, s in QUESTIONS)
    write(tmp_path / "questions.yaml", questions)
    write(
        tmp_path / "rag.yaml",
        f"providers:\n  mine:\n    kind: local\n    path: {tmp_path / 'models'}\n"
        "retrieval:\n  mode: dense\n"
        f"trace:\n  path: trace.jsonl\nlifecycle:\n  eval: questions.yaml\n{lifecycle}",
    )
    return tmp_path


def answers(cwd: Path) -> list[Any]:
    """What queries return now: hit ids and scores per question, and the generation that answered."""
    out = []
    for question, _ in QUESTIONS:
        result = rag("query", question, "--json", cwd=cwd)
        assert result.code == 0, result.err
        data = result.json()
        out.append((data["index"]["generation"], [(h["id"], round(h["score"], 6)) for h in data["hits"]]))
    return out


def registry(cwd: Path) -> dict[str, Any]:
    return dict(json.loads((cwd / ".rag" / "chunks.generations.json").read_text()))


def live_model(cwd: Path) -> str:
    return str(rag("status", "--json", cwd=cwd).json()["embedding"]["model"])


# --------------------------------------------------------------------------- shadow rebuilds


def test_rebuild_builds_a_generation_beside_the_live_one_and_switches_once_complete(tmp_path: Path) -> None:
    cwd = project(tmp_path)
    first = rag("index", "docs", "--json", cwd=cwd)
    assert first.code == 0, first.err
    assert first.json()["generation"]["generation"] == 1
    before = answers(cwd)
    rebuilt = rag("index", "docs", "--rebuild", "--json", cwd=cwd)
    assert rebuilt.code == 0, rebuilt.err
    assert rebuilt.json()["generation"] == {
        "generation": 2,
        "shadow": True,
        "reason": "rebuild",
        "live_before": 1,
        "switched": True,
        "removed": [],
    }
    assert rebuilt.json()["embedding_calls"] == 0  # the embedding cache serves the rebuild
    assert (cwd / ".rag" / "chunks.lance").is_dir() and (cwd / ".rag" / "chunks.g2.lance").is_dir()
    after = answers(cwd)
    assert [g for g, _ in after] == [2] * len(QUESTIONS)
    assert [hits for _, hits in after] == [hits for _, hits in before]  # same model, same data: the same answers
    states = {k: v["state"] for k, v in registry(cwd)["generations"].items()}
    assert states == {"1": "retired", "2": "live"}


def test_a_chunking_change_builds_a_new_generation_and_retention_removes_the_oldest(tmp_path: Path) -> None:
    cwd = project(tmp_path)
    assert rag("index", "docs", cwd=cwd).code == 0
    assert rag("index", "docs", "--rebuild", cwd=cwd).code == 0
    with (cwd / "rag.yaml").open("a") as f:
        f.write("chunking:\n  max_tokens: 64\n  overlap: 8\n")
    changed = rag("index", "docs", "--json", cwd=cwd)
    assert changed.code == 0, changed.err
    assert "chunking settings changed (256/32 -> 64/8 tokens) since generation 2 was built: building generation 3" in changed.err
    assert changed.json()["generation"]["generation"] == 3 and changed.json()["generation"]["removed"] == [1]
    assert not (cwd / ".rag" / "chunks.lance").exists() and not (cwd / ".rag" / "chunks.meta.json").exists()
    history = rag("status", "--history", "--json", cwd=cwd).json()
    assert [(g["id"], g["state"]) for g in history["generations"]] == [(3, "live"), (2, "retired"), (1, "removed")]
    assert history["generations"][0]["chunking"]["max_tokens"] == 64
    unchanged = rag("index", "docs", "--json", cwd=cwd)  # the live generation now matches the profile: incremental
    assert unchanged.json()["generation"]["shadow"] is False and unchanged.json()["files_unchanged"] == len(DOCS)


def test_queries_answer_throughout_a_rebuild_from_a_concurrent_reader_process(tmp_path: Path) -> None:
    cwd = project(tmp_path)
    assert rag("index", "docs", cwd=cwd).code == 0
    out, stop = tmp_path / "reader.jsonl", tmp_path / "stop"
    env = {k: v for k, v in os.environ.items() if k != "RAG_PROFILE"} | {"PYTHONPATH": str(REPO)}
    reader = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "lifecycle_reader.py"), str(out), str(stop), "what do cats eat"], cwd=cwd, env=env
    )
    builder = None
    try:
        wait_for(lambda: len(read_lines(out)) >= 2, "the reader to answer")
        builder = subprocess.Popen(
            [sys.executable, "-m", "rag", "reindex", "--model", TINY, "--json"], cwd=cwd, env=env, stdout=subprocess.PIPE, text=True
        )
        # Hold the builder still while its shadow is half built, and let the reader query meanwhile.
        wait_for(lambda: any(g.get("state") == "building" for g in registry(cwd)["generations"].values()), "the shadow build to start")
        os.kill(builder.pid, signal.SIGSTOP)
        paused_at = len(read_lines(out))
        wait_for(lambda: len(read_lines(out)) >= paused_at + 3, "queries during the build")
        os.kill(builder.pid, signal.SIGCONT)
        stdout, _ = builder.communicate(timeout=300)
        assert builder.returncode == 0, stdout
        assert json.loads(stdout)["switched"] is True
        wait_for(lambda: any(line.get("generation") == 2 for line in read_lines(out)), "the reader to see generation 2")
    finally:
        stop.touch()
        reader.wait(timeout=60)
        if builder is not None and builder.poll() is None:
            builder.kill()
    lines = read_lines(out)
    assert [line for line in lines if line["code"] != 0] == []
    generations = [line["generation"] for line in lines]
    assert generations == sorted(generations) and set(generations) == {1, 2}  # the old one until the switch, then the new one
    assert generations[paused_at : paused_at + 3] == [1, 1, 1]


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def wait_for(condition: Any, what: str, limit: float = 240.0) -> None:
    """Wait until ``condition()``; the limit only stops a hung test (it is not what the test asserts)."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


# --------------------------------------------------------------------------- reindex, gates, rollback


def test_reindex_to_a_second_model_then_rollback_restores_the_exact_previous_answers(tmp_path: Path) -> None:
    cwd = project(tmp_path)
    assert rag("index", "docs", cwd=cwd).code == 0
    before = answers(cwd)
    moved = rag("reindex", "--model", TINY, "--json", cwd=cwd)
    assert moved.code == 0, moved.err
    result = moved.json()
    assert (result["live"], result["new"], result["switched"]) == (1, 2, True)
    assert result["model"]["new"]["model"] == TINY and result["model"]["live"]["model"] == "local/all-MiniLM-L6-v2"
    assert result["build"]["chunks"] == result["build"]["live_chunks"] == len(DOCS) and result["build"]["failures"] == 0
    assert set(result["eval"]["live"]["metrics"]) >= {"ndcg@10", "recall@10", "mrr@10"}
    assert "retrieval" in result["eval"]["new"]["latency_ms"]
    # The profile still names MiniLM: the live generation's own model reads it, and rag index keeps it.
    assert live_model(cwd) == TINY
    moved_answers = answers(cwd)
    assert [g for g, _ in moved_answers] == [2] * len(QUESTIONS) and moved_answers != before
    again = rag("index", "docs", "--json", cwd=cwd)
    assert again.json()["generation"]["shadow"] is False and again.json()["embedding"]["model"] == TINY

    back = rag("rollback", cwd=cwd)
    assert back.code == 0, back.err
    assert back.out == "generation 1 is live (local/all-MiniLM-L6-v2, 5 chunks)\ngeneration 2 is kept: rag rollback 2 returns to it\n"
    assert answers(cwd) == before  # the same ids and the same scores: nothing was re-embedded
    forward = rag("rollback", "2", "--json", cwd=cwd)
    assert forward.code == 0 and forward.json()["to"] == 2
    assert answers(cwd) == moved_answers

    history = rag("status", "--history", cwd=cwd, env={"COLUMNS": "80"})
    assert history.code == 0 and max(len(line) for line in history.out.splitlines()) <= 80, history.out
    assert "generation 2 · live" in history.out and "generation 1 · retired" in history.out and "nDCG@10" in history.out


def test_a_failing_gate_leaves_the_live_generation_and_keeps_the_shadow(tmp_path: Path) -> None:
    cwd = project(tmp_path)
    assert rag("index", "docs", cwd=cwd).code == 0
    before = answers(cwd)
    # Words outside the tiny model's vocabulary all read as [UNK]: it cannot rank these documents, MiniLM can.
    failed = rag("reindex", "--model", TINY, "--max-regression", "ndcg@10=0.01", cwd=cwd, env={"COLUMNS": "80"})
    assert failed.code == 1, failed.err
    assert "gate failed: retrieval ndcg@10 dropped" in failed.err
    assert "gates: ndcg@10 may drop 0.01 (1 failed)\na gate failed: generation 1 stays live\n" in failed.out
    assert "generation 2 is kept: rag rollback 2 makes it live" in failed.out
    assert "nDCG@10" in failed.out and "retrieval p95 ms" in failed.out
    assert max(len(line) for line in failed.out.splitlines()) <= 80, failed.out
    assert answers(cwd) == before
    assert registry(cwd)["generations"]["2"]["state"] == "rejected"
    dry = rag("reindex", "--dry-run", "--max-regression", "ndcg@10=0", "--json", cwd=cwd)  # the same model: no regression
    assert dry.code == 0, dry.err
    assert dry.json()["switched"] is False and dry.json()["gates"]["failed"] == []
    assert answers(cwd) == before
    states = {k: v["state"] for k, v in registry(cwd)["generations"].items()}
    assert states == {"1": "live", "2": "removed", "3": "built"}  # one shadow is kept for a look, the older one goes


def test_reindex_gates_need_an_eval_set_and_bad_gates_are_usage_errors(tmp_path: Path) -> None:
    cwd = project(tmp_path)
    write(cwd / "plain.yaml", "retrieval:\n  mode: dense\n")
    assert rag("index", "docs", cwd=cwd).code == 0
    no_set = rag("reindex", "--min", "ndcg@10=0.5", "--profile", "plain.yaml", cwd=cwd)
    assert no_set.code == 2 and no_set.err == "error: gates need an evaluation set: pass --eval PATH or set lifecycle.eval in the profile\n"
    bad = rag("reindex", "--max", "latency.rerank.p99=3", cwd=cwd)
    assert bad.code == 2 and "unknown statistic 'p99'" in bad.err and bad.err.count("\n") == 1
    assert not (cwd / ".rag" / "chunks.g2.lance").exists()
    nothing = rag("rollback", cwd=cwd)
    assert nothing.code == 4 and "no earlier generation is kept" in nothing.err


# --------------------------------------------------------------------------- crashes at each step of a migration

STEPS = ["generation", "embed", "commit", "fts", "eval", "switch"]


@pytest.mark.parametrize("step", STEPS)
def test_kill_9_at_each_migration_step_leaves_an_index_that_answers_and_a_rerun_finishes(tmp_path: Path, step: str) -> None:
    cwd = project(tmp_path)
    assert rag("index", "docs", cwd=cwd).code == 0
    before = answers(cwd)
    killed = rag_process("reindex", "--model", TINY, cwd=cwd, env={"RAG_CRASH_AT": step})
    assert killed.code == -signal.SIGKILL, (killed.code, killed.err)  # it really died at that step
    now = answers(cwd)
    assert now == before  # up to the one write that switches, the live generation is the old one, untouched
    finished = rag("reindex", "--model", TINY, "--json", cwd=cwd)
    assert finished.code == 0, finished.err
    assert finished.json()["switched"] is True and finished.json()["build"]["chunks"] == len(DOCS)
    assert live_model(cwd) == TINY and {g for g, _ in answers(cwd)} == {finished.json()["new"]}
    states = [g["state"] for g in registry(cwd)["generations"].values()]
    assert states.count("live") == 1 and "building" not in states


def test_kill_9_after_the_switch_and_while_removing_an_old_generation(tmp_path: Path) -> None:
    cwd = project(tmp_path)
    assert rag("index", "docs", cwd=cwd).code == 0
    assert rag("reindex", "--model", TINY, cwd=cwd).code == 0
    tiny = answers(cwd)
    # The third generation retires the first: kill while its table is being deleted.
    killed = rag_process("index", "docs", "--rebuild", cwd=cwd, env={"RAG_CRASH_AT": "retire:0.0"})
    assert killed.code == -signal.SIGKILL, killed.err
    assert registry(cwd)["generations"]["1"]["state"] == "removing"
    assert [hits for _, hits in answers(cwd)] == [hits for _, hits in tiny] and registry(cwd)["live"] == 3
    assert rag("rollback", "1", cwd=cwd).code == 4  # half deleted: never made live again
    assert rag("rollback", cwd=cwd).code == 0  # the one before is generation 2
    assert registry(cwd)["generations"]["1"]["state"] == "removed"  # the switch's clean-up finished the removal
    assert not (cwd / ".rag" / "chunks.lance").exists()


# --------------------------------------------------------------------------- trace fields


def test_query_and_ask_traces_and_json_carry_generation_version_model_ids_and_stage_latency(tmp_path: Path) -> None:
    cwd = project(tmp_path)
    assert rag("index", "docs", cwd=cwd).code == 0
    assert rag("index", "docs", "--rebuild", cwd=cwd).code == 0
    query = rag("query", "what do cats eat", "--json", cwd=cwd).json()
    ask = rag("ask", "what do cats eat", "--json", cwd=cwd).json()
    lines = [json.loads(line) for line in (cwd / "trace.jsonl").read_text().splitlines()]
    assert [line["command"] for line in lines] == ["query", "ask"]
    version = rag("status", "--json", cwd=cwd).json()["version"]
    for record in (query, ask, *lines):
        assert record["index"] == {"table": "chunks", "generation": 2, "version": version}
        model = record["models"]["embedding"]
        assert model["model"] == "local/all-MiniLM-L6-v2" and model["version"].startswith("onnx-int8-")
        assert {"embed", "retrieve"} <= set(record["latency_ms"])
    assert [h["id"] for h in query["hits"]] == [h["id"] for h in lines[0]["retrieved"]]
    assert lines[1]["retrieved"]["candidates"][0]["id"] == ask["retrieved"]["candidates"][0]["id"]


def test_ask_trace_carries_reranker_scores(tmp_path: Path) -> None:
    cwd = project(tmp_path)
    with (cwd / "rag.yaml").open("a") as f:
        f.write("rerank:\n  model: local/minilm-cosine\n")
    assert rag("index", "docs", cwd=cwd).code == 0
    ask = rag("ask", "what do cats eat", "--json", cwd=cwd)
    assert ask.code == 0, ask.err
    line = json.loads((cwd / "trace.jsonl").read_text().splitlines()[-1])
    reranked = line["retrieved"]["reranked"]
    assert reranked and all(isinstance(r["score"], float) for r in reranked)
    assert "rerank" in line["latency_ms"] and line["index"]["generation"] == 1


def test_eval_reports_rerank_latency_beside_its_lift_and_gates_on_it(tmp_path: Path) -> None:
    cwd = project(tmp_path)
    with (cwd / "rag.yaml").open("a") as f:
        f.write("rerank:\n  model: local/minilm-cosine\n")
    assert rag("index", "docs", cwd=cwd).code == 0
    ok = rag("eval", "questions.yaml", "--max", "latency.rerank.p95=60s", "--json", cwd=cwd)
    assert ok.code == 0, ok.err
    out = ok.json()
    assert set(out["rerank_latency_ms"]) == {"p50", "p95", "mean"} and "rerank_lift" in out
    assert out["gates"]["checked"] == ["latency.rerank.p95<=60000ms"]
    failed = rag("eval", "questions.yaml", "--max", "latency.rerank.p50=0.0001ms", cwd=cwd)
    assert failed.code == 1
    assert "rerank lift:" in failed.out and "rerank p50" in failed.out
    assert failed.err.startswith("gate failed: rerank latency p50 = ") and failed.err.rstrip().endswith("above the maximum 0.0001 ms")
    no_stage = rag("eval", "questions.yaml", "--no-rerank", "--max", "latency.rerank.p95=1s", cwd=cwd)
    assert no_stage.code == 1 and "stage 'rerank' did not run" in no_stage.err


def test_an_index_from_before_generations_is_generation_1_and_can_be_rolled_back_to(tmp_path: Path) -> None:
    cwd = project(tmp_path)
    assert rag("index", "docs", cwd=cwd).code == 0
    before = answers(cwd)
    (cwd / ".rag" / "chunks.generations.json").unlink()  # as every index built before generations existed
    assert [g for g, _ in answers(cwd)] == [1] * len(QUESTIONS)
    assert rag("status", "--history", "--json", cwd=cwd).json()["generations"][0]["state"] == "live"
    unknown = rag("reindex", "--model", TINY, cwd=cwd)
    assert unknown.code == 2 and unknown.err.endswith("does not record the folders it was built from; pass them: rag reindex PATH...\n")
    moved = rag("reindex", "docs", "--model", TINY, "--json", cwd=cwd)
    assert moved.code == 0, moved.err
    assert registry(cwd)["generations"]["1"]["state"] == "retired"
    assert rag("rollback", cwd=cwd).code == 0
    assert answers(cwd) == before


def test_queries_keep_answering_from_the_live_generation_while_the_profile_names_another_model(tmp_path: Path) -> None:
    cwd = project(tmp_path)
    assert rag("index", "docs", cwd=cwd).code == 0
    before = answers(cwd)
    with (cwd / "rag.yaml").open("a") as f:
        f.write(f"embedding:\n  model: {TINY}\n")
    query = rag_process("query", QUESTIONS[0][0], "--json", cwd=cwd)
    assert query.code == 0, query.err
    assert [(h["id"], round(h["score"], 6)) for h in query.json()["hits"]] == before[0][1]
    assert query.err == (
        f"warning: the profile names {TINY} but the live index (generation 1) was built with local/all-MiniLM-L6-v2: "
        f"queries use local/all-MiniLM-L6-v2 until rag index or rag reindex builds a generation with {TINY}\n"
    )
    built = rag("index", "docs", "--json", cwd=cwd)  # the profile changed: a new generation, switched when complete
    assert built.code == 0 and built.json()["generation"]["switched"] is True
    assert "building generation 2 beside it" in built.err
    assert live_model(cwd) == TINY


def test_a_profile_change_builds_a_new_generation_only_from_every_folder_the_live_one_holds(tmp_path: Path) -> None:
    cwd = project(tmp_path)
    assert rag("index", "docs", cwd=cwd).code == 0
    before = answers(cwd)
    with (cwd / "rag.yaml").open("a") as f:
        f.write("chunking:\n  max_tokens: 64\n  overlap: 8\n")
    part = rag("index", "docs/cats.md", cwd=cwd)  # a new generation of one file would lose the other four
    assert part.code == 4 and part.err.count("\n") == 1, part.err
    assert part.err.startswith("error: chunking settings changed (256/32 -> 64/8 tokens) since generation 1 was built, and a new ")
    assert part.err.endswith(f"run rag index on all of {(cwd / 'docs').resolve()}, or rag reindex\n")
    assert answers(cwd) == before and not (cwd / ".rag" / "chunks.g2.lance").exists()
    whole = rag("index", "docs", "--json", cwd=cwd)
    assert whole.json()["generation"]["generation"] == 2 and whole.json()["generation"]["switched"] is True
    assert rag("status", "--json", cwd=cwd).json()["chunking"]["max_tokens"] == 64


def test_rollback_and_history_without_an_index_say_so_and_create_nothing(tmp_path: Path) -> None:
    """A stray .rag left by a failed command is found by every later run below that folder (the nearest .rag wins)."""
    for args in (("rollback",), ("rollback", "2"), ("status", "--history")):
        result = rag(*args, cwd=tmp_path)
        assert result.code == 4 and result.err.startswith("error: no index at ") and result.err.count("\n") == 1, result.err
        assert "rag index PATH" in result.err
        assert not (tmp_path / ".rag").exists(), args


def test_a_new_version_of_the_same_model_builds_a_new_generation_and_queries_wait_for_it(tmp_path: Path) -> None:
    from rag.providers.local.minilm import expected_version, packaged_graph

    cwd = project(tmp_path)
    # an index built by another graph of the embedded model (as an older rag's int8 graph was)
    env = {**os.environ, "RAG_LOCAL_MODEL_PATH": str(packaged_graph()[0])}
    env.pop("RAG_PROFILE", None)
    old = subprocess.run([sys.executable, "-m", "rag", "index", "docs"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert old.returncode == 0, old.stderr
    built = rag("status", "--json", cwd=cwd).json()["embedding"]["version"]
    assert built.startswith("custom-")
    assert rag("status", "--json", cwd=cwd).json()["embedding_now"] == expected_version()
    assert f"rebuild    the model is now {expected_version()}: rag index on the indexed folders\n" in rag("status", cwd=cwd).out
    refused = rag("query", "what do cats eat", cwd=cwd)
    assert refused.code != 0 and refused.err.count("\n") == 1
    assert refused.err.endswith(f"now version {expected_version()} and gives other vectors; re-index with: rag index --rebuild PATH\n")
    new = rag("index", "docs", "--json", cwd=cwd)
    assert new.code == 0, new.err
    assert (
        f"embedding model version changed ({built} -> {expected_version()}) since generation 1 was built: "
        "building generation 2 beside it; queries wait until it is complete"
    ) in new.err
    assert new.json()["generation"]["generation"] == 2 and new.json()["generation"]["switched"] is True
    assert [g for g, _ in answers(cwd)] == [2] * len(QUESTIONS)
    assert rag("status", "--json", cwd=cwd).json()["embedding_now"] is None and "rebuild " not in rag("status", cwd=cwd).out
    again = rag("index", "docs", "--json", cwd=cwd)  # the live generation matches now: an incremental no-op
    assert again.json()["generation"]["shadow"] is False and again.json()["files_unchanged"] == len(DOCS)
