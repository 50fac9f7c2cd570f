"""A room: one open note, its live document and everyone connected to it.

Pure Python, protocol-neutral: the room applies changes and emits typed events
(``notes.collab.events``). A member is anything with an ``id``, a ``name``, a ``codec`` (its
protocol's encoder, shared by every member speaking that protocol), ``send(frame)`` and
``close(code)``; each event is encoded once per codec, not once per member. The websocket routes
are small adapters around a socket.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from notes.collab.awareness import Awareness
from notes.collab.delta import Delta, transform_cursor
from notes.collab.document import BadTitle, LiveDocument, Revision
from notes.collab.events import (
    CHANGES,
    AwarenessChanged,
    Deleted,
    Event,
    PeerJoined,
    PeerLeft,
    PresenceChanged,
    RevisionApplied,
    Saved,
    StateChanged,
    TitleChanged,
)
from notes.collab.text import field_problem, storable

CLOSE_NOTE_GONE = 4404

Frame = str | bytes


class Codec(Protocol):
    """One protocol's encoding of room events (one instance serves all its members)."""

    def greet(self, room: Room, member: Member, since: int | None) -> Iterable[Frame]:
        """The frames a member gets first, before any event."""

    def encode(self, event: Event) -> Frame | None:
        """The frame for every member but the event's origin (None: not for this protocol)."""

    def encode_own(self, event: Event) -> Frame | None:
        """The frame for the member that caused the event (an ``ack``, say)."""


class Member(Protocol):
    id: str
    name: str
    codec: Codec

    def send(self, frame: Frame) -> None:
        """Queue one frame; never blocks."""

    def close(self, code: int, reason: str = "") -> None:
        """Close the connection soon; never blocks."""


Observer = Callable[["Room", Event], None]


