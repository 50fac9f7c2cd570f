"""The JSON client protocol (docs/protocol.md): one incoming frame in, changes and replies out."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from notes.collab.document import EditRejected, StaleRevision
from notes.collab.room import Connection, Room, TitleRejected, encode


class BadMessage(Exception):
    """A frame that is JSON but not a message of the protocol."""


def _error(code: str, message: str, ref: Any = None) -> str:
    return encode({"type": "error", "code": code, "message": message, "ref": ref})


def _revision_field(message: dict) -> int:
    rev = message.get("rev")
    if not isinstance(rev, int) or isinstance(rev, bool) or rev < 0:
        raise BadMessage("`rev` must be a non-negative integer")
    return rev


def handle_frame(room: Room, connection: Connection, frame: str | bytes) -> bool:
    """Apply one client frame to the room. Rejections answer ``error`` and change nothing.

    Returns True when the frame changed the document or the title (the saver wants to know).
    """
    try:
        message = json.loads(frame)
    except (ValueError, UnicodeDecodeError):
        connection.send(_error("bad_json", "the frame is not valid JSON"))
        return False
    if not isinstance(message, dict):
        connection.send(_error("bad_json", "the frame must be a JSON object"))
        return False
    ref = message.get("ref")
    kind = message.get("type")
    try:
        if kind == "edit":
            if "delta" not in message:
                raise BadMessage("`delta` is missing")
            room.apply_edit(_revision_field(message), message["delta"], origin=connection,
                            ref=ref)
            return True
        if kind == "presence":
            # An old cursor is not worth a resync; the next one will do.
            with contextlib.suppress(StaleRevision):
                room.set_presence(connection, _revision_field(message), message.get("cursor"))
            return False
        if kind == "title":
            title = message.get("title")
            if not isinstance(title, str):
                raise BadMessage("`title` must be a string")
            before = room.title
            room.set_title(title, origin=connection)
            return room.title != before
        raise BadMessage(f"unknown message type {kind!r}")
    except StaleRevision:
        connection.send(
            encode({"type": "resync", "rev": room.rev, "content": room.content, "ref": ref})
        )
    except BadMessage as bad:
        connection.send(_error("bad_message", str(bad), ref))
    except TitleRejected as rejected:
        connection.send(_error(rejected.code, str(rejected), ref))
    except EditRejected as rejected:
        code = getattr(rejected, "code", None) or "bad_message"
        connection.send(_error(code, getattr(rejected, "message", None) or str(rejected), ref))
    return False
