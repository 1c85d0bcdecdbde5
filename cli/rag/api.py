"""The Python face of rag: one object per index, with the commands' own library calls behind it.

    import rag

    with rag.open_index() as index:               # the project's rag.yaml and .rag, found as the CLI finds them
        index.add(["docs"])                       # rag index docs
        hits = index.search("how do I configure logging?", top_k=5)
        answer = index.ask("how do I configure logging?")
        print(answer.answer, [s.hit.source for s in answer.sources])

Each method is what the command of the same job calls: :func:`rag.indexer.index_paths`,
:func:`rag.search.search`, :class:`rag.ask.Asker`, :func:`rag.evaluate.run` and
:func:`rag.status.status`. Expected failures raise :class:`rag.errors.RagError` subclasses with the
same one-line messages the CLI prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.profile import Profile, load_profile

if TYPE_CHECKING:
    from rag.answer import AskResult
    from rag.ask import Asker
    from rag.documents import Hit
    from rag.eval_report import EvalReport
    from rag.evaluate import EvalEvents
    from rag.events import IndexEvents
    from rag.indexer import IndexReport
    from rag.retrieve import Retriever


def open_index(profile: str | Path | Profile | None = None, *, store: str | Path | None = None) -> Index:
    """The index a profile describes.

    ``profile``: a :class:`Profile`, a path to a YAML profile, or None for the one the CLI would use
    ($RAG_PROFILE, then the nearest rag.yaml). ``store``: the index folder, overriding the profile's.
    """
    prof = profile if isinstance(profile, Profile) else load_profile(None if profile is None else str(profile))
    if store is not None:
        prof.store_override = Path(store)
    return Index(prof)


class Index:
    """One profile's index. Opens lazily: the model loads on the first search or ask, not before."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self._retriever: Retriever | None = None
        self._asker: Asker | None = None

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> Index:
        """Open the published version now (a missing index is an error here, not at the first search)."""
        _ = self.retriever
        return self

    def close(self) -> None:
        if self._asker is not None:
            self._asker.close()
        self._retriever = self._asker = None

    def add(self, paths: list[str | Path], *, rebuild: bool = False, events: IndexEvents | None = None) -> IndexReport:
        """Index files under ``paths`` incrementally (``rag index``); later searches see the result."""
        from rag.indexer import index_paths

        report = index_paths(self.profile, [Path(p) for p in paths], rebuild=rebuild, events=events)
        self.close()  # the next search opens the version this run published
        return report

    def search(self, query: str, *, mode: str | None = None, top_k: int | None = None, where: str | None = None) -> list[Hit]:
        """Hits for one query (``rag query``)."""
        return self.search_many([query], mode=mode, top_k=top_k, where=where)[0]

    def search_many(
        self, queries: list[str], *, mode: str | None = None, top_k: int | None = None, where: str | None = None
    ) -> list[list[Hit]]:
        """Hits for each query, searched together (``rag query -``)."""
        from rag.search import search

        return search(self.profile, queries, mode=mode, top_k=top_k, where=where, retriever=self.retriever)

    def ask(self, question: str, **options: Any) -> AskResult:
        """A cited answer (``rag ask``); ``options`` are :class:`rag.answer.Settings` fields (top_k, threshold, ...)."""
        from rag.answer import Settings

        settings = Settings.from_profile(self.profile, **options)
        settings.validate()
        return self.asker.ask(question, settings)

    def evaluate(self, dataset: str | Path, *, events: EvalEvents | None = None, **options: Any) -> EvalReport:
        """Retrieval (and answer) metrics on a dataset (``rag eval``); ``options`` are :class:`rag.evaluate.EvalRequest` fields."""
        from rag.evaluate import EvalRequest, run

        return run(self.profile, EvalRequest(dataset=Path(dataset), **options), events)

    def status(self) -> dict[str, Any]:
        """What ``rag status --json`` prints."""
        from rag.status import status

        return status(self.profile)

    @property
    def retriever(self) -> Retriever:
        if self._retriever is None:
            from rag.retrieve import Retriever

            self._retriever = Retriever(self.profile)
        return self._retriever

    @property
    def asker(self) -> Asker:
        if self._asker is None:
            from rag.ask import Asker

            self._asker = Asker(self.profile)
        return self._asker
