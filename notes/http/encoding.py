"""The JSON every response carries (``Sanic(dumps=dumps)``): UTF-8 text, not ``\\uXXXX`` escapes.

orjson writes UTF-8 directly and is much faster than Sanic's default (ujson, which escapes every
non-ASCII character: two to three times the bytes of a non-Latin note, and ~40x the time of
orjson for a 65,000-character one). Keys that are not strings (the OpenAPI document's status
codes) become strings, as they did. Timestamps are written as pydantic writes them (ISO 8601,
``Z`` for UTC), so that a route may hand over a ``datetime`` instead of a model's dump. What
orjson refuses (a lone surrogate in a string, an integer beyond 64 bits) is written by the
standard library with escapes instead: still valid JSON, never a failed response.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z


def json_time(moment: datetime) -> str:
    """A timestamp as orjson (``OPT_UTC_Z``) and pydantic write it: ISO 8601, ``Z`` for UTC."""
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return json_time(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def dumps(body: Any, **kwargs: Any) -> bytes | str:
    if kwargs:  # (a caller's own json.dumps options, e.g. indent)
        return json.dumps(body, default=_default, **kwargs)
    try:
        return orjson.dumps(body, option=_OPTIONS)
    except TypeError:  # (orjson.JSONEncodeError)
        return json.dumps(body, separators=(",", ":"), default=_default)
