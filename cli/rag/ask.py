"""``rag ask``: retrieve, rerank, threshold, keep the top n, then answer with checked citations.

    retrieve top_k ─► rerank (when configured) ─► drop below threshold ─► keep top_n ─► synthesise
                                                        │ nothing left                      ├─ chat model: numbered sources prompt
                                                        └─► no answer (exit 10)             └─ none: extractive sentences

The threshold (``ask.threshold``, ``--threshold``) decides whether the
documents answer at all; candidates below it are dropped, and when none is
left rag says so (exit 10):

- ``auto`` (the default) compares each candidate's embedding cosine with the
  threshold calibrated for this index when it was built (:mod:`rag.calibrate`),
  in every mode and whether or not a reranker ran: the calibration measures
  cosines, and a reranker's scores live on a scale of its own (HTTP rerankers
  differ). A reranker still decides the order. In fts mode the question is
  embedded for the purpose. An index built before rag calibrated uses
  :data:`rag.calibrate.DEFAULT_THRESHOLD` until the next ``rag index``.
- a number compares the candidate's relevance as ranked: its rerank score when
  reranked, else its cosine (dense and hybrid) or its BM25 score (fts).

:class:`Asker` keeps the index, models, cache and connections open, so a batch
of questions pays for them once. Rendering is the caller's: text reaches
``on_delta`` as it arrives (citations already checked) and the result says
the rest (see :mod:`rag.answer`).
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from rag.answer import AUTO, AskResult, Settings, Trail
from rag.answer_cache import AnswerCache, cache_key, cache_path
from rag.calibrate import auto_threshold
from rag.citations import CitationFilter, check
from rag.documents import Hit
from rag.errors import RagError, UsageError
from rag.extractive import extract
from rag.freshness import Staleness, refresh
from rag.freshness import check as check_freshness
from rag.profile import Profile
from rag.prompt import Numbered, build_prompt
from rag.providers.base import ChatModel, ChatResult, Reranker, Usage, Vectors
from rag.render import display_path
from rag.rerank import in_order, rerank_hits, rerank_text
from rag.retrieve import Retriever, validate_query
from rag.store import FileState
from rag.trace import append_trace, embedding_model, index_info

Delta = Callable[[str], None]
Warn = Callable[[str], None]

NO_ANSWER = "The indexed documents do not answer this question."


@dataclass
class _Timer:
    latency_ms: dict[str, float]

    def stage(self, name: str, started: float) -> float:
        now = time.perf_counter()
        self.latency_ms[name] = round(self.latency_ms.get(name, 0.0) + (now - started) * 1000, 2)
        return now


class Asker:
    """Answers questions against one profile's index. Not thread-safe; one per thread."""

    def __init__(self, profile: Profile, *, chat_model: str | None = None, rerank: bool = True, cache: bool = True) -> None:
        from rag.providers import make_chat, make_reranker

        self.profile = profile
        self.retriever = Retriever(profile)
        self.reranker: Reranker | None = make_reranker(profile) if rerank else None
        self.chat: ChatModel | None = make_chat(profile, chat_model)
        self.chat_alias = chat_model or profile.chat.model
        self.cache = AnswerCache(cache_path(profile)) if cache and profile.cache.enabled else None
        self._states: dict[str, FileState] | None = None

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()

    @property
    def generative(self) -> bool:
        return self.chat is not None

    def ask(
        self, question: str, settings: Settings | None = None, on_delta: Delta | None = None, on_warning: Warn | None = None
    ) -> AskResult:
        """Answer ``question``. Answer text goes to ``on_delta`` as it is ready, warnings to ``on_warning``
        as they arise (both also end up in the result); a trace line is written whatever the outcome."""
        settings = settings or Settings.from_profile(self.profile)
        trail = Trail(
            question=question.strip(),
            settings=settings,
            generative=self.chat is not None and not settings.extractive,
            mode=settings.mode or self.profile.retrieval.mode,
        )
        warn = _Warnings(trail.warnings, on_warning)
        try:
            result = self._ask(trail, settings, on_delta, warn)
        except RagError as err:
            trail.error = str(err)
            self._trace(trail, None, warn)
            raise
        if self.cache is not None and self.cache.error:
            warn(self.cache.error)
        self._trace(trail, result, warn)
        return result

    # ------------------------------------------------------------------ stages

    def _ask(self, trail: Trail, settings: Settings, on_delta: Delta | None, warn: Warn) -> AskResult:
        settings.validate()
        question = validate_query(trail.question)
        timer = _Timer(trail.latency_ms)
        started = t = time.perf_counter()
        trail.stale = self._freshness(question, settings, trail, warn)
        t = timer.stage("freshness", t)
        trail.models["embedding"] = embedding_model(self.retriever)
        trail.index = index_info(self.retriever)
        spent, embed_ms = self.retriever.usage.copy(), self.retriever.embed_ms
        candidates = self.retriever.search(question, mode=settings.mode, top_k=settings.top_k, where=settings.where)
        trail.ledger.add("embed", self.retriever.usage - spent)
        trail.latency_ms["embed"] = round(self.retriever.embed_ms - embed_ms, 2)
        trail.candidates = [dataclasses.replace(h, ranks=dict(h.ranks), scores=dict(h.scores)) for h in candidates]
        t = timer.stage("retrieve", t)
        if self.reranker is not None and candidates:
            candidates = self._rerank(question, candidates, trail)
            t = timer.stage("rerank", t)
        kept = self._threshold(question, candidates, settings, trail)[: settings.top_n]
        trail.selected = kept
        if not kept:
            timer.stage("total", started)
            return trail.result(NO_ANSWER, [], no_answer=True)
        if trail.generative:
            result = self._generate(question, kept, settings, trail, on_delta)
            t = timer.stage("chat", t)
        else:
            result = self._extract(question, kept, trail, on_delta)
            t = timer.stage("extract", t)
        timer.stage("total", started)
        return result

    def _freshness(self, question: str, settings: Settings, trail: Trail, warn: Warn) -> Staleness:
        stale = check_freshness(self._file_states())
        if stale and settings.refresh:
            counts, warnings = refresh(self.profile, stale)
            trail.refreshed = counts
            for message in warnings:
                warn(message)
            self.retriever, self._states = Retriever(self.profile), None  # an open table keeps reading the version it opened
            stale = check_freshness(self._file_states())
        if stale:
            warn(stale.message(f"rag ask --refresh {shlex.quote(question)}"))
        return stale

    def _file_states(self) -> dict[str, FileState]:
        """What the open table recorded per file; read once, as the open table never changes under us."""
        if self._states is None:
            self._states = self.retriever.snapshot.file_states()
        return self._states

    def _rerank(self, question: str, hits: list[Hit], trail: Trail) -> list[Hit]:
        assert self.reranker is not None
        key = cache_key(
            kind="rerank", model=self.reranker.ref, version=self.reranker.version, query=question, documents=[rerank_text(h) for h in hits]
        )
        cached = self.cache.get(key) if self.cache is not None else None
        if cached is not None:
            reranked = in_order(hits, [(int(i), float(s)) for i, s in cached["hits"]])
            model = cached["model"]
        else:
            reranked, result = rerank_hits(self.reranker, question, hits)
            model = result.model
            trail.ledger.add("rerank", result.usage)
            if self.cache is not None:
                order = [(h.index, h.score) for h in result.hits]
                self.cache.put(key, {"hits": order, "model": result.model, "usage": result.usage.as_dict()})
        trail.models["rerank"] = {"alias": self.profile.rerank.model, "model": model, "version": self.reranker.version}
        trail.cache["rerank"] = "hit" if cached is not None else ("miss" if self.cache is not None else "off")
        trail.reranked = [h for h in reranked if "rerank" in h.scores]
        return trail.reranked

    def _threshold(self, question: str, hits: list[Hit], settings: Settings, trail: Trail) -> list[Hit]:
        self._gate(settings, trail)
        kind, threshold = trail.threshold_kind, trail.threshold
        if kind == "dense" and any(kind not in h.scores for h in hits):
            self._add_cosines(question, [h for h in hits if kind not in h.scores], trail)
        kept: list[Hit] = []
        for hit in hits:
            value = hit.scores.get(kind)
            passes = value >= threshold if value is not None else threshold <= 0
            (kept if passes else trail.dropped).append(hit)
        return kept

    def _gate(self, settings: Settings, trail: Trail) -> None:
        """Which threshold this ask compares, with which score, and where the value came from (module docstring)."""
        mode = settings.mode or self.profile.retrieval.mode
        trail.score_kind = relevance_kind(mode, bool(trail.reranked))
        if settings.threshold == AUTO:
            trail.threshold, trail.threshold_source = auto_threshold(self.retriever.store.meta())
            trail.threshold_kind = relevance_kind(mode, bool(trail.reranked), auto=True)
        else:
            trail.threshold, trail.threshold_source = float(settings.threshold), settings.threshold_from
            trail.threshold_kind = trail.score_kind

    def _add_cosines(self, question: str, hits: list[Hit], trail: Trail) -> None:
        """Give full-text hits their cosine, for the calibrated gate: embeds the question (fts mode does not)."""
        spent = self.retriever.usage.copy()
        vector = self.retriever.embed_queries([question])[0]
        self.retriever.fill_cosine(hits, vector)
        trail.ledger.add("embed", self.retriever.usage - spent)

    def _generate(self, question: str, hits: list[Hit], settings: Settings, trail: Trail, on_delta: Delta | None) -> AskResult:
        assert self.chat is not None
        chat_cfg = self.profile.chat
        prompt = build_prompt(question, hits, budget_tokens=chat_cfg.context_tokens, where=display_path)
        temperature, max_tokens = chat_cfg.temperature, chat_cfg.max_tokens
        key = cache_key(kind="chat", model=self.chat.ref, messages=prompt.messages, temperature=temperature, max_tokens=max_tokens)
        cached = self.cache.get(key) if self.cache is not None else None
        gate = CitationFilter(len(prompt.sources))
        show = (lambda text: on_delta(text) if text else None) if on_delta is not None else None
        if cached is not None:
            reply = ChatResult(str(cached["text"]), str(cached["model"]), Usage(), cached.get("finish_reason"))
            trail.saved = cached.get("usage") or {}
            if show is not None:
                show(gate.feed(reply.text) + gate.flush())
        else:
            stream = show is not None and settings.stream
            reply = self.chat.complete(
                prompt.messages,
                temperature=temperature,
                max_tokens=max_tokens,
                on_delta=(lambda d: show(gate.feed(d))) if stream and show is not None else None,
            )
            trail.ledger.add("chat", reply.usage)
            if self.cache is not None and reply.text.strip():
                value = {"text": reply.text, "model": reply.model, "finish_reason": reply.finish_reason, "usage": reply.usage.as_dict()}
                self.cache.put(key, value)
            if show is not None:
                show(gate.flush() if stream else gate.feed(reply.text) + gate.flush())
        trail.cache["chat"] = "hit" if cached is not None else ("miss" if self.cache is not None else "off")
        trail.models["chat"] = {"alias": self.chat_alias, "model": reply.model}
        trail.finish_reason = reply.finish_reason
        checked = check(reply.text, len(prompt.sources))
        return trail.result(checked.text.strip(), prompt.sources, cited=checked.cited, invalid=checked.invalid)

    def _extract(self, question: str, hits: list[Hit], trail: Trail, on_delta: Delta | None) -> AskResult:
        headings = [(h.heading.rsplit(" › ", 1)[-1] if h.heading else h.title) for h in hits]
        found = extract(question, [h.text for h in hits], self._encode(trail), headings=headings)
        if on_delta is not None and found.answer:
            on_delta(found.answer)
        sources = [Numbered(i, h, h.text) for i, h in enumerate(hits, start=1)]
        trail.extract = {"sentences_scored": found.scored, "best": round(found.best, 4), "weak": found.weak}
        return trail.result(found.answer, sources, cited=found.cited, weak=found.weak)

    def _encode(self, trail: Trail) -> Callable[[str, list[str]], tuple[Vectors, Vectors]]:
        """Embed the question and sentences with the index's own embedding model, through the query embed service."""
        emb = self.retriever.profile.embedding  # the live generation's own model and prefixes
        service = self.retriever.service

        def encode(question: str, sentences: list[str]) -> tuple[Vectors, Vectors]:
            texts = [emb.query_prefix + question, *(emb.document_prefix + s for s in sentences)]
            spent = service.usage.copy()
            vectors = _normalised(service.embed(texts))
            trail.ledger.add("embed", service.usage - spent)
            return vectors[0], vectors[1:]

        return encode

    def _trace(self, trail: Trail, result: AskResult | None, warn: Warn) -> None:
        try:
            append_trace(self.profile, trail.record(self.profile, result))
        except RagError as err:
            warn(str(err))  # the answer is out already: a trace that cannot be written must not turn it into a failure


