"""Logs: one line per event, text or JSON, each with its request's id; no secrets or note text."""

from __future__ import annotations

import json
import re
import uuid

import httpx
import pytest
from conftest import ServerProcess, wait_until
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from notes.logs import request_id_of
from notes.store.database import make_engine


def _lines_with(log: str, needle: str) -> list[str]:
    return [line for line in log.splitlines() if needle in line]


def test_each_event_is_logged_once_with_its_request_id(database_url: str):
    server = ServerProcess(database_url, env={"NOTES_ACCESS_LOG": "true"},
                           log_name="logs-text").start()
    try:
        response = httpx.get(server.url + "/health?probe=1",
                             headers={"X-Request-ID": "client-id-42"})
        assert response.headers["x-request-id"] == "client-id-42"
        made = httpx.get(server.url + "/health?probe=2").headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", made)
        # A request id that is not a plain token (it would end up in every log line) is replaced.
        odd = httpx.get(server.url + "/health?probe=3",
                        headers={"X-Request-ID": "a b\"c" + "x" * 200}).headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", odd)
        wait_until(lambda: "probe=3" in server.log(), 10, message="the access log")
        log = server.log()
        # Sanic's handler and the root logger used to print each line twice.
        assert len(_lines_with(log, "Starting worker")) == 1, log
        [line] = _lines_with(log, "probe=1")
        assert "[client-id-42]" in line and " 200 " in line
        [line] = _lines_with(log, "probe=2")
        assert f"[{made}]" in line
    finally:
        server.stop()


def test_json_logs_are_one_object_per_line(database_url: str):
    server = ServerProcess(database_url, env={"NOTES_ACCESS_LOG": "true",
                                              "NOTES_LOG_FORMAT": "json"},
                           log_name="logs-json").start()
    try:
        note = httpx.post(server.url + "/notes", json={"title": "t", "content": "secret text"},
                          headers={"X-Request-ID": "json-req-1"})
        assert note.status_code == 201
        wait_until(lambda: "json-req-1" in server.log(), 10, message="the access log")
    finally:
        server.stop()
    entries = []
    for line in server.log().splitlines():
        if line.startswith("{"):
            entries.append(json.loads(line))
        else:  # only the CLI's banner is plain text (printed, not logged)
            assert line.startswith(" ") or line.startswith("notes listening"), line
    assert {"time", "level", "logger", "message"} <= set(entries[0])
    [access] = [entry for entry in entries if entry.get("request_id") == "json-req-1"]
    assert access["logger"] == "sanic.access"
    assert access["status"] == 201 and access["request"].startswith("POST ")
    assert any(entry["message"].startswith("Starting worker") for entry in entries)
    assert "secret text" not in server.log()


def test_request_ids():
    assert request_id_of("abc-123_x.y:z") == "abc-123_x.y:z"
    for bad in (None, "", "a b", "x" * 129, "line\nbreak", "é"):
        assert re.fullmatch(r"[0-9a-f]{32}", request_id_of(bad))


def test_invalid_log_format_is_refused(database_url: str):
    server = ServerProcess(database_url, env={"NOTES_LOG_FORMAT": "xml"}, log_name="logs-bad")
    with pytest.raises(AssertionError, match="exited early"):
        server.start(timeout=20)
    assert "NOTES_LOG_FORMAT='xml' is not one of text, json" in server.log()


async def test_failed_statements_do_not_carry_their_parameters(database_url: str):
    """A failed save's error (and so its log line) once held the note's whole text."""
    engine = make_engine(database_url, pool_size=1)
    secret = f"note text {uuid.uuid4()}"
    try:
        async with engine.connect() as connection:
            with pytest.raises(DBAPIError) as failure:
                await connection.execute(text("select cast(:x as text), 1 / 0"), {"x": secret})
        assert "division by zero" in str(failure.value)
        assert secret not in str(failure.value)
    finally:
        await engine.dispose()
