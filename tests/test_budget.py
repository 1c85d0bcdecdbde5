"""``budget:``: a priced call that would pass a cap is refused before it is sent; spend persists per window.

The embedding provider is the fault-injecting server on 127.0.0.1 with a price; the clock is moved with
``faketime`` (as tests/test_store_upkeep.py does) so a run happens in the next window.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.clirun import later, rag, rag_process, write

from rag.tokens import count_tokens

WORDS = ["amber", "basil", "cedar", "delta", "ember", "fjord", "grove", "heron", "iris", "juniper", "kelp", "lotus"]


def setup(root: Path, fault: Any) -> tuple[Path, int]:
    """Twelve one-chunk files; a daily cap that pays for a little over half of them (a dollar a token).

    Batches of two: the first window pays for three batches (six files), the next for the other six."""
    fault.usage = False  # the cost is counted with tiktoken, as the estimate is
    docs = root / "docs"
    texts = [f"The {w} report covers the {w} project in some detail. " * 4 for w in WORDS]
    for word, text in zip(WORDS, texts, strict=True):
        write(docs / f"{word}.txt", text + "\n")
    per_file = max(count_tokens(t) for t in texts)
    write(
        root / "rag.yaml",
        f"""providers:
  paid: {{kind: openai, base_url: "{fault.url}", max_retries: 0}}
embedding:
  model: paid/emb
  batch_size: 2
  concurrency: 1
  price_per_1m_tokens: 1000000
store:
  commit_chunks: 2
budget:
  per_day: {7 * per_file}
""",
    )
    return docs, per_file


def test_a_cap_reached_mid_index_leaves_it_consistent_and_the_next_window_resumes(tmp_path: Path, fault: Any) -> None:
    setup(tmp_path, fault)

    first = rag_process("index", "docs", cwd=tmp_path)
    assert first.code == 7, first.err
    [line] = first.err.splitlines()
    assert line.startswith("error: budget: embed paid/emb would cost about ") and "budget.per_day" in line
    assert "nothing was sent" in line and "files were indexed before it failed and the index is consistent" in line
    sent = fault.count("/v1/embeddings")
    assert 0 < sent < 6

    status = rag("status", "--json", cwd=tmp_path).json()
    indexed = status["sources"]
    assert 0 < indexed < len(WORDS) and status["chunks"] == indexed  # every file whole or absent
    assert status["spend"]["spent"] <= status["spend"]["per_day"] and status["spend"]["by_stage"]["embed"]["calls"] == sent
    text = rag("status", cwd=tmp_path).out
    assert "spend" in text and "(budget: per_day" in text

    again = rag_process("index", "docs", cwd=tmp_path)  # the same window: refused before anything is sent
    assert again.code == 7 and fault.count("/v1/embeddings") == sent
    assert "0 files were indexed" not in again.err and again.err.startswith("error: budget:")

    resumed = later("+1d", "index", "docs", "--json", cwd=tmp_path)
    assert resumed.code == 0, resumed.err
    report = resumed.lines()[0] if resumed.out.strip().startswith("{") else None
    assert report is not None and report["files_indexed"] == len(WORDS) - indexed and report["files_unchanged"] == indexed
    final = later("+1d", "status", "--json", cwd=tmp_path).lines()[0]
    assert final["sources"] == final["chunks"] == len(WORDS)
    assert final["spend"]["spent"] <= final["spend"]["per_day"]  # the probes of calibration were refused, not paid


def test_per_run_cap_and_an_unpriced_stage(tmp_path: Path, fault: Any) -> None:
    setup(tmp_path, fault)
    profile = (tmp_path / "rag.yaml").read_text().replace("per_day:", "per_run:")
    write(tmp_path / "rag.yaml", profile)
    first = rag_process("index", "docs", cwd=tmp_path)
    assert first.code == 7 and "budget.per_run" in first.err and "this run" in first.err
    second = rag_process("index", "docs", cwd=tmp_path)  # a new run has a new allowance: it goes on
    assert second.code == 0, second.err
    assert rag("status", "--json", cwd=tmp_path).json()["sources"] == len(WORDS)


def test_ask_refuses_a_chat_call_over_budget(tmp_path: Path, fault: Any) -> None:
    write(tmp_path / "docs" / "animals.txt", "Foxes are omnivores. They eat mice, berries and insects.\n")
    assert rag("index", "docs", cwd=tmp_path).code == 0  # the embedded model: unpriced, never capped
    write(
        tmp_path / "rag.yaml",
        f"""providers:
  paid: {{kind: openai, base_url: "{fault.url}"}}
chat:
  model: paid/chat
  price_in_per_1m_tokens: 1000000
budget:
  per_run: 5
  currency: EUR
""",
    )
    result = rag_process("ask", "what do foxes eat?", cwd=tmp_path)
    assert result.code == 7 and fault.count() == 0
    assert result.err.startswith("error: budget: chat paid/chat would cost about ") and result.err.count("\n") == 1
    assert "EUR" in result.err and "budget.per_run (5 EUR)" in result.err
    assert not (tmp_path / ".rag" / "spend.sqlite").exists() or rag("status", "--json", cwd=tmp_path).json()["spend"]["spent"] == 0