class _Warnings:
    """Keeps each warning for the result and passes it on at once."""

    def __init__(self, kept: list[str], passed: Warn | None) -> None:
        self.kept, self.passed = kept, passed

    def __call__(self, message: str) -> None:
        if message not in self.kept:
            self.kept.append(message)
            if self.passed is not None:
                self.passed(message)


def relevance_kind(mode: str, reranked: bool, *, auto: bool = False) -> str:
    """Which score the threshold compares: the cosine under ``auto``, else the score candidates are ranked by."""
    if auto:
        return "dense"
    if reranked:
        return "rerank"
    return "fts" if mode == "fts" else "dense"


def _normalised(vectors: Vectors) -> Vectors:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.clip(norms, 1e-12, None)).astype(np.float32)


def ask(
    profile: Profile, question: str, settings: Settings | None = None, on_delta: Delta | None = None, on_warning: Warn | None = None
) -> AskResult:
    """One question, one :class:`Asker`."""
    settings = settings or Settings.from_profile(profile)
    settings.validate()
    asker = Asker(profile, chat_model=settings.model, rerank=settings.rerank, cache=settings.cache)
    try:
        return asker.ask(question, settings, on_delta, on_warning)
    finally:
        asker.close()


# --------------------------------------------------------------------------- batches

BATCH_OPTIONS = ("id", "question", "top_k", "top_n", "threshold", "mode", "where", "extractive")


