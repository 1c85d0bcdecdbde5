"""The no-answer gate: calibrated per index at index time, shown by rag status and rag ask --json, overridable.

Real LanceDB, the real CLI and the embedded model. The corpus is about one
made-up backup tool, so on-topic questions score far above the calibrated
threshold and off-topic ones far below it: no assertion leans on a float that
moves between machines.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clirun import rag, write
from fault_server import FaultServer, Reply
from rag.ask import NO_ANSWER
from rag.calibrate import DEFAULT_THRESHOLD, best_scores, calibrate
from rag.errors import NO_ANSWER_EXIT, ConfigError
from rag.probes import PROBES
from rag.profile import parse_profile

ON_TOPIC = "How do I restore a snapshot with quokka?"
OFF_TOPIC = "Who won the 2018 football world cup?"

DOCS = {
    "snapshots.md": "# Snapshots\n\nquokka takes a snapshot of a folder with `quokka snap PATH`. A snapshot records every file's "
    "content once: files that did not change since the last snapshot cost nothing.\n\n## Restoring a snapshot\n\n"
    "Restore the latest snapshot of a folder with `quokka restore PATH`, or an older one with "
    "`quokka restore --at 2024-05-01 PATH`. Restored files keep their permissions and modification times.\n",
    "schedules.md": "# Schedules\n\nquokka can take snapshots on a schedule. Add a line such as `every day at 02:00 snap ~/photos` "
    "to `~/.config/quokka/schedule` and run `quokka daemon` to start the scheduler.\n",
    "retention.md": "# Retention and pruning\n\nOld snapshots are pruned by the retention policy: quokka keeps the last 7 daily, "
    "4 weekly and 12 monthly snapshots by default. Change it with `quokka policy --daily 14`.\n",
    "encryption.md": "# Encryption\n\nEvery snapshot is encrypted with AES-256 before it leaves the machine. The key is derived "
    "from your passphrase; quokka never stores the passphrase.\n",
}


def make_corpus(root: Path) -> Path:
    for name, text in DOCS.items():
        write(root / "docs" / name, text)
    return root / "docs"


def meta(root: Path) -> dict[str, Any]:
    return dict(json.loads((root / ".rag" / "chunks.meta.json").read_text()))


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One calibrated index shared by the read-only tests of this module."""
    root = tmp_path_factory.mktemp("abstain")
    make_corpus(root)
    result = rag("index", "docs", cwd=root)
    assert result.code == 0, result.err
    yield root


def profile_file(root: Path, index_root: Path, extra: str) -> Path:
    """A profile elsewhere that reads the shared index (rag.yaml there would change it for every test)."""
    return write(root / "p.yaml", f"store:\n  uri: {index_root / '.rag'}\n{extra}")


def test_off_topic_gets_no_answer_and_on_topic_answers(indexed: Path) -> None:
    record = meta(indexed)["calibration"]
    assert record["method"] == "probe-quantile" and record["probes"] == len(PROBES) and record["chunks"] >= len(DOCS)

    off = rag("ask", OFF_TOPIC, cwd=indexed)
    assert off.code == NO_ANSWER_EXIT == 10
    assert off.out.strip() == NO_ANSWER and "Sources" not in off.out
    assert f"threshold {record['threshold']:g} (dense, calibrated)" in off.err

    on = rag("ask", ON_TOPIC, cwd=indexed)
    assert on.code == 0, on.err
    assert "quokka restore" in on.out and "Sources" in on.out

    gate = rag("ask", OFF_TOPIC, "--json", cwd=indexed).json()["retrieved"]["threshold"]
    assert gate["value"] == record["threshold"] and gate["source"] == "calibrated" and gate["score"] == "dense"
    assert gate["passed"] == 0 and gate["dropped"] and all(d["score"] < gate["value"] for d in gate["dropped"])
    answered = rag("ask", ON_TOPIC, "--json", cwd=indexed).json()
    assert answered["retrieved"]["threshold"]["source"] == "calibrated"
    assert all(c["score"] >= record["threshold"] for c in answered["citations"])


