"""The Python API (rag.open_index) end to end on real LanceDB: the README's example, and that the CLI uses it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.clirun import rag
from tests.test_eval_cli import make_beir

import rag as api
from rag.errors import StoreError, UsageError

NOTES = {
    "tides.md": "# Tides\n\nThe tide at station 7 rises four metres twice a day.\n",
    "bread.md": "# Bread\n\nBread is baked from flour, water and yeast at 230 degrees.\n",
    "piano.md": "# Piano\n\nA concert piano has eighty-eight keys.\n",
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in NOTES.items():
        (docs / name).write_text(text, encoding="utf-8")
    (tmp_path / "rag.yaml").write_text("store:\n  uri: store\n", encoding="utf-8")
    return tmp_path


def test_readme_example_indexes_searches_and_answers(project: Path) -> None:
    with api.open_index(project / "rag.yaml") as index:
        report = index.add([project / "docs"])
        assert (report.files_indexed, report.committed) == (3, True)
        hits = index.search("how many keys does a piano have", top_k=2)
        answer = index.ask("how high does the tide rise at station 7?")
        status = index.status()
    assert hits[0].source.endswith("piano.md")
    assert not answer.no_answer and answer.sources[0].hit.source.endswith("tides.md")
    assert "four metres" in answer.answer
    assert status["chunks"] == 3 and status["sources"] == 3
    # the index it wrote is the one the CLI reads
    out = rag("query", "yeast", "--mode", "fts", "--json", "--profile", project / "rag.yaml", cwd=project)
    assert out.code == 0 and out.json()["hits"][0]["source"].endswith("bread.md")


def test_search_many_matches_one_by_one_and_evaluate_reports(project: Path) -> None:
    index = api.open_index(project / "rag.yaml")
    index.add([project / "docs"])
    queries = ["tide station", "flour and yeast", "eighty-eight keys"]
    together = index.search_many(queries, top_k=3)
    alone = [index.search(q, top_k=3) for q in queries]
    assert [[h.id for h in hits] for hits in together] == [[h.id for h in hits] for hits in alone]
    assert [hits[0].source.rsplit("/", 1)[1] for hits in together] == ["tides.md", "bread.md", "piano.md"]
    report = index.evaluate(make_beir(project), mode="fts", ks="1")
    assert report.stages["retrieval"].metrics["recall@1"] == pytest.approx(0.75)  # q1 found; q2 finds d2 of {d2, d4}
    index.close()


def test_errors_are_the_cli_s_one_line_errors(project: Path) -> None:
    index = api.open_index(project / "rag.yaml")
    with pytest.raises(StoreError, match="rag index"):
        index.search("anything")
    index.add([project / "docs"])
    with pytest.raises(UsageError, match="--mode must be one of"):
        index.search("tides", mode="semantic")
    with pytest.raises(api.RagError):
        index.ask("   ")


def test_store_argument_wins_and_import_is_light(project: Path, tmp_path: Path) -> None:
    index = api.open_index(project / "rag.yaml", store=tmp_path / "elsewhere")
    index.add([project / "docs"])
    assert (tmp_path / "elsewhere").is_dir() and not (project / "store").exists()
    code = "import sys, rag; rag.__all__; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('lance', 'lancedb', 'pyarrow', 'onnxruntime', 'numpy'))))"
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
