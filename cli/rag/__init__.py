"""rag: a command-line RAG toolkit. Index local files, retrieve, rerank, answer with citations."""

__version__ = "0.1.0"
