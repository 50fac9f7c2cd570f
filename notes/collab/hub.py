"""The hub: the registry of open notes in this process.

It loads a note into a :class:`Room` when the first socket or REST write needs it, keeps one save
task per room, and unloads the room (after a final save) when nobody needs it any more.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol

from notes.collab.document import LiveDocument, Revision, load_client_id
from notes.collab.room import Member, Room
from notes.collab.saver import Saver, TaskRunner

log = logging.getLogger(__name__)


class DocumentStore(Protocol):
    """What the hub needs from persistence (``notes.store.queries.NoteStore`` provides it)."""

    async def load_live(self, note_id: uuid.UUID) -> Any:
        """None, or an object with ``note`` (title, content, rev), ``yjs_state`` and ``history``."""

    async def save(self, note_id: uuid.UUID, *, title: str, content: str, rev: int,
                   yjs_state: bytes | None, history: list | None) -> Any:
        """Write the note; None when it no longer exists. Raises ``SaveRejected`` when the
        database refuses this state for good (not for a connection failure)."""


class HubClosed(RuntimeError):
    """The hub is shutting down and takes no new holders."""


@dataclass(frozen=True)
class HubLimits:
    history_limit: int = 2000
    max_length: int = 1_000_000
    max_title: int = 200
    debounce: float = 2.0
    max_wait: float = 10.0


class AsyncioTasks:
    """A TaskRunner on plain asyncio, for tests and tools without Sanic."""

    def __init__(self) -> None:
        self.tasks: dict[str, asyncio.Task] = {}

    def start(self, name: str, coroutine: Awaitable[None]) -> None:
        self.tasks[name] = asyncio.ensure_future(coroutine)

    async def cancel(self, name: str) -> None:
        task = self.tasks.pop(name, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def save_task_name(note_id: uuid.UUID) -> str:
    return f"notes.save:{note_id}"


class Hub:
    def __init__(self, store: DocumentStore, tasks: TaskRunner, limits: HubLimits | None = None):
        self.store = store
        self.tasks = tasks
        self.limits = limits or HubLimits()
        self.saver = Saver(store.save, debounce=self.limits.debounce,
                           max_wait=self.limits.max_wait)
        self.rooms: dict[uuid.UUID, Room] = {}
        self._loading: dict[uuid.UUID, asyncio.Future[Room | None]] = {}
        self._releasing: set[asyncio.Future] = set()  # final saves that outlive their caller
        self.closing = False

    # --- opening and closing rooms --------------------------------------------------------------

    def get(self, note_id: uuid.UUID) -> Room | None:
        return self.rooms.get(note_id)

    async def acquire(self, note_id: uuid.UUID) -> Room | None:
        """The note's room, loaded if needed and held until :meth:`release` (None: no such note).

        Refused with :class:`HubClosed` once shutdown began: a change after the final flush
        would be lost.
        """
        if self.closing:
            raise HubClosed("the server is shutting down")
        room = self.rooms.get(note_id)
        if room is None:
            room = await self._load(note_id)
            if room is None:
                return None
        room.holders += 1
        return room

    async def release(self, room: Room) -> None:
        """Stop holding a room; the last holder saves it at once and unloads it.

        The save and unload run to the end even if the caller is cancelled meanwhile (Sanic
        cancels a websocket handler again when its transport closes).
        """
        room.holders -= 1
        if room.idle:
            task = asyncio.ensure_future(self._save_and_unload(room))
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)
            await asyncio.shield(task)

    async def connect(self, note_id: uuid.UUID, member: Member,
                      since: int | None = None) -> Room | None:
        room = await self.acquire(note_id)
        if room is not None:
            room.join(member, since)
        return room

    async def disconnect(self, room: Room, member: Member) -> None:
        room.leave(member)
        await self.release(room)

    async def _load(self, note_id: uuid.UUID) -> Room | None:
        pending = self._loading.get(note_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Room | None] = asyncio.get_running_loop().create_future()
        self._loading[note_id] = future
        try:
            room = await self._read_room(note_id)
            if room is not None:
                self.rooms[note_id] = room
                self.tasks.start(save_task_name(note_id),
                                 self.saver.run(room, unload=self._unload_if_idle))
            future.set_result(room)
            return room
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: waiters re-raise it
            raise
        finally:
            del self._loading[note_id]

    async def _read_room(self, note_id: uuid.UUID) -> Room | None:
        stored = await self.store.load_live(note_id)
        if stored is None:
            return None
        note = stored.note
        # The stored text wins over a Yjs state that lacks or disagrees with it (a row written by
        # REST create, or by something that doesn't know Yjs): LiveDocument writes it in, the
        # same way on every load.
        document = LiveDocument(
            content=note.content,
            title=note.title,
            rev=note.rev,
            state=stored.yjs_state,
            history_limit=self.limits.history_limit,
            max_length=self.limits.max_length,
            history=[Revision(*entry) for entry in stored.history or ()],
            load_client_id=load_client_id(note_id),
        )
        room = Room(note_id, document, max_title=self.limits.max_title)
        room.subscribe(self.saver.observe)
        return room

    async def _save_and_unload(self, room: Room) -> None:
        try:
            await self.saver.flush(room)
        except Exception:
            log.exception("saving note %s failed; its save task will retry", room.note_id)
            self.saver.changed(room)
            return
        if room.idle and not room.dirty:
            await self._unload(room)

    async def _unload_if_idle(self, room: Room) -> bool:
        if not room.idle or room.dirty:
            return False
        await self._unload(room)
        return True

    async def _unload(self, room: Room) -> None:
        if self.rooms.get(room.note_id) is not room:
            # Already unloaded (its task is gone or going); the task name may now belong to a
            # newer room of the same note, whose save task must live on.
            return
        del self.rooms[room.note_id]
        self.saver.forget(room)
        await self.tasks.cancel(save_task_name(room.note_id))

    # --- saving -----------------------------------------------------------------------------------

    async def flush(self, room: Room) -> Any:
        return await self.saver.flush(room)

    async def flush_all(self, attempts: int = 3) -> int:
        """Save every room with unsaved changes (clean shutdown). Returns how many stay unsaved."""
        for attempt in range(attempts):
            failed = 0
            for room in list(self.rooms.values()):
                try:
                    await self.saver.flush(room)
                except Exception:
                    failed += 1
                    log.exception("final save of note %s failed (attempt %d)", room.note_id,
                                  attempt + 1)
            if failed == 0:
                return 0
            await asyncio.sleep(0.2 * (attempt + 1))
        return sum(1 for room in self.rooms.values() if room.dirty)

    async def shutdown(self) -> int:
        """Flush everything, then close every connection with 1001 (going away)."""
        self.closing = True
        unsaved = await self.flush_all()
        for room in list(self.rooms.values()):
            room.close_all(1001, "server shutting down")
        return unsaved

    async def note_deleted(self, note_id: uuid.UUID) -> None:
        """Tell everyone in the note that it is gone, close their sockets with 4404, drop it."""
        room = self.rooms.get(note_id)
        if room is None:
            return
        room.mark_deleted()
        await self._unload(room)

