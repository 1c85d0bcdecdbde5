"""Token counts and cut points for the chunker, in the tokenizer ``chunking.encoding`` names.

- ``cl100k_base`` (tiktoken, the default): chunks sized for chat models' context.
- ``minilm-wordpiece``: the embedded MiniLM's own WordPiece tokenizer. The model reads at most 256 of those
  tokens ([CLS] and [SEP] included) and drops the rest, so chunks of 256 cl100k tokens lose their tail to the
  dense retriever: on SciFact 18 % of chunks are longer than the model reads. Chunks measured in the model's
  tokens, with room kept for the title and heading path the chunk is embedded with, are read whole.

Both give the same two things: a count and, for cutting an over-long run of text, the character offset where
each token starts.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Protocol

from rag.tokens import encoding

WORDPIECE = "minilm-wordpiece"
TOKENIZER_PATH = Path(__file__).resolve().parent / "models" / "minilm-tokenizer.json"


class TokenCounter(Protocol):
    def count(self, text: str) -> int: ...
    def starts(self, text: str) -> list[int]:
        """Character offset of each token's start, in order."""
        ...


class _Tiktoken:
    def __init__(self, name: str) -> None:
        self.enc = encoding(name)

    def count(self, text: str) -> int:
        return len(self.enc.encode(text, disallowed_special=()))

    def starts(self, text: str) -> list[int]:
        _, offsets = self.enc.decode_with_offsets(self.enc.encode(text, disallowed_special=()))
        return list(offsets)


class _WordPiece:
    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(path))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def starts(self, text: str) -> list[int]:
        return [start for start, _ in self.tokenizer.encode(text, add_special_tokens=False).offsets]


@lru_cache(maxsize=4)
def counter(name: str) -> TokenCounter:
    return _WordPiece(TOKENIZER_PATH) if name == WORDPIECE else _Tiktoken(name)


def is_model_tokenizer(name: str) -> bool:
    """Chunks measured in an embedding model's own tokens keep room for the context they are embedded with."""
    return name == WORDPIECE
