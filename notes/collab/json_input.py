"""Parsing JSON that comes from clients: any input gives a value or ``BadJson``, never a crash.

``json.loads`` raises ``RecursionError`` on deeply nested input (a few thousand ``[``), and a value
that parsed can still be too deep to encode again (``json.dumps`` recurses too). Every path that
takes JSON from a client (REST bodies, JSON frames, Yjs awareness states) parses it here, and a
value the server keeps or echoes (``ref``, awareness states) is checked with ``check_depth``.
"""

from __future__ import annotations

import json

from notes.collab.text import LONE_SURROGATE

MAX_DEPTH = 32


class BadJson(ValueError):
    pass


def parse_json(data: str | bytes) -> object:
    try:
        return json.loads(data)
    except RecursionError:
        raise BadJson("not valid JSON: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise BadJson(f"not valid JSON: {error}") from None


def check_depth(value: object, limit: int = MAX_DEPTH, *, text: bool = False) -> None:
    """Refuse values nested deeper than ``limit`` arrays/objects (iterative: no recursion).

    With ``text``, also strings (and keys) holding a lone surrogate: JSON's ``"\\ud800"``
    parses to one, and a value echoed with it could not be sent (it has no UTF-8)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if text and isinstance(item, str):
            if LONE_SURROGATE.search(item):
                raise BadJson("the JSON holds a lone surrogate (not valid Unicode)")
            continue
        if isinstance(item, dict):
            if text:
                stack.extend((key, depth) for key in item)
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            raise BadJson(f"the JSON is nested more than {limit} levels deep")
        stack.extend((child, depth + 1) for child in children)
