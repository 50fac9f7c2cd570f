"""A room: one open note, its live document and everyone connected to it.

Pure Python, protocol-neutral: the room applies changes and emits typed events
(``notes.collab.events``). A member is anything with an ``id``, a ``name``, a ``codec`` (its
protocol's encoder, shared by every member speaking that protocol), ``send(frame)`` and
``close(code)``; each event is encoded once per codec, not once per member. The websocket routes
are small adapters around a socket.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from notes.collab.access import Access
from notes.collab.awareness import Awareness
from notes.collab.delta import Delta, transform_cursor
from notes.collab.document import BadTitle, LiveDocument, Revision, UpdateApplied
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
    """One protocol's encoding of room events (one instance serves all its members).
    Its ``protocol`` attribute names it ("json", "yjs") in metrics."""

    def greet(self, room: Room, member: Member, since: Any) -> Iterable[Frame]:
        """The frames a member gets first, before any event."""

    def encode(self, event: Event) -> Frame | None:
        """The frame for every member but the event's origin (None: not for this protocol)."""

    def encode_own(self, event: Event) -> Frame | None:
        """The frame for the member that caused the event (an ``ack``, say)."""


class Member(Protocol):
    id: str
    name: str
    codec: Codec
    access: Access  # who it is, whether it may write (the protocols refuse a viewer's changes)

    def send(self, frame: Frame) -> None:
        """Queue one frame; never blocks."""

    def close(self, code: int, reason: str = "") -> None:
        """Close the connection soon; never blocks."""


Observer = Callable[["Room", Event], None]
# Held until ``stored`` (None: nothing of its own to wait for) is done: a frame for some members
# or an event for every member then present but its origin: (stored, members, frame or event,
# origin).
_Held = tuple["asyncio.Future[None] | None", list["Member"], "Frame | Event", "Member | None"]
# Stores one change (its Yjs update and the client's ref) in the update log; the future resolves
# once it is committed (None: nothing to wait for).
Write = Callable[[bytes, Any], "asyncio.Future[None] | None"]


