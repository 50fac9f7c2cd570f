"""Fan-out between processes: every process's stored updates reach every other process.

Each process that holds a note keeps its own replica; what one process changes travels to the
others as Yjs updates, which merge in any order. The interface is small (``Fanout``) and has two
backends: ``InProcessBus`` here (several hubs in one process: tests, tools) and
``notes.store.fanout.PostgresFanout`` (LISTEN/NOTIFY, the same commit as the update log).

A backend delivers, in commit order, one ``Published`` per stored update of another process (and
an ``AccessChanged`` when another process ended a credential or changed a share), and says
``reconnected`` after it may have missed some (its listening connection dropped): the hub
then catches every open note up from the log.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from notes.collab.access import AccessChanged
from notes.collab.journal import LogEntry


@dataclass(frozen=True)
class Published:
    """One update another process stored (``update`` None: too large to carry, read row
    ``log_id``), or, with ``deleted``, the news that the note is gone."""

    origin: str  # the publishing process
    note_id: uuid.UUID
    update: bytes | None = None
    log_id: int | None = None
    ref: str | None = None
    deleted: bool = False


Receive = Callable[[Published | AccessChanged], None]
Reconnected = Callable[[], Awaitable[None]]


class Fanout(Protocol):
    origin: str  # this process's name in what it publishes

    async def publish(self, entries: Sequence[LogEntry], *, durable: bool) -> None:
        """Store ``entries`` in the update log (``durable``, else only what must be read back)
        and deliver them to the other processes, all in one commit."""

    async def publish_deleted(self, note_id: uuid.UUID) -> None:
        """Tell the other processes the note was deleted."""

    async def publish_access(self, change: AccessChanged) -> None:
        """Tell the other processes a credential ended or a share changed."""

    async def start(self, receive: Receive, reconnected: Reconnected) -> None:
        """Begin delivering the others' updates to ``receive``."""

    async def stop(self) -> None: ...


class InProcessBus:
    """Hubs in one process, each with its own ``connect()``-ed fanout, see each other's updates.

    ``store`` is what writes the log (a ``NoteStore``; None: nothing is stored).
    """

    def __init__(self, store=None) -> None:
        self.store = store
        self.members: list[InProcessFanout] = []

    def connect(self) -> InProcessFanout:
        fanout = InProcessFanout(self)
        self.members.append(fanout)
        return fanout

    def deliver(self, message: Published | AccessChanged, origin: str) -> None:
        for member in self.members:
            if member.origin != origin and member.receive is not None:
                member.receive(message)


class InProcessFanout:
    def __init__(self, bus: InProcessBus) -> None:
        self.bus = bus
        self.origin = uuid.uuid4().hex[:12]
        self.receive: Receive | None = None

    async def publish(self, entries: Sequence[LogEntry], *, durable: bool) -> None:
        ids: Sequence[int | None] = [None] * len(entries)
        if durable and self.bus.store is not None:
            ids = await self.bus.store.append_updates(entries)
        for entry, log_id in zip(entries, ids, strict=True):
            self.bus.deliver(Published(self.origin, entry.note_id, entry.update, log_id,
                                       entry.ref), self.origin)

    async def publish_deleted(self, note_id: uuid.UUID) -> None:
        self.bus.deliver(Published(self.origin, note_id, deleted=True), self.origin)

    async def publish_access(self, change: AccessChanged) -> None:
        self.bus.deliver(change, self.origin)

    async def start(self, receive: Receive, reconnected: Reconnected) -> None:
        self.receive = receive

    async def stop(self) -> None:
        self.receive = None
