"""What text a note may hold: what PostgreSQL and Yjs can store."""

from __future__ import annotations

import re

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored (a NUL or a lone surrogate), or None when it can."""
    match = _UNSTORABLE.search(text)
    if match is None:
        return None
    if match.group() == "\x00":
        return "text may not contain NUL characters"
    return "text may not contain lone surrogates (invalid Unicode)"