class Room:
    """One open note. Every change goes through here, so every member sees it exactly once.

    With ``write``, every change made here is stored in the update log, and nobody hears of it
    before it is stored: its author's ``ack`` means stored, and no other client can keep a change
    the server may yet lose (a Yjs client would upload it again after a crash, and the author,
    never acknowledged, would resend it: twice). Later frames for a member wait behind the held
    ones, so that everyone hears of everything in order. The exception is a Yjs client's own
    update, which goes on at once: its items are its own, and after a crash it sends them again
    itself, as the same items.
    """

    def __init__(self, note_id: uuid.UUID, document: LiveDocument, *, max_title: int,
                 write: Write | None = None):
        self.note_id = note_id
        self.document = document
        self.max_title = max_title
        self.write = write
        self.members: dict[str, Member] = {}
        # What waits for a change to be stored, in order (see ``_hold``).
        self._held: deque[_Held] = deque()
        self._last_write: asyncio.Future[None] | None = None
        self._unstored_refs: dict[str, asyncio.Future[None]] = {}
        self.cursors: dict[str, dict | None] = {}
        self.awareness = Awareness()
        self.observers: list[Observer] = []
        self.holders = 0  # REST requests and sockets keeping the room loaded
        self.saved_changes = document.changes
        self.saved_title = document.title
        self.first_unsaved: float | None = None  # monotonic time of the oldest unsaved change
        # Who changed the note since the last save (the next version's authors), each with the
        # number of the document's last change they made.
        self.authors: dict[str, int] = {}
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
        self.authors = {name: last for name, last in self.authors.items() if last > changes}
        # Changes made while the save ran are at most as old as its snapshot.
        self.first_unsaved = snapshot_time if self.dirty else None
        self.emit(Saved(rev))

    def mark_unsaved(self) -> None:
        """Something loaded into the room still needs saving (a log tail to compact)."""
        self.saved_changes = -1
        self.first_unsaved = self.last_change = time.monotonic()

    def credit(self, origin: Member | None, author: str | None = None) -> None:
        """Count the change just made as ``author``'s (else the origin's: its account's name,
        or the name it gave) for the next version."""
        if author is None and origin is not None:
            author = origin.access.username or origin.name
        if author:
            self.authors[author] = self.document.changes

    # --- events --------------------------------------------------------------------------------

    def subscribe(self, observer: Observer) -> None:
        self.observers.append(observer)

    def emit(self, event: Event, origin: Member | None = None,
             stored: asyncio.Future[None] | None = None, *, hold_all: bool = True) -> None:
        """Send ``event`` to every member (encoded once per codec) and every observer. Frames
        wait for ``stored``: the origin's own, and with ``hold_all`` everyone's."""
        if isinstance(event, CHANGES):
            now = time.monotonic()
            self.last_change = now
            if self.first_unsaved is None:
                self.first_unsaved = now
        if stored is not None and stored.done():
            stored = None
        others = stored if hold_all else None
        if others is None and not self._held:
            self._broadcast(list(self.members.values()), event, origin)
            if origin is not None:
                self._tell_origin(origin, event, stored)
        else:
            if origin is not None:  # (of the frames held for this change, its ack goes first)
                self._tell_origin(origin, event, stored)
            # Held, or behind what is: the same event for everyone then (encoded at release).
            self._held.append((others, list(self.members.values()), event, origin))
        if stored is not None:
            stored.add_done_callback(self._release)
        for observer in self.observers:
            observer(self, event)

    def _broadcast(self, members: list[Member], event: Event, origin: Member | None) -> None:
        """Send ``event`` to ``members`` but its origin, encoded once per codec."""
        frames: dict[Codec, Frame | None] = {}
        for member in members:
            if member is origin:
                continue
            codec = member.codec
            if codec in frames:
                frame = frames[codec]
            else:
                frame = frames[codec] = codec.encode(event)
            if frame is not None:
                member.send(frame)

    def _send(self, member: Member, frame: Frame,
              stored: asyncio.Future[None] | None = None) -> None:
        """Send now, or hold the frame behind ``stored`` and whatever is held already."""
        if stored is None and not self._held:
            member.send(frame)
        else:
            self._held.append((stored, [member], frame, None))

    def _tell_origin(self, origin: Member, event: Event,
                     stored: asyncio.Future[None] | None = None) -> None:
        own = origin.codec.encode_own(event)
        if own is not None:
            self._send(origin, own, stored)

    def _release(self, _stored: object = None) -> None:
        """A change is stored: send what is held, in order, up to the first change not stored.

        Every member gets everything in the order it was emitted; a member that left meanwhile
        gets nothing more, one that joined since gets what was emitted after it joined.
        """
        held, members = self._held, self.members
        while held and (held[0][0] is None or held[0][0].done()):
            _, recipients, what, origin = held.popleft()
            present = [m for m in recipients if members.get(m.id) is m]
            if isinstance(what, (str, bytes)):
                for member in present:
                    member.send(what)
            else:
                self._broadcast(present, what, origin)

    def _store(self, update: bytes | None, ref: Any = None) -> asyncio.Future[None] | None:
        """Write a change made here to the update log (if the room has one)."""
        if self.write is None or update is None:
            return None
        stored = self.write(update, ref)
        if stored is not None:
            self._last_write = stored
            if isinstance(ref, str):
                self._unstored_refs[ref] = stored
                stored.add_done_callback(lambda _: self._unstored_refs.pop(ref, None))
        return stored

    @property
    def unstored(self) -> bool:
        """Is a change made here still waiting for its commit?"""
        return self._last_write is not None and not self._last_write.done()

    async def stored(self) -> None:
        """Wait until every change made here so far is stored (the log commits in order)."""
        if self._last_write is not None:
            await asyncio.shield(self._last_write)

    def close_all(self, code: int, reason: str = "") -> None:
        for member in list(self.members.values()):
            member.close(code, reason)

    # --- membership ----------------------------------------------------------------------------

    def join(self, member: Member, since: Any = None) -> None:
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
        self, base_rev: int, delta: object, *, origin: Member | None = None, ref: Any = None,
        author: str | None = None,
    ) -> Revision:
        """Transform and apply one edit (JSON protocol, REST); everyone hears of it once."""
        revision, duplicate = self.document.apply_edit(
            base_rev, delta, client=origin.id if origin else None, ref=ref
        )
        event = self._event_of(revision)
        if duplicate:  # a resent edit: only its origin hears of it (its ack) again
            if origin is not None:
                stored = self._unstored_refs.get(ref)
                self._tell_origin(origin, event, stored)
                if stored is not None:
                    stored.add_done_callback(self._release)
            return revision
        self.credit(origin, author)
        self._revision_applied(event, origin, self._store(event.update, ref))
        return revision

    def replace_content(self, content: str, *, author: str | None = None) -> Revision | None:
        """A REST write: apply the smallest diff to the live text; concurrent typing survives."""
        revision = self.document.replace_text(content)
        if revision is not None:
            self.credit(None, author)
            event = self._event_of(revision)
            self._revision_applied(event, None, self._store(event.update))
        return revision

    def set_title(self, title: str, *, origin: Member | None = None,
                  author: str | None = None) -> None:
        problem = field_problem(title, self.max_title)
        if problem:
            raise BadTitle(f"the title: {problem[1]}")
        if self.document.set_title(title):
            self.credit(origin, author)
            update = self.document.last_update
            self.emit(TitleChanged(title, update, origin.id if origin else None), origin,
                      self._store(update))

    def apply_update(self, update: bytes, *, origin: Member | None = None) -> bool:
        """A Yjs update: applied to the document; its content change becomes a revision. False
        if it changed nothing (it brought nothing new).

        The update goes on to the other Yjs members as it came. What it did to the content
        reaches JSON members as an ``edit`` from the origin. A title the update made too long
        is cut by the server as a change of its own, which reaches every member, the origin too.
        """
        origin_id = origin.id if origin else None
        applied = self.document.apply_update(update, client=origin_id)
        if not applied.changed:
            return False
        self.credit(origin)
        title = self.document.title
        repaired = storable(title, self.max_title) if applied.title_changed else title
        # (a Yjs client's update goes on at once: see the class)
        self._updated(applied, update, origin, self._store(update),
                      tell_title=applied.title_changed and repaired == title, hold_all=False)
        if repaired != title:
            self.set_title(repaired)  # the server's own change: every member hears of it
        return True

    def apply_stored_update(self, update: bytes, ref: str | None = None) -> bool:
        """An update another process stored: applied and told to everyone here, not stored
        again. False when it could not be applied in full (it needs updates not here yet)."""
        was_saved = not self.dirty
        applied = self.document.apply_update(update, client=None, stored=True)
        if ref is not None:
            self.document.remember_refs([ref])
        if applied.changed:
            self._updated(applied, update, None, None, tell_title=applied.title_changed)
        if was_saved:  # stored already: nothing for this process to save
            self.saved_changes = self.document.changes
            self.first_unsaved = None
        return applied.complete

    def _updated(self, applied: UpdateApplied, update: bytes, origin: Member | None,
                 stored: asyncio.Future[None] | None, *, tell_title: bool,
                 hold_all: bool = True) -> None:
        """Tell of what a Yjs update did: one event carries the update to the Yjs members."""
        origin_id = origin.id if origin else None
        forwarded = False
        if applied.revision is not None:
            self._revision_applied(self._event_of(applied.revision, update), origin, stored,
                                   hold_all=hold_all)
            forwarded = True
        if tell_title:
            self.emit(TitleChanged(self.document.title, None if forwarded else update,
                                   origin_id), origin, stored, hold_all=hold_all)
            forwarded = True
        if not forwarded:
            self.emit(StateChanged(update, origin_id), origin, stored, hold_all=hold_all)

    def _event_of(self, revision: Revision, update: bytes | None = None) -> RevisionApplied:
        """The event of a revision; its Yjs update is the document's last unless given."""
        return RevisionApplied(revision.rev, revision.delta, update or self.document.last_update,
                               revision.client, revision.ref)

    def _revision_applied(self, event: RevisionApplied, origin: Member | None,
                          stored: asyncio.Future[None] | None = None, *,
                          hold_all: bool = True) -> None:
        self._move_cursors(event.delta)
        self.emit(event, origin, stored, hold_all=hold_all)

    # --- presence ------------------------------------------------------------------------------

    def set_presence(self, member: Member, base_rev: int, cursor: object) -> None:
        moved = None if cursor is None else self.document.transform_cursor(base_rev, cursor)
        self.cursors[member.id] = moved
        self.emit(PresenceChanged(member.id, member.name, moved), member)

    def apply_awareness(self, member: Member, update: bytes) -> bool:
        """A Yjs awareness update from ``member``: relayed to the Yjs members; a new
        ``user.name`` renames the member for JSON clients. False if it changed nothing (its
        states were known: y-websocket sends back every state it receives)."""
        changed = self.awareness.apply(update, member.id)
        self.expire_awareness()
        if changed is None:
            return False
        # Echoed to the sender too: y-websocket clients count it as a sign of life.
        self.emit(AwarenessChanged(changed, member.id))
        name = self.awareness.name_of(member.id)
        if name and name != member.name:
            member.name = name
            self.emit(PresenceChanged(member.id, name, self.cursors.get(member.id)), member)
        return True

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