class Room:
    """One open note. Every change goes through here, so every member sees it exactly once."""

    def __init__(self, note_id: uuid.UUID, document: LiveDocument, *, max_title: int):
        self.note_id = note_id
        self.document = document
        self.max_title = max_title
        self.members: dict[str, Member] = {}
        self.cursors: dict[str, dict | None] = {}
        self.awareness = Awareness()
        self.observers: list[Observer] = []
        self.holders = 0  # REST requests and sockets keeping the room loaded
        self.saved_changes = document.changes
        self.saved_title = document.title
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
    def title(self) -> str:
        return self.document.title

    @property
    def dirty(self) -> bool:
        return self.document.changes != self.saved_changes

    @property
    def idle(self) -> bool:
        return self.holders == 0 and not self.members

    def mark_saved(self, changes: int, rev: int, title: str, snapshot_time: float) -> None:
        """The state after ``changes`` changes (revision ``rev``, taken at ``snapshot_time``) is
        stored; later changes are not."""
        self.saved_changes = changes
        self.saved_title = title
        # Changes made while the save ran are at most as old as its snapshot.
        self.first_unsaved = snapshot_time if self.dirty else None
        self.emit(Saved(rev))

    # --- events --------------------------------------------------------------------------------

    def subscribe(self, observer: Observer) -> None:
        self.observers.append(observer)

    def emit(self, event: Event, origin: Member | None = None) -> None:
        """Send ``event`` to every member (encoded once per codec) and every observer."""
        if isinstance(event, CHANGES):
            now = time.monotonic()
            self.last_change = now
            if self.first_unsaved is None:
                self.first_unsaved = now
        frames: dict[Codec, Frame | None] = {}
        for member in list(self.members.values()):
            if member is origin:
                continue
            codec = member.codec
            if codec in frames:
                frame = frames[codec]
            else:
                frame = frames[codec] = codec.encode(event)
            if frame is not None:
                member.send(frame)
        if origin is not None:
            self._tell_origin(origin, event)
        for observer in self.observers:
            observer(self, event)

    @staticmethod
    def _tell_origin(origin: Member, event: Event) -> None:
        own = origin.codec.encode_own(event)
        if own is not None:
            origin.send(own)

    def close_all(self, code: int, reason: str = "") -> None:
        for member in list(self.members.values()):
            member.close(code, reason)

    # --- membership ----------------------------------------------------------------------------

    def join(self, member: Member, since: int | None = None) -> None:
        """Greet a new member in its protocol and tell the others it joined."""
        for frame in member.codec.greet(self, member, since):
            member.send(frame)
        self.emit(PeerJoined(member.id, member.name))
        self.members[member.id] = member
        self.cursors[member.id] = None

    def leave(self, member: Member) -> None:
        if self.members.pop(member.id, None) is None:
            return
        self.cursors.pop(member.id, None)
        removal = self.awareness.remove_owner(member.id)
        if removal is not None:
            self.emit(AwarenessChanged(removal, member.id))
        self.emit(PeerLeft(member.id))

    def peers(self, exclude: str | None = None) -> list[dict[str, Any]]:
        return [{"client": cid, "name": peer.name, "cursor": self.cursors.get(cid)}
                for cid, peer in self.members.items() if cid != exclude]

    # --- changes -------------------------------------------------------------------------------

    def apply_edit(
        self, base_rev: int, delta: object, *, origin: Member | None = None, ref: Any = None
    ) -> Revision:
        """Transform and apply one edit (JSON protocol, REST); everyone hears of it once."""
        revision, duplicate = self.document.apply_edit(
            base_rev, delta, client=origin.id if origin else None, ref=ref
        )
        event = self._event_of(revision)
        if duplicate:  # a resent edit: only its origin hears of it (its ack) again
            if origin is not None:
                self._tell_origin(origin, event)
            return revision
        self._revision_applied(event, origin)
        return revision

    def replace_content(self, content: str) -> Revision | None:
        """A REST write: apply the smallest diff to the live text; concurrent typing survives."""
        revision = self.document.replace_text(content)
        if revision is not None:
            self._revision_applied(self._event_of(revision), None)
        return revision

    def set_title(self, title: str, *, origin: Member | None = None) -> None:
        problem = field_problem(title, self.max_title)
        if problem:
            raise BadTitle(f"the title: {problem[1]}")
        if self.document.set_title(title):
            self.emit(TitleChanged(title, self.document.last_update,
                                   origin.id if origin else None), origin)

    def apply_update(self, update: bytes, *, origin: Member | None = None) -> None:
        """A Yjs update: applied to the document; its content change becomes a revision.

        The update goes on to the other Yjs members as it came. What it did to the content
        reaches JSON members as an ``edit`` from the origin. A title the update made too long
        is cut by the server as a change of its own, which reaches every member, the origin too.
        """
        origin_id = origin.id if origin else None
        applied = self.document.apply_update(update, client=origin_id)
        if not applied.changed:
            return
        forwarded = False  # an event carried the update to the Yjs members
        if applied.revision is not None:
            self._revision_applied(self._event_of(applied.revision, update), origin)
            forwarded = True
        title = self.document.title
        repaired = storable(title, self.max_title) if applied.title_changed else title
        if applied.title_changed and repaired == title:
            self.emit(TitleChanged(title, None if forwarded else update, origin_id), origin)
            forwarded = True
        if not forwarded:
            self.emit(StateChanged(update, origin_id), origin)
        if repaired != title:
            self.set_title(repaired)  # the server's own change: every member hears of it

    def _event_of(self, revision: Revision, update: bytes | None = None) -> RevisionApplied:
        """The event of a revision; its Yjs update is the document's last unless given."""
        return RevisionApplied(revision.rev, revision.delta, update or self.document.last_update,
                               revision.client, revision.ref)

    def _revision_applied(self, event: RevisionApplied, origin: Member | None) -> None:
        self._move_cursors(event.delta)
        self.emit(event, origin)

    # --- presence ------------------------------------------------------------------------------

    def set_presence(self, member: Member, base_rev: int, cursor: object) -> None:
        moved = None if cursor is None else self.document.transform_cursor(base_rev, cursor)
        self.cursors[member.id] = moved
        self.emit(PresenceChanged(member.id, member.name, moved), member)

    def apply_awareness(self, member: Member, update: bytes) -> None:
        """A Yjs awareness update from ``member``: relayed to the Yjs members; a new
        ``user.name`` renames the member for JSON clients."""
        changed = self.awareness.apply(update, member.id)
        self.expire_awareness()
        if changed is None:
            return
        # Echoed to the sender too: y-websocket clients count it as a sign of life.
        self.emit(AwarenessChanged(changed, member.id))
        name = self.awareness.name_of(member.id)
        if name and name != member.name:
            member.name = name
            self.emit(PresenceChanged(member.id, name, self.cursors.get(member.id)), member)

    def expire_awareness(self) -> None:
        """Drop the awareness states nobody renewed in time, and say so to the Yjs members."""
        expired = self.awareness.expire()
        if expired is not None:
            self.emit(AwarenessChanged(expired, None))

    def _move_cursors(self, delta: Delta) -> None:
        for cid, cursor in self.cursors.items():
            if cursor is not None:
                self.cursors[cid] = transform_cursor(cursor, delta)

    def recover_from_refused_save(self) -> str | None:
        """The database refused the note's state: change what can be changed without losing an
        edit, so that the next save can succeed. Returns what was done (None: nothing to do).

        Text that breaks the rules is made storable (every path checks them, so this is a last
        line of defence); otherwise a title changed since the last save is put back.
        """
        content = storable(self.content)
        title = storable(self.title, self.max_title)
        if content != self.content or title != self.title:
            if content != self.content:
                self.replace_content(content)
            self.set_title(title)
            return "replaced the characters it cannot store"
        if self.title != self.saved_title:
            self.set_title(self.saved_title)
            return "put the last stored title back"
        return None

    # --- deletion ------------------------------------------------------------------------------

    def mark_deleted(self) -> None:
        self.deleted = True
        self.emit(Deleted())
        self.close_all(CLOSE_NOTE_GONE, "note deleted")
