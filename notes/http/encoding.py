"""The JSON every response carries (``Sanic(dumps=dumps)``): UTF-8 text, not ``\\uXXXX`` escapes.

orjson writes UTF-8 directly and is much faster than Sanic's default (ujson, which escapes every
non-ASCII character: two to three times the bytes of a non-Latin note, and ~40x the time of
orjson for a 65,000-character one). Keys that are not strings (the OpenAPI document's status
codes) become strings, as they did. What orjson refuses (a lone surrogate in a string, an
integer beyond 64 bits) is written by the standard library with escapes instead: still valid
JSON, never a failed response.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(body: Any, **kwargs: Any) -> bytes | str:
    if kwargs:  # (a caller's own json.dumps options, e.g. indent)
        return json.dumps(body, **kwargs)
    try:
        return orjson.dumps(body, option=_OPTIONS)
    except TypeError:  # (orjson.JSONEncodeError)
        return json.dumps(body, separators=(",", ":"))
