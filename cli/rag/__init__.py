"""rag: a command-line RAG toolkit. Index local files, retrieve, rerank, answer with citations.

The Python API is small, and it is what the commands call (see :mod:`rag.api`)::

    import rag

    with rag.open_index() as index:
        index.add(["docs"])
        print(index.ask("how do I configure logging?").answer)

Importing ``rag`` loads nothing heavy: each name below is imported on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "open_index": "rag.api",
    "Index": "rag.api",
    "load_profile": "rag.profile",
    "Profile": "rag.profile",
    "RagError": "rag.errors",
}
__all__ = ["Index", "Profile", "RagError", "__version__", "load_profile", "open_index"]

if TYPE_CHECKING:
    from rag.api import Index, open_index
    from rag.errors import RagError
    from rag.profile import Profile, load_profile


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rag' has no attribute {name!r}")
    return getattr(import_module(module), name)
