"""Logging: one line per event, as text or as JSON (``NOTES_LOG_FORMAT``), each with the id of the
request it belongs to (``X-Request-ID``, taken from the request or made here, and echoed back).

One handler, on the root logger, writes every line: Sanic's own handlers are not installed
(``Sanic(configure_logging=False)``), so a line is no longer printed by both. A failure to reach
the database is one line (its type and reason), not a traceback per retry, and never the
statement's parameters (they hold the notes' text; the engine hides them too).
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from collections.abc import Awaitable
from contextvars import ContextVar
from typing import Any

import orjson

from notes.store.database import database_unavailable

REQUEST_ID: ContextVar[str | None] = ContextVar("notes_request_id", default=None)
REQUEST_ID_HEADER = "X-Request-ID"
# What a client's own request id may be (else one is made): it ends up in every log line.
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
ACCESS_LOGGER = "sanic.access"
FORMATS = ("text", "json")


def request_id_of(header: str | None) -> str:
    """The client's ``X-Request-ID`` when it is a plain token of at most 128 characters, or a
    new one."""
    if header and _CLIENT_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


async def without_request(coroutine: Awaitable[Any]) -> Any:
    """Run a background task started during a request without that request's id: a note's save
    task outlives the request that opened the note."""
    REQUEST_ID.set(None)
    return await coroutine


class RequestIds(logging.Filter):
    """Put the current request's id on every record (``record.request_id``, None outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class BriefOutages(logging.Filter):
    """A lost or refused database connection is one line: its reason, without the traceback
    (the retry loops log one per attempt while the database is down)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and database_unavailable(error):
            record.msg = f"{record.getMessage()}: {_reason(error)}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def _reason(error: BaseException) -> str:
    """The innermost cause's type and first line, never a statement or its parameters."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}"[:300] if text else type(error).__name__


def _access_line(record: logging.LogRecord) -> str:
    """Sanic's access record (its fields are extras) as one line."""
    duration = str(getattr(record, "duration", "")).strip()
    return (f"{getattr(record, 'host', '-')} \"{getattr(record, 'request', '-')}\" "
            f"{getattr(record, 'status', '-')} {getattr(record, 'byte', '-')} {duration}").rstrip()


class TextFormatter(logging.Formatter):
    """``2026-12-08 03:37:44,949 WARNING notes.http.problems [<request id>]: message``"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(request)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        if record.name == ACCESS_LOGGER and not record.msg:
            record.msg, record.args = _access_line(record), None
        saved = record.__dict__.get("request")
        record.request = f" [{request_id}]" if request_id else ""
        try:
            return super().format(record)
        finally:
            if saved is None:
                del record.request
            else:
                record.request = saved


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, and for the access
    log its fields; an exception's traceback as ``exception``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                    + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
        }
        if record.name == ACCESS_LOGGER and not record.msg:
            entry["message"] = _access_line(record)
            for field in ("host", "request", "status", "byte"):
                if hasattr(record, field):
                    entry["bytes" if field == "byte" else field] = getattr(record, field)
        else:
            entry["message"] = record.getMessage()
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(log_format: str = "text") -> None:
    """Install the one handler (idempotent: a worker process and the CLI both call it)."""
    if log_format not in FORMATS:
        raise ValueError(f"log format {log_format!r} is not one of {', '.join(FORMATS)}")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "notes_handler", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.notes_handler = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RequestIds())
    handler.addFilter(BriefOutages())
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("notes").setLevel(logging.INFO)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # Sanic's start/stop lines and, when NOTES_ACCESS_LOG is on, its access log.
    logging.getLogger("sanic.server").setLevel(logging.INFO)
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO)


__all__ = ["REQUEST_ID", "REQUEST_ID_HEADER", "BriefOutages", "JsonFormatter", "RequestIds",
           "TextFormatter", "configure_logging", "request_id_of", "without_request"]
