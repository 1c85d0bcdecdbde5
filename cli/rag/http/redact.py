"""Scrub secrets from text before it is logged, raised or printed."""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"
_MIN_SECRET = 4  # shorter values would mask ordinary words
_TOKEN = r"[A-Za-z0-9._~+/=-]{8,}"
_BEARER = re.compile(rf"(?i)\b(bearer)(\s+){_TOKEN}")
_ASSIGNED = re.compile(rf"(?i)\b(api[-_]?key|access[-_]?token|token)(\s*[:=]\s*[\"']?){_TOKEN}")
_KEY_LIKE = re.compile(r"\b(?:sk|pk|rk|jina)[-_][A-Za-z0-9_-]{16,}")
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")  # https://user:password@host


class Redactor:
    """Masks configured secret values and anything shaped like a bearer token or API key."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # longest first, so a secret that contains another is masked whole
        self._secrets = sorted({s for s in secrets if s and len(s) >= _MIN_SECRET}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        for pattern in (_BEARER, _ASSIGNED):
            text = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
        text = _USERINFO.sub(MASK + "@", text)
        return _KEY_LIKE.sub(MASK, text)
