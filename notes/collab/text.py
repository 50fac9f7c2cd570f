"""What text a note may hold (what PostgreSQL and Yjs can store), checked the same on every path."""

from __future__ import annotations

import re

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # (no UTF-8: cannot even be sent back)

REPLACEMENT = "\ufffd"


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored (a NUL or a lone surrogate), or None when it can."""
    match = _UNSTORABLE.search(text)
    if match is None:
        return None
    if match.group() == "\x00":
        return "text may not contain NUL characters"
    return "text may not contain lone surrogates (invalid Unicode)"


def field_problem(value: str, limit: int) -> tuple[str, str] | None:
    """The one check of a title or a whole content: ``(kind, message)`` or None when it is fine.

    ``kind`` is ``too_long`` (more than ``limit`` code points) or ``invalid_text``. REST, the JSON
    socket and the Yjs socket all call this, so a value one path refuses no other path accepts.
    """
    if len(value) > limit:
        return "too_long", f"at most {limit} characters"
    problem = text_problem(value)
    if problem:
        return "invalid_text", problem
    return None


def storable(text: str, limit: int | None = None) -> str:
    """``text`` made storable: unstorable characters replaced by U+FFFD, cut to ``limit``."""
    text = _UNSTORABLE.sub(REPLACEMENT, text)
    return text if limit is None else text[:limit]
