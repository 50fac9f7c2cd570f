"""The JSON client protocol (docs/protocol.md): one incoming frame in, changes and replies out."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from notes.collab.document import BadMessage, EditRejected, StaleRevision
from notes.collab.room import Connection, Room, encode


def _error(code: str, message: str, ref: Any = None) -> str:
    return encode({"type": "error", "code": code, "message": message, "ref": ref})


def _revision_field(message: dict) -> int:
    rev = message.get("rev")
    if not isinstance(rev, int) or isinstance(rev, bool) or rev < 0:
        raise BadMessage("`rev` must be a non-negative integer")
    return rev


def handle_frame(room: Room, connection: Connection, frame: str | bytes) -> None:
    """Apply one client frame to the room. Rejections answer ``error`` and change nothing."""
    try:
        message = json.loads(frame)
    except (ValueError, UnicodeDecodeError):
        connection.send(_error("bad_json", "the frame is not valid JSON"))
        return
    if not isinstance(message, dict):
        connection.send(_error("bad_json", "the frame must be a JSON object"))
        return
    ref = message.get("ref")
    kind = message.get("type")
    try:
        if kind == "edit":
            if "delta" not in message:
                raise BadMessage("`delta` is missing")
            room.apply_edit(_revision_field(message), message["delta"], origin=connection,
                            ref=ref)
        elif kind == "presence":
            # An old cursor is not worth a resync; the next one will do.
            with contextlib.suppress(StaleRevision):
                room.set_presence(connection, _revision_field(message), message.get("cursor"))
        elif kind == "title":
            title = message.get("title")
            if not isinstance(title, str):
                raise BadMessage("`title` must be a string")
            room.set_title(title, origin=connection)
        else:
            raise BadMessage(f"unknown message type {kind!r}")
    except StaleRevision:
        connection.send(
            encode({"type": "resync", "rev": room.rev, "content": room.content, "ref": ref})
        )
    except EditRejected as rejected:
        connection.send(_error(rejected.code, rejected.message, ref))