def test_status_shows_the_calibrated_threshold(indexed: Path) -> None:
    record = meta(indexed)["calibration"]
    info = rag("status", "--json", cwd=indexed).json()["threshold"]
    assert info == {"setting": "auto", "value": record["threshold"], "source": "calibrated", "calibration": record}
    text = rag("status", cwd=indexed).out
    assert f"no-answer  cosine {record['threshold']:.3f}, calibrated for this index" in text


def test_a_number_overrides_the_calibration(indexed: Path, tmp_path: Path) -> None:
    calibrated = meta(indexed)["calibration"]["threshold"]
    profile = profile_file(tmp_path, indexed, "ask:\n  threshold: -1\n")
    off = rag("ask", OFF_TOPIC, "--json", "--profile", profile, cwd=tmp_path)
    assert off.code == 0, off.err  # everything passes -1: the profile's number wins over the calibration
    gate = off.json()["retrieved"]["threshold"]
    assert gate["value"] == -1.0 and gate["source"] == "ask.threshold" and gate["passed"] > 0
    strict = rag("ask", ON_TOPIC, "--json", "--threshold", "0.99", "--profile", profile, cwd=tmp_path)
    assert strict.code == 10 and strict.json()["retrieved"]["threshold"]["source"] == "--threshold"
    status = rag("status", "--json", "--profile", profile, cwd=tmp_path).json()["threshold"]
    assert status["value"] == -1.0 and status["source"] == "ask.threshold" and status["calibration"]["threshold"] == calibrated
    shown = rag("status", "--profile", profile, cwd=tmp_path).out
    assert f"no-answer  -1 from ask.threshold (calibrated {calibrated:.3f}, unused)\n" in shown


def test_reranked_and_full_text_asks_gate_on_the_cosine(indexed: Path, tmp_path: Path) -> None:
    profile = profile_file(tmp_path, indexed, "rerank:\n  model: local/minilm-cosine\n")
    out = rag("ask", ON_TOPIC, "--json", "--no-cache", "--profile", profile, cwd=tmp_path).json()
    assert out["retrieved"]["threshold"]["score"] == "dense" and out["retrieved"]["threshold"]["source"] == "calibrated"
    assert out["citations"][0]["score_kind"] == "rerank" and out["retrieved"]["reranked"]
    assert rag("ask", OFF_TOPIC, "--no-cache", "--profile", profile, cwd=tmp_path).code == 10

    # "daily" is in the corpus, so full text finds candidates; the question is about something else.
    fts = rag("ask", "What is the daily weather in Lisbon?", "--mode", "fts", "--json", cwd=indexed)
    assert fts.code == 10
    gate = fts.json()["retrieved"]["threshold"]
    assert gate["score"] == "dense" and gate["dropped"] and all(d["score"] is not None for d in gate["dropped"])
    assert rag("ask", ON_TOPIC, "--mode", "fts", cwd=indexed).code == 0


def test_an_index_without_calibration_uses_the_default_until_reindexed(tmp_path: Path) -> None:
    make_corpus(tmp_path)
    assert rag("index", "docs", cwd=tmp_path).code == 0
    old = meta(tmp_path)
    del old["calibration"]  # as an index built before rag calibrated
    (tmp_path / ".rag" / "chunks.meta.json").write_text(json.dumps(old))

    assert rag("status", "--json", cwd=tmp_path).json()["threshold"]["source"] == "default"
    assert "run rag index to calibrate" in rag("status", cwd=tmp_path).out
    answered = rag("ask", ON_TOPIC, "--json", cwd=tmp_path)
    assert answered.code == 0, answered.err
    gate = answered.json()["retrieved"]["threshold"]
    assert (gate["value"], gate["score"], gate["source"]) == (DEFAULT_THRESHOLD, "dense", "default")

    again = rag("index", "docs", "--json", cwd=tmp_path)  # nothing changed, but the calibration is missing
    assert again.code == 0 and again.json()["files_indexed"] == 0
    assert rag("status", "--json", cwd=tmp_path).json()["threshold"]["source"] == "calibrated"