def ask_lines(profile: Profile, lines: Iterable[str], settings: Settings, on_warning: Warn | None = None) -> Iterator[dict[str, Any]]:
    """``rag ask -``: one JSON object per non-blank line, the index and models opened once.

    A line is a question, or a JSON object ``{"question": ..., "id"?, "top_k"?, "top_n"?, "threshold"?,
    "mode"?, "where"?, "extractive"?}`` whose options override ``settings`` for that question. Each
    result is ``rag ask --json``'s object (with the line's ``id`` when given); a line that fails is
    ``{"question", "error", "exit_code"}`` and the batch goes on.
    """
    asker = Asker(profile, chat_model=settings.model, rerank=settings.rerank, cache=settings.cache)
    try:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            spec: dict[str, Any] = {"question": line.strip()}
            try:
                spec = _batch_line(line, number)
                result = asker.ask(spec["question"], _batch_settings(spec, number, settings), on_warning=on_warning)
            except RagError as err:
                head = {"id": spec["id"]} if "id" in spec else {}
                yield {**head, "question": spec.get("question", line.strip()), "error": str(err), "exit_code": err.exit_code}
                continue
            yield {**({"id": spec["id"]} if "id" in spec else {}), **result.as_dict(profile)}
    finally:
        asker.close()


def _batch_line(line: str, number: int) -> dict[str, Any]:
    """A line as ``{question, id?, options...}``: a plain line is the question; one starting with { is JSON."""
    text = line.strip()
    if not text.startswith("{"):
        return {"question": text}
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"line {number}: not valid JSON ({exc.msg}); give a question, or a JSON object with a question") from None
    if not isinstance(spec, dict):
        raise UsageError(f"line {number}: give a question, or a JSON object with a question")
    unknown = sorted(set(spec) - set(BATCH_OPTIONS))
    if unknown:
        raise UsageError(f"line {number}: unknown option {', '.join(unknown)}; options are {', '.join(BATCH_OPTIONS)}")
    if not isinstance(spec.get("question"), str):
        raise UsageError(f"line {number}: 'question' must be a string")
    return spec


def _batch_settings(spec: dict[str, Any], number: int, settings: Settings) -> Settings:
    overrides = {k: v for k, v in spec.items() if k not in ("id", "question") and v is not None}
    own = dataclasses.replace(settings, **overrides)
    if "threshold" in overrides:
        own.threshold_from = "batch line"
    _check_types(own, number)
    try:
        own.validate()
    except UsageError as err:
        raise UsageError(f"line {number}: {err}") from None
    return own


def _check_types(settings: Settings, number: int) -> None:
    for name in ("top_k", "top_n"):
        if not isinstance(getattr(settings, name), int) or isinstance(getattr(settings, name), bool):
            raise UsageError(f"line {number}: '{name}' must be a whole number")
    if not isinstance(settings.threshold, int | float | str) or isinstance(settings.threshold, bool):
        raise UsageError(f"line {number}: 'threshold' must be a number or auto")
    if not isinstance(settings.extractive, bool):
        raise UsageError(f"line {number}: 'extractive' must be true or false")
    for name in ("mode", "where"):
        if getattr(settings, name) is not None and not isinstance(getattr(settings, name), str):
            raise UsageError(f"line {number}: '{name}' must be a string")
