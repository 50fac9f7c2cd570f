"""A room: one open note, its live document and everyone connected to it.

Pure Python: a connection is anything with an ``id``, a ``name``, ``send(text)`` and
``close(code)``; the websocket route is a small adapter around a socket.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from notes.collab.delta import transform_cursor
from notes.collab.document import EditRejected, LiveDocument, Revision

CLOSE_NOTE_GONE = 4404


class Connection(Protocol):
    id: str
    name: str

    def send(self, text: str) -> None:
        """Queue one JSON text frame; never blocks."""

    def close(self, code: int, reason: str = "") -> None:
        """Close the connection soon; never blocks."""


class TitleRejected(EditRejected):
    code = "bad_title"


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


class Room:
    """One open note. Every change goes through here, so every connection sees it exactly once."""

    def __init__(self, note_id: uuid.UUID, document: LiveDocument, title: str, *, max_title: int,
                 on_change: Callable[[Room], None] | None = None):
        self.note_id = note_id
        self.document = document
        self.title = title
        self.max_title = max_title
        self.connections: dict[str, Connection] = {}
        self.cursors: dict[str, dict | None] = {}
        self.holders = 0  # REST requests and sockets keeping the room loaded
        self.on_change = on_change  # the hub wakes the room's save task with it
        self.saved_rev = document.rev
        self.saved_title = title
        self.first_unsaved: float | None = None  # monotonic time of the oldest unsaved change
        self.last_change: float | None = None
        self.deleted = False

    # --- state ---------------------------------------------------------------------------------

    @property
    def rev(self) -> int:
        return self.document.rev

    @property
    def content(self) -> str:
        return self.document.text

    @property
    def dirty(self) -> bool:
        return self.document.rev != self.saved_rev or self.title != self.saved_title

    @property
    def idle(self) -> bool:
        return self.holders == 0 and not self.connections

    def mark_saved(self, rev: int, title: str, snapshot_time: float) -> None:
        """Revision ``rev`` (taken at ``snapshot_time``) is stored; later changes are not."""
        self.saved_rev = rev
        self.saved_title = title
        # Changes made while the save ran are at most as old as its snapshot.
        self.first_unsaved = snapshot_time if self.dirty else None
        self.broadcast({"type": "saved", "rev": rev})

    def _changed(self) -> None:
        now = time.monotonic()
        self.last_change = now
        if self.first_unsaved is None:
            self.first_unsaved = now
        if self.on_change is not None:
            self.on_change(self)

    # --- membership ----------------------------------------------------------------------------

    def join(self, connection: Connection, since: int | None = None) -> None:
        """Send ``hello`` to a new connection and tell the others it joined."""
        hello: dict[str, Any] = {
            "type": "hello",
            "client": connection.id,
            "rev": self.rev,
            "content": self.content,
            "title": self.title,
            "peers": [
                {"client": cid, "name": peer.name, "cursor": self.cursors.get(cid)}
                for cid, peer in self.connections.items()
            ],
        }
        missed = self._missed_since(since)
        if missed is not None:
            hello["since"] = since
            hello["missed"] = missed
        connection.send(encode(hello))
        self.broadcast({"type": "join", "client": connection.id, "name": connection.name})
        self.connections[connection.id] = connection
        self.cursors[connection.id] = None

    def _missed_since(self, since: int | None) -> list[dict] | None:
        if since is None:
            return None
        try:
            revisions = self.document.revisions_since(since)
        except EditRejected:
            return None
        if revisions is None:
            return None
        return [
            {"rev": r.rev, "delta": r.delta, "client": r.client, "ref": r.ref} for r in revisions
        ]

    def leave(self, connection: Connection) -> None:
        if self.connections.pop(connection.id, None) is None:
            return
        self.cursors.pop(connection.id, None)
        self.broadcast({"type": "leave", "client": connection.id})

    def broadcast(self, message: dict[str, Any], *, exclude: str | None = None) -> None:
        if not self.connections:
            return
        text = encode(message)
        for cid, connection in list(self.connections.items()):
            if cid != exclude:
                connection.send(text)

    def close_all(self, code: int, reason: str = "") -> None:
        for connection in list(self.connections.values()):
            connection.close(code, reason)

    # --- changes -------------------------------------------------------------------------------

    def apply_edit(
        self, base_rev: int, delta: object, *, origin: Connection | None = None, ref: Any = None
    ) -> Revision:
        """Transform and apply one edit; ``ack`` the origin and send ``edit`` to everyone else."""
        revision, duplicate = self.document.apply_edit(
            base_rev, delta, client=origin.id if origin else None, ref=ref
        )
        if duplicate:
            if origin is not None:
                origin.send(encode({"type": "ack", "rev": revision.rev, "ref": ref}))
            return revision
        self._changed()
        self._move_cursors(revision)
        if origin is not None:
            origin.send(encode({"type": "ack", "rev": revision.rev, "ref": ref}))
        self.broadcast(
            {"type": "edit", "rev": revision.rev, "delta": revision.delta,
             "client": revision.client},
            exclude=origin.id if origin else None,
        )
        return revision

    def replace_content(self, content: str) -> Revision | None:
        """A REST write: apply the smallest diff to the live text; concurrent typing survives."""
        revision = self.document.replace_text(content)
        if revision is not None:
            self._changed()
            self._move_cursors(revision)
            self.broadcast(
                {"type": "edit", "rev": revision.rev, "delta": revision.delta, "client": None}
            )
        return revision

    def set_title(self, title: str, *, origin: Connection | None = None) -> None:
        if len(title) > self.max_title:
            raise TitleRejected(f"the title is longer than {self.max_title} characters")
        if title == self.title:
            return
        self.title = title
        self._changed()
        self.broadcast(
            {"type": "title", "title": title, "client": origin.id if origin else None},
            exclude=origin.id if origin else None,
        )

    def set_presence(self, connection: Connection, base_rev: int, cursor: object) -> None:
        moved = None if cursor is None else self.document.transform_cursor(base_rev, cursor)
        self.cursors[connection.id] = moved
        self.broadcast(
            {"type": "presence", "client": connection.id, "name": connection.name,
             "cursor": moved},
            exclude=connection.id,
        )

    def _move_cursors(self, revision: Revision) -> None:
        for cid, cursor in self.cursors.items():
            if cursor is not None:
                self.cursors[cid] = transform_cursor(cursor, revision.delta)