def test_the_calibration_is_redone_once_a_tenth_of_the_index_changed(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    for i in range(30):  # one chunk each: a tenth is 3 chunks
        write(docs / f"part{i:02d}.md", f"# Part {i}\n\nquokka keeps snapshot number {i} in its own folder.\n")
    assert rag("index", "docs", cwd=tmp_path).code == 0
    first = meta(tmp_path)["calibration"]
    assert first["chunks"] == 30 and "pending" not in first

    write(docs / "part00.md", "# Part 0\n\nquokka keeps the first snapshot in its own folder.\n")
    assert rag("index", "docs", cwd=tmp_path).code == 0
    drifted = meta(tmp_path)["calibration"]  # one chunk out, one in: 2 of 30, below a tenth
    assert drifted == {**first, "pending": 2}

    write(docs / "part01.md", "# Part 1\n\nquokka keeps the second snapshot in its own folder.\n")
    assert rag("index", "docs", cwd=tmp_path).code == 0
    redone = meta(tmp_path)["calibration"]  # 4 of 30 changed since the last calibration
    assert "pending" not in redone and redone["version"] > first["version"]


class ProbesFail(FaultServer):
    """Embeds documents, but fails every batch holding a calibration probe."""

    def _default(self, path: str, body: dict[str, Any]) -> Reply:
        if path.endswith("/embeddings") and PROBES[0] in (body.get("input") or []):
            return Reply(500, {"error": {"message": "probe batch refused"}})
        return super()._default(path, body)


def test_a_failed_calibration_warns_and_the_run_still_succeeds(tmp_path: Path, serve: Any) -> None:
    provider = ProbesFail()
    url = serve(provider.app)
    write(
        tmp_path / "rag.yaml",
        f"providers:\n  p:\n    kind: openai\n    base_url: {url}\n    max_retries: 0\n"
        "embedding:\n  model: p/fake\nhttp:\n  backoff_base: 0\n",
    )
    make_corpus(tmp_path)
    result = rag("index", "docs", cwd=tmp_path)
    assert result.code == 0, result.err
    warnings = [line for line in result.err.splitlines() if "could not calibrate" in line]
    assert len(warnings) == 1 and f"the default {DEFAULT_THRESHOLD}" in warnings[0] and "next rag index" in warnings[0]
    assert rag("status", "--json", cwd=tmp_path).json()["threshold"]["source"] == "default"


# --------------------------------------------------------------------------- the pure core


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_best_scores_streams_batches() -> None:
    rng = np.random.default_rng(7)
    probes, corpus = unit(rng.standard_normal((5, 16))), unit(rng.standard_normal((300, 16)))
    exact = (probes @ corpus.T).max(axis=1)
    assert np.allclose(best_scores(probes, [corpus[i : i + 64] for i in range(0, 300, 64)]), exact, atol=1e-5)
    assert np.allclose(best_scores(probes * 3.0, [corpus * 2.0, corpus[:0]]), exact, atol=1e-5)  # cosines, whatever the norms


def test_a_few_on_topic_probes_do_not_move_the_threshold() -> None:
    null = np.linspace(0.10, 0.30, 100)
    with_on_topic = null.copy()
    with_on_topic[-5:] = 0.85  # five probes this corpus happens to answer
    base, robust = calibrate(null)["threshold"], calibrate(with_on_topic)["threshold"]
    assert robust == base < 0.85
    assert calibrate(with_on_topic, quantile=1.0, margin=0.05)["threshold"] == 0.9  # the maximum would follow them


def test_profile_threshold_is_auto_or_a_number() -> None:
    assert parse_profile("").ask.threshold == "auto"
    assert parse_profile("ask:\n  threshold: auto\n").ask.threshold == "auto"
    assert parse_profile("ask:\n  threshold: 0.25\n").ask.threshold == 0.25
    for bad in ("sometimes", "null", "[0.2]"):
        with pytest.raises(ConfigError, match=r"p.yaml:2: 'ask.threshold' must be a number or auto"):
            parse_profile(f"ask:\n  threshold: {bad}\n", "p.yaml")
