"""Text at the ground floor: decoding bytes and making strings safe to encode. Pure, no imports of rag.

Every module that takes text from outside (files, argv, stdin, JSON, HTTP
bodies) passes it through here, so a byte that is not UTF-8 never reaches a
tokenizer or an HTTP client as a lone surrogate.
"""

from __future__ import annotations

import re


def decode(data: bytes) -> tuple[str, str]:
    """Text and the encoding that worked. Never fails: latin-1 maps every byte."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace"), "utf-8-sig"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace"), "utf-16"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """``text`` safe to encode as UTF-8.

    Bytes that were not valid UTF-8 reach us as lone surrogates: Python decodes
    argv and stdin with ``surrogateescape``, JSON may escape them. They are
    decoded again like a file's bytes (UTF-8, else cp1252); any other lone
    surrogate becomes U+FFFD. Tokenizers and HTTP clients reject them otherwise.
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return decode(text.encode("utf-8", "surrogateescape"))[0]
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
