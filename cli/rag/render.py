"""Small pure helpers for showing things to people (no rich import here)."""

from __future__ import annotations

import os
from pathlib import Path


def display_path(source: str) -> str:
    """A path relative to the working folder when it is under it; anything else unchanged."""
    try:
        rel = os.path.relpath(source)
    except ValueError:
        return source
    return rel if not rel.startswith("..") and Path(source).is_absolute() else source


def snippet(text: str, width: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
