"""What happens in a room, as typed events.

The room emits each event once; every member encodes it for its own protocol (the JSON socket, the
Yjs socket) and observers (the saver; later cross-process fan-out, history, metrics) subscribe to
the same events. ``origin`` is the id of the member that caused the event, or None (REST, the
server itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from notes.collab.delta import Delta


@dataclass(frozen=True, slots=True)
class RevisionApplied:
    """The content changed: revision ``rev`` (a code-point ``delta``) and its Yjs ``update``."""

    rev: int
    delta: Delta
    update: bytes
    origin: str | None
    ref: Any = None


@dataclass(frozen=True, slots=True)
class TitleChanged:
    """The title changed; ``update`` is None when Yjs members already got it with a revision."""

    title: str
    update: bytes | None
    origin: str | None


@dataclass(frozen=True, slots=True)
class StateChanged:
    """The Yjs document changed outside the content and the title (other shared types)."""

    update: bytes
    origin: str | None


@dataclass(frozen=True, slots=True)
class PeerJoined:
    client: str
    name: str


@dataclass(frozen=True, slots=True)
class PeerLeft:
    client: str


@dataclass(frozen=True, slots=True)
class PresenceChanged:
    client: str
    name: str
    cursor: dict | None


@dataclass(frozen=True, slots=True)
class AwarenessChanged:
    """Yjs awareness states changed (an encoded awareness update of the changed clients)."""

    update: bytes
    origin: str | None


@dataclass(frozen=True, slots=True)
class Saved:
    rev: int


@dataclass(frozen=True, slots=True)
class SaveFailed:
    """The database refused to store the note (see ``Saver._recover``)."""

    message: str


@dataclass(frozen=True, slots=True)
class Deleted:
    pass


Event = (RevisionApplied | TitleChanged | StateChanged | PeerJoined | PeerLeft | PresenceChanged
         | AwarenessChanged | Saved | SaveFailed | Deleted)
CHANGES = (RevisionApplied, TitleChanged, StateChanged)
