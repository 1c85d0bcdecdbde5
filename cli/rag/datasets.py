"""Evaluation sets on disk, and the run files written from them.

Two kinds of evaluation set:

- **BEIR** (a folder): ``corpus.jsonl`` (``_id``, ``title``, ``text``),
  ``queries.jsonl`` (``_id``, ``text``) and ``qrels/{split}.tsv`` with the
  header ``query-id corpus-id score``. Documents are ``title + " " + text``
  and are indexed into a table of their own.
- **Own documents** (a ``.yaml``/``.yml`` or ``.jsonl`` file): a list of
  ``{question, expected_sources: [paths], expected_answer?}`` run against the
  current index. Relative paths resolve against the file's folder.

Every malformed input is a :class:`rag.errors.UsageError` naming the file and
the line.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.documents import Document, Section
from rag.errors import UsageError

RUN_FORMAT = "rag-eval-run/1"


@dataclass
class EvalSet:
    """Questions and their judged documents, whatever the file layout."""

    name: str
    kind: str  # "beir" | "docs"
    path: Path
    split: str | None
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    expected_answers: dict[str, str] = field(default_factory=dict)

    @property
    def corpus_path(self) -> Path:
        return self.path / "corpus.jsonl"

    def limited(self, limit: int | None) -> EvalSet:
        """The first ``limit`` queries, in file order."""
        if limit is None or limit >= len(self.queries):
            return self
        keep = list(self.queries)[:limit]
        return EvalSet(
            self.name,
            self.kind,
            self.path,
            self.split,
            {q: self.queries[q] for q in keep},
            {q: self.qrels[q] for q in keep if q in self.qrels},
            {q: a for q, a in self.expected_answers.items() if q in keep},
        )


def load_eval_set(path: str | Path, split: str = "test") -> EvalSet:
    """A BEIR folder or an own-documents YAML/JSONL file."""
    p = Path(path)
    if p.is_dir():
        return load_beir(p, split)
    if not p.exists():
        raise UsageError(f"{p} does not exist; pass a BEIR folder (corpus.jsonl, queries.jsonl, qrels/) or a .yaml/.jsonl file")
    if p.suffix.lower() in (".yaml", ".yml", ".jsonl", ".json"):
        return load_own_docs(p)
    raise UsageError(f"{p}: not a BEIR folder nor a .yaml/.yml/.jsonl file of questions")


# --------------------------------------------------------------------------- BEIR


def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        raise UsageError(f"{path} is missing; a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/<split>.tsv")
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{path}:{number}: malformed JSON: {exc.msg}") from None
            if not isinstance(record, dict):
                raise UsageError(f"{path}:{number}: expected a JSON object per line")
            yield number, record


def _field(record: Mapping[str, Any], key: str, path: Path, number: int, required: bool = True) -> str:
    value = record.get(key)
    if value is None:
        if required:
            raise UsageError(f"{path}:{number}: missing '{key}'")
        return ""
    if not isinstance(value, (str, int)):
        raise UsageError(f"{path}:{number}: '{key}' must be a string")
    return str(value)


def load_beir(folder: Path, split: str = "test") -> EvalSet:
    """Queries that have judgements in ``qrels/{split}.tsv``, and those judgements."""
    qrels = read_qrels(folder / "qrels" / f"{split}.tsv", folder)
    queries_path = folder / "queries.jsonl"
    texts = {}
    for number, record in _jsonl(queries_path):
        qid = _field(record, "_id", queries_path, number)
        if qid in qrels:
            texts[qid] = _field(record, "text", queries_path, number).strip()
            if not texts[qid]:
                raise UsageError(f"{queries_path}:{number}: query '{qid}' has an empty 'text'")
    missing = [q for q in qrels if q not in texts]
    if missing:
        shown = ", ".join(missing[:5])
        raise UsageError(f"{folder / 'qrels' / f'{split}.tsv'}: {len(missing)} query ids are not in {queries_path} (first: {shown})")
    if not (folder / "corpus.jsonl").is_file():
        raise UsageError(f"{folder / 'corpus.jsonl'} is missing; a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/<split>.tsv")
    ordered = {q: texts[q] for q in qrels}
    return EvalSet(folder.name, "beir", folder, split, ordered, qrels)


def read_qrels(path: Path, folder: Path | None = None) -> dict[str, dict[str, int]]:
    if not path.is_file():
        splits = sorted(p.stem for p in path.parent.glob("*.tsv")) if path.parent.is_dir() else []
        hint = f"; splits here: {', '.join(splits)} (choose one with --split)" if splits else ""
        raise UsageError(f"{path} is missing{hint}")
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            cols = line.rstrip("\n\r").split("\t")
            if not line.strip():
                continue
            if number == 1 and cols[:2] == ["query-id", "corpus-id"]:
                continue
            if len(cols) != 3:
                raise UsageError(f"{path}:{number}: expected 3 tab-separated columns 'query-id corpus-id score', got {len(cols)}")
            try:
                score = int(cols[2])
            except ValueError:
                raise UsageError(f"{path}:{number}: score '{cols[2]}' is not a whole number") from None
            qrels.setdefault(cols[0], {})[cols[1]] = score
    if not qrels:
        raise UsageError(f"{path} holds no judgements")
    return qrels


def iter_corpus(folder: Path) -> Iterator[Document]:
    """BEIR corpus lines as Documents keyed by ``_id``; streamed, not held in memory."""
    path = folder / "corpus.jsonl"
    seen: set[str] = set()
    for number, record in _jsonl(path):
        doc_id = _field(record, "_id", path, number)
        if doc_id in seen:
            raise UsageError(f"{path}:{number}: duplicate _id '{doc_id}'")
        seen.add(doc_id)
        title = _field(record, "title", path, number, required=False)
        text = (title + " " + _field(record, "text", path, number, required=False)).strip()
        sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
        yield Document(source=doc_id, title=title, sections=[Section(text=text)], size=len(text), sha256=sha, kind="beir")


def corpus_fingerprint(folder: Path) -> str:
    """Changes whenever the corpus file is moved, rewritten or touched."""
    path = (folder / "corpus.jsonl").resolve()
    stat = path.stat()
    return hashlib.sha256(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:12]


def table_name(folder: Path, settings: str) -> str:
    """``beir_<folder>_<hash>``; the hash covers the corpus and the indexing settings."""
    slug = re.sub(r"[^a-z0-9]+", "_", folder.resolve().name.lower()).strip("_") or "dataset"
    digest = hashlib.sha256(f"{corpus_fingerprint(folder)}\0{settings}".encode()).hexdigest()[:10]
    return f"beir_{slug}_{digest}"


# --------------------------------------------------------------------------- own documents


def load_own_docs(path: Path) -> EvalSet:
    records = _own_records(path)
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    answers: dict[str, str] = {}
    for index, (number, record) in enumerate(records, 1):
        where = f"{path}:{number}"
        unknown = set(record) - {"id", "question", "expected_sources", "expected_answer"}
        if unknown:
            raise UsageError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; keys: id, question, expected_sources, expected_answer")
        question = record.get("question")
        if not isinstance(question, str) or not question.strip():
            raise UsageError(f"{where}: 'question' must be a non-empty string")
        sources = record.get("expected_sources")
        if not isinstance(sources, list) or not sources or not all(isinstance(s, str) and s for s in sources):
            raise UsageError(f"{where}: 'expected_sources' must be a non-empty list of paths")
        qid = str(record.get("id") or f"q{index}")
        if qid in queries:
            raise UsageError(f"{where}: duplicate id '{qid}'")
        queries[qid] = question.strip()
        qrels[qid] = {resolve_source(s, path.parent): 1 for s in sources}
        answer = record.get("expected_answer")
        if answer is not None:
            if not isinstance(answer, str):
                raise UsageError(f"{where}: 'expected_answer' must be a string")
            answers[qid] = answer
    if not queries:
        raise UsageError(f"{path} holds no questions")
    return EvalSet(path.stem, "docs", path, None, queries, qrels, answers)


def resolve_source(source: str, base: Path) -> str:
    """An expected source as the index stores it: an absolute, resolved path.

    Relative paths resolve against the evaluation file's folder, or against
    the working directory when only that one exists.
    """
    candidate = Path(source).expanduser()
    if not candidate.is_absolute():
        beside = base / candidate
        candidate = beside if beside.exists() or not candidate.exists() else candidate
    return str(candidate.resolve())


def _own_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    if path.suffix.lower() == ".jsonl":
        return list(_jsonl(path))
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
        node, data = yaml.compose(text), yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise UsageError(f"{where}: malformed YAML: {getattr(exc, 'problem', None) or exc}") from None
    if node is None:
        raise UsageError(f"{path} holds no questions")
    if isinstance(data, dict) and list(data) == ["questions"]:  # allow {questions: [...]}
        node, data = node.value[0][1], data["questions"]
    if not isinstance(data, list) or not isinstance(node, yaml.SequenceNode):
        raise UsageError(f"{path}:{node.start_mark.line + 1}: expected a list of questions (or 'questions:' holding one)")
    out = []
    for item, value in zip(node.value, data, strict=True):
        line = item.start_mark.line + 1
        if not isinstance(value, dict):
            raise UsageError(f"{path}:{line}: each question must be a mapping with 'question' and 'expected_sources'")
        out.append((line, value))
    return out


# --------------------------------------------------------------------------- run files


def write_trec_run(path: Path, runs: Mapping[str, Mapping[str, float]], tag: str) -> None:
    """``qid Q0 docid rank score tag`` lines, ranked as trec_eval ranks them."""
    from rag.metrics import rank

    tag = re.sub(r"\s+", "_", tag) or "rag"
    lines = []
    for qid, scores in runs.items():
        for position, doc in enumerate(rank(scores), 1):
            lines.append(f"{qid} Q0 {doc} {position} {scores[doc]:.6f} {tag}\n")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(lines), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write the TREC run {path}: {exc.strerror or exc}") from None


def save_run(path: Path, report: Mapping[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot save the run to {path}: {exc.strerror or exc}") from None


def load_run(path: Path) -> dict[str, Any]:
    """A run saved by ``rag eval --save``; checks the format marker and the stages."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--compare {path}: no such file; write one with rag eval --save {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--compare {path}: cannot read it: {exc}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"--compare {path}:{exc.lineno}: malformed JSON: {exc.msg}") from None
    if not isinstance(data, dict) or data.get("format") != RUN_FORMAT:
        raise UsageError(f"--compare {path}: not a run saved by rag eval --save (format '{RUN_FORMAT}' expected)")
    stages = data.get("stages")
    if not isinstance(stages, dict) or not all(isinstance(s, dict) and isinstance(s.get("metrics"), dict) for s in stages.values()):
        raise UsageError(f"--compare {path}: 'stages' is missing or malformed")
    return data
