"""The Yjs protocol (y-protocols, as the npm y-websocket provider speaks it): binary frames.

Every frame is one message: ``varUint(type)`` then its payload.

- ``0`` sync: ``varUint(step)`` then ``varUint8Array``: step 1 carries a state vector (the peer
  answers with step 2: the update the sender lacks), step 2 and ``2`` (update) carry an update.
- ``1`` awareness: ``varUint8Array`` of an awareness update (see ``notes.collab.awareness``).
- ``2`` auth: the server's ``permission denied`` (``varUint(0)`` then a reason string).
- ``3`` query awareness: no payload; answered with every awareness state.

On connect the server sends step 1 and the awareness states it knows; the client sends its step 1
and the server answers with step 2. Then both sides send updates.
"""

from __future__ import annotations

from collections.abc import Iterable

from notes.collab.awareness import BadAwareness
from notes.collab.document import BadUpdate, EditRejected, SplitsCharacter, TooLarge
from notes.collab.events import (
    AwarenessChanged,
    Event,
    RevisionApplied,
    StateChanged,
    TitleChanged,
)
from notes.collab.lib0 import DecodeError, Reader, write_bytes, write_string
from notes.collab.limits import CLOSE_POLICY_VIOLATION, RateLimit, Verdict
from notes.collab.room import Member, Room

MESSAGE_SYNC = 0
MESSAGE_AWARENESS = 1
MESSAGE_AUTH = 2
MESSAGE_QUERY_AWARENESS = 3

SYNC_STEP1 = 0
SYNC_STEP2 = 1
SYNC_UPDATE = 2

AUTH_PERMISSION_DENIED = 0
EMPTY_UPDATE = b"\x00\x00"  # no structs, no deletions

# Close codes (docs/protocol.md, "Yjs"). y-websocket's provider does not reconnect after a code
# in 4400-4499: a client whose document the server refused would only be refused again.
CLOSE_INVALID = 4400  # a text frame, an undecodable message or update, an unknown type, NUL
CLOSE_TOO_LARGE = 4413  # an update that would make the note longer than NOTES_MAX_CONTENT
CLOSE_SPLITS_CHARACTER = 4422  # an update inserting or deleting inside a surrogate pair


class YjsRefused(Exception):
    """The client sent something the server refuses: close with ``code``; nothing changed."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def sync_message(step: int, payload: bytes) -> bytes:
    return bytes((MESSAGE_SYNC, step)) + write_bytes(payload)


def awareness_message(update: bytes) -> bytes:
    return bytes((MESSAGE_AWARENESS,)) + write_bytes(update)


def permission_denied(reason: str) -> bytes:
    return bytes((MESSAGE_AUTH, AUTH_PERMISSION_DENIED)) + write_string(reason)


class YjsCodec:
    """Room events as Yjs messages (one instance, ``YJS``, for every Yjs member)."""

    protocol = "yjs"

    def greet(self, room: Room, member: Member, since: object) -> Iterable[bytes]:
        frames = [sync_message(SYNC_STEP1, room.document.state_vector())]
        room.expire_awareness()  # a newcomer is never told of an expired state
        states = room.awareness.encode_all()
        if states is not None:
            frames.append(awareness_message(states))
        return frames

    def encode(self, event: Event) -> bytes | None:
        if isinstance(event, (RevisionApplied, TitleChanged, StateChanged)):
            return None if event.update is None else sync_message(SYNC_UPDATE, event.update)
        if isinstance(event, AwarenessChanged):
            return awareness_message(event.update)
        return None  # presence, joins, saves: JSON-only; a deleted note closes the socket

    def encode_own(self, event: Event) -> bytes | None:
        # A client has its own updates; its awareness comes back (a sign of life for it).
        if isinstance(event, AwarenessChanged):
            return awareness_message(event.update)
        return None


YJS = YjsCodec()


def handle_message(room: Room, member: Member, frame: bytes,
                   limit: RateLimit | None = None) -> None:
    """Apply one binary frame from a Yjs client. Raises ``YjsRefused`` (nothing changed).

    Updates (sync step 2 and update) and awareness updates count against ``limit`` when they
    change something: y-websocket sends back every awareness state it receives, and pycrdt's
    ``Provider`` every update, which change nothing. Step 1 and query awareness do not count.
    """
    reader = Reader(frame)
    try:
        kind = reader.uint()
        if kind == MESSAGE_SYNC:
            step = reader.uint()
            if step in (SYNC_STEP2, SYNC_UPDATE):
                _within(limit, droppable=False)
            payload = reader.bytes()
            reader.end()
            if _handle_sync(room, member, step, payload) and limit is not None:
                limit.charge()
        elif kind == MESSAGE_AWARENESS:
            if not _within(limit, droppable=True):
                return
            update = reader.bytes()
            reader.end()
            if room.apply_awareness(member, update) and limit is not None:
                limit.charge()
        elif kind == MESSAGE_QUERY_AWARENESS:
            reader.end()
            states = room.awareness.encode_all()
            if states is not None:
                member.send(awareness_message(states))
        else:
            raise YjsRefused(CLOSE_INVALID, f"unknown message type {kind}")
    except DecodeError as error:
        raise YjsRefused(CLOSE_INVALID, f"undecodable message: {error}") from None
    except BadAwareness as error:
        raise YjsRefused(CLOSE_INVALID, str(error)) from None


def _within(limit: RateLimit | None, droppable: bool) -> bool:
    """Is one more counted message within the socket's rate limit? y-websocket has no error
    message: an update past the limit closes the socket (1008) at once, since dropping it would
    leave the client's document silently unlike everyone else's (once it reconnects, its sync
    step 2 brings the update after all). An awareness update past it is dropped (the next one
    replaces it) until the client has gone on past its allowance of refusals too."""
    if limit is None or limit.allows():
        return True
    if droppable and limit.refuse() is Verdict.REFUSE:
        return False
    raise YjsRefused(CLOSE_POLICY_VIOLATION, "rate limit exceeded")


def _handle_sync(room: Room, member: Member, step: int, payload: bytes) -> bool:
    """Answer step 1, apply step 2 or an update; True if that changed the note (or was a
    viewer's change, refused)."""
    if step == SYNC_STEP1:
        try:
            missing = room.document.missing_from(payload)
        except BadUpdate as error:
            raise YjsRefused(CLOSE_INVALID, error.message) from None
        member.send(sync_message(SYNC_STEP2, missing))
        return False
    if step in (SYNC_STEP2, SYNC_UPDATE):
        if not member.access.can_write:
            _refuse_write(member, payload)
            return payload != EMPTY_UPDATE
        try:
            return room.apply_update(payload, origin=member)
        except TooLarge as error:
            member.send(permission_denied(error.message))
            raise YjsRefused(CLOSE_TOO_LARGE, error.message) from None
        except SplitsCharacter as error:
            member.send(permission_denied(error.message))
            raise YjsRefused(CLOSE_SPLITS_CHARACTER, error.message) from None
        except EditRejected as error:
            raise YjsRefused(CLOSE_INVALID, error.message) from None
    raise YjsRefused(CLOSE_INVALID, f"unknown sync step {step}")


def _refuse_write(member: Member, update: bytes) -> None:
    """A viewer's update is neither applied nor relayed. Its client is told with the auth
    message ``permission-denied``; the socket stays open, so that it goes on receiving."""
    if update == EMPTY_UPDATE:
        return  # y-websocket answers the server's step 1 so when it has nothing the server lacks
    member.send(permission_denied("read-only: you may read this note but not change it"))


__all__ = ["YJS", "YjsCodec", "YjsRefused", "handle_message"]
