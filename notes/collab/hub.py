"""The hub: the registry of open notes in this process.

It loads a note into a :class:`Room` when the first socket or REST write needs it, keeps one save
task per room, and unloads the room (after a final save) when nobody needs it any more.

With a fan-out (``notes.collab.fanout``) the hub is one of many processes serving the same notes:
every change made here goes through the journal (group commit) into the update log and on to
the other processes; what they store arrives here and is applied to the open rooms. A load is
the snapshot plus its log; a save compacts the log into the snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from notes.collab.access import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED, AccessChanged
from notes.collab.document import (
    LiveDocument,
    load_client_id,
    merge_snapshot,
    missing_from_snapshot,
)
from notes.collab.events import CHANGES, Event
from notes.collab.fanout import Fanout, Published
from notes.collab.journal import Journal, LogEntry, loggable_ref
from notes.collab.room import Member, Room
from notes.collab.saver import Saver, TaskRunner

log = logging.getLogger(__name__)


class DocumentStore(Protocol):
    """What the hub needs from persistence (``notes.store.queries.NoteStore`` provides it)."""

    async def load_live(self, note_id: uuid.UUID) -> Any:
        """None, or an object with ``note`` (title, content, rev), ``yjs_state`` (the snapshot),
        ``log`` (the updates stored since, in order) and ``refs`` (of both)."""

    async def save(self, note_id: uuid.UUID, *, rev: int, merge: Any,
                   authors: Sequence[str] = ()) -> Any:
        """Compact: store ``merge(stored_state, content, title, log)`` (a Yjs state, content and
        title) as the snapshot and drop the log merged; None when the note no longer exists.
        Raises ``SaveRejected`` when the database refuses the state for good."""

    async def read_update(self, log_id: int) -> bytes | None:
        """One log row's update (None: compacted away)."""

    async def ref_stored(self, note_id: uuid.UUID, ref: str) -> bool:
        """Is an update with this client ref stored?"""

    async def stale_logs(self, age: float) -> list[uuid.UUID]:
        """Notes with log rows older than ``age`` seconds."""


class HubClosed(RuntimeError):
    """The hub is shutting down and takes no new holders."""


@dataclass(frozen=True)
class HubLimits:
    history_limit: int = 2000
    max_length: int = 1_000_000
    max_title: int = 200
    debounce: float = 2.0
    max_wait: float = 10.0
    max_open_notes: int = 0  # rooms loaded at once before idle ones are unloaded; 0: no limit


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


JOURNAL_TASK = "notes.journal"
RECEIVE_TASK = "notes.fanout"
COMPACT_TASK = "notes.compact"
GREETING_WAIT = 2.0  # seconds a greeting waits for the commit of what it shows


class Hub:
    """``fanout`` None: one process alone, saves only (no update log). ``durable`` False
    (``NOTES_DURABILITY=debounce``): changes still travel to the other processes, but acks do
    not wait for the log."""

    def __init__(self, store: DocumentStore, tasks: TaskRunner, limits: HubLimits | None = None,
                 *, fanout: Fanout | None = None, durable: bool = True):
        self.store = store
        self.tasks = tasks
        self.limits = limits or HubLimits()
        self.saver = Saver(store.save, debounce=self.limits.debounce,
                           max_wait=self.limits.max_wait)
        self.fanout = fanout
        self.journal = None if fanout is None else Journal(self._publish, durable=durable)
        self.rooms: dict[uuid.UUID, Room] = {}
        self._loading: dict[uuid.UUID, asyncio.Future[Room | None]] = {}
        self._early: dict[uuid.UUID, list[Published]] = {}  # arrived while the note loaded
        self._inbox: asyncio.Queue[Published] | None = None
        self._releasing: set[asyncio.Future] = set()  # final saves that outlive their caller
        self.closing = False
        self.catch_ups = 0
        # Messages between processes: updates (and deletions, access changes) this process
        # published, and those it received from the others.
        self.messages_sent = 0
        self.messages_received = 0
        # Changes applied to open notes, by source: "json", "yjs" (a socket's protocol), "rest"
        # (REST writes and the server's own repairs), "remote" (stored by another process).
        self.edits: dict[str, int] = {}
        self._applying_stored = False
        self._warned_full = False  # (the open-notes limit: warned once until there is room again)

    def stats(self) -> dict[str, Any]:
        """What this process did: open notes, log commits and the entries they held, saves."""
        journal = self.journal
        return {
            "open_notes": len(self.rooms),
            "durability": "log" if journal is not None and journal.durable else "debounce",
            "log_commits": journal.commits if journal is not None else 0,
            "log_entries": journal.written if journal is not None else 0,
            "saves": self.saver.saves,
            "catch_ups": self.catch_ups,
            "listen_reconnects": getattr(self.fanout, "reconnects", 0),
        }

    # --- other processes ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start listening to the other processes and writing the journal (loop running)."""
        if self.fanout is None or self.journal is None:
            return
        self._inbox = asyncio.Queue()
        await self.fanout.start(self._inbox.put_nowait, self.catch_up_all)
        self.tasks.start(JOURNAL_TASK, self.journal.run())
        self.tasks.start(RECEIVE_TASK, self._receive_all())
        self.tasks.start(COMPACT_TASK, self._compact_stale_logs_forever())

    # --- logs nobody compacts -------------------------------------------------------------------

    @property
    def stale_log_age(self) -> float:
        """Log rows older than this were left by a process that died (a live one saves sooner)."""
        return 3 * self.limits.max_wait

    async def compact_stale_logs(self) -> list[uuid.UUID]:
        """Compact the logs of notes not open here whose rows are overdue (their process died):
        listings and search then show them. Safe beside a live holder: a save merges. Returns
        the notes compacted."""
        compacted = []
        for note_id in await self.store.stale_logs(self.stale_log_age):
            if note_id in self.rooms or note_id in self._loading:
                continue  # our own saver's
            await self.store.save(note_id, rev=None, merge=partial(merge_snapshot, note_id))
            compacted.append(note_id)
        if compacted:
            log.info("compacted the logs of %d notes left by another process", len(compacted))
        return compacted

    async def _compact_stale_logs_forever(self) -> None:
        while True:
            try:
                await self.compact_stale_logs()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("compacting stale logs failed")
            await asyncio.sleep(self.limits.max_wait)

    async def _publish(self, entries: list[LogEntry]) -> None:
        assert self.fanout is not None and self.journal is not None
        await self.fanout.publish(entries, durable=self.journal.durable)
        self.messages_sent += len(entries)

    def _writer(self, note_id: uuid.UUID):
        journal = self.journal
        if journal is None:
            return None
        return lambda update, ref: journal.write(LogEntry(note_id, update, loggable_ref(ref)))

    async def _receive_all(self) -> None:
        assert self._inbox is not None
        while True:
            message = await self._inbox.get()
            self.messages_received += 1
            try:
                await self._receive(message)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("applying an update of note %s from another process failed",
                              message.note_id)

    async def _receive(self, message: Published | AccessChanged) -> None:
        if isinstance(message, AccessChanged):
            self.apply_access(message)
            return
        if message.deleted:
            await self.note_deleted(message.note_id, announce=False)
            return
        early = self._early.get(message.note_id)
        if early is not None:
            early.append(message)
            return
        room = self.rooms.get(message.note_id)
        if room is None:
            return
        update = message.update
        if update is None and message.log_id is not None:
            update = await self.store.read_update(message.log_id)
        if update is None or not self._apply_stored(room, update, message.ref):
            await self.catch_up(room)

    async def catch_up(self, room: Room) -> None:
        """Apply what the log and snapshot hold and the room lacks (after a missed update)."""
        self.catch_ups += 1
        stored = await self.store.load_live(room.note_id)
        if stored is None:
            await self.note_deleted(room.note_id, announce=False)
            return
        note = stored.note
        room.document.remember_refs(list(stored.refs))
        lacking = missing_from_snapshot(room.note_id, stored.yjs_state, note.content, note.title,
                                        list(stored.log), room.document.state_vector())
        if lacking is not None and not self._apply_stored(room, lacking):
            log.warning("note %s: the stored state does not apply in full", room.note_id)

    def _apply_stored(self, room: Room, update: bytes, ref: str | None = None) -> bool:
        self._applying_stored = True  # (its events are emitted before it returns)
        try:
            return room.apply_stored_update(update, ref)
        finally:
            self._applying_stored = False

    def _count_edit(self, room: Room, event: Event) -> None:
        """The rooms' observer for ``edits``: a change event that carries an update is one
        change applied (a Yjs update's content and title changes are one event's update)."""
        if not isinstance(event, CHANGES) or event.update is None:
            return
        if self._applying_stored:
            source = "remote"
        elif event.origin is None:
            source = "rest"
        else:
            member = room.members.get(event.origin)
            source = getattr(getattr(member, "codec", None), "protocol", "other")
        self.edits[source] = self.edits.get(source, 0) + 1

    async def catch_up_all(self) -> None:
        """After the fan-out may have missed updates: catch every open note up from the log."""
        for room in list(self.rooms.values()):
            try:
                await self.catch_up(room)
            except Exception:
                log.exception("catching note %s up from the log failed", room.note_id)

    async def recognise_ref(self, room: Room, ref: object) -> None:
        """Before a client's first edit after it (re)connects: if another process stored an
        edit with this ref, catch up, so that the resent edit is not applied twice."""
        ref = loggable_ref(ref)
        if ref is None or self.journal is None or room.document.knows_ref(ref):
            return
        if await self.store.ref_stored(room.note_id, ref):
            await self.catch_up(room)
            room.document.remember_refs([ref])

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
        room = self.rooms.pop(note_id, None)
        if room is not None:
            self.rooms[note_id] = room  # (the most recently used last: see _make_room)
        else:
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
                      since: Any = None) -> Room | None:
        room = await self.acquire(note_id)
        if room is None:
            return None
        # The greeting shows the text: what it holds should be stored first (see Room). Under a
        # steady stream of changes, or with the database away, it goes ahead after a while.
        for _ in range(3):
            if not room.unstored:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(room.stored(), GREETING_WAIT)
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
        self._early[note_id] = []
        try:
            room = await self._read_room(note_id)
            early = self._early.pop(note_id)
            if room is not None:
                await self._make_room()
                self.rooms[note_id] = room
                self.tasks.start(save_task_name(note_id),
                                 self.saver.run(room, unload=self._unload_if_idle))
                if room.dirty:
                    self.saver.changed(room)
                for message in early:  # stored after the load read, or already in it
                    await self._receive(message)
            future.set_result(room)
            return room
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: waiters re-raise it
            raise
        finally:
            del self._loading[note_id]
            self._early.pop(note_id, None)

    async def _read_room(self, note_id: uuid.UUID) -> Room | None:
        stored = await self.store.load_live(note_id)
        if stored is None:
            return None
        note = stored.note
        state, content, title = stored.yjs_state, note.content, note.title
        log_tail = list(stored.log)
        if log_tail:  # stored since the snapshot, by a process that has not compacted it yet
            state, content, title = merge_snapshot(note_id, state, content, title, log_tail)
        # The stored text wins over a Yjs state that lacks or disagrees with it (a row written by
        # REST create, or by something that doesn't know Yjs): LiveDocument writes it in, the
        # same way on every load.
        document = LiveDocument(
            content=content,
            title=title,
            rev=note.rev,
            state=state,
            history_limit=self.limits.history_limit,
            max_length=self.limits.max_length,
            load_client_id=load_client_id(note_id),
        )
        document.remember_refs(list(stored.refs))
        room = Room(note_id, document, max_title=self.limits.max_title,
                    write=self._writer(note_id))
        room.subscribe(self.saver.observe)
        room.subscribe(self._count_edit)
        if log_tail:
            room.mark_unsaved()  # compact the tail soon
        return room

    async def _make_room(self) -> None:
        """Under ``max_open_notes``: unload the least recently used rooms that nobody holds and
        that have nothing unsaved or unstored, until one more fits. None of those: the new room
        opens all the same (a warning, once until there is room again)."""
        limit = self.limits.max_open_notes
        if not limit or len(self.rooms) < limit:
            self._warned_full = False
            return
        for room in list(self.rooms.values()):
            if len(self.rooms) < limit:
                return
            if room.idle and not room.dirty and not room.unstored and not room.deleted:
                await self._unload(room)
        if len(self.rooms) >= limit and not self._warned_full:
            self._warned_full = True
            log.warning("%d notes are open (NOTES_MAX_OPEN_NOTES=%d) and none can be unloaded "
                        "(each has sockets, requests or unsaved changes): opening more anyway",
                        len(self.rooms), limit)

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
        room.document.close()

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
        """Write the journal and save everything, then close every connection with 1001."""
        self.closing = True
        unwritten = await self.journal.drain() if self.journal is not None else 0
        if unwritten:
            log.error("%d changes could not be written to the log before shutdown", unwritten)
        unsaved = await self.flush_all()
        for room in list(self.rooms.values()):
            room.close_all(1001, "server shutting down")
        if self.fanout is not None:
            await self.fanout.stop()
        return unsaved

    # --- access ---------------------------------------------------------------------------------

    async def access_changed(self, change: AccessChanged) -> None:
        """A credential ended or a share changed: act on the sockets open here and in the other
        processes at once (a socket checked its credentials and role when it opened)."""
        self.apply_access(change)
        if self.fanout is not None:
            try:
                await self.fanout.publish_access(change)
                self.messages_sent += 1
            except Exception:
                log.exception("telling the other processes of an access change failed")

    def apply_access(self, change: AccessChanged) -> None:
        if change.credential_id is not None:
            for room in self.rooms.values():
                for member in list(room.members.values()):
                    if member.access.credential_id == change.credential_id:
                        member.close(CLOSE_UNAUTHENTICATED, "signed out or token deleted")
            return
        room = self.rooms.get(change.note_id) if change.note_id is not None else None
        if room is None:
            return
        for member in list(room.members.values()):
            if member.access.user_id != change.user_id:
                continue
            if change.role is None:
                member.close(CLOSE_FORBIDDEN, "your access to this note was revoked")
            else:
                member.access.can_write = change.role.can_write

    async def note_deleted(self, note_id: uuid.UUID, *, announce: bool = True) -> None:
        """Tell everyone in the note (here, and with ``announce`` in the other processes too)
        that it is gone, close their sockets with 4404, drop it."""
        if announce and self.fanout is not None:
            try:
                await self.fanout.publish_deleted(note_id)
                self.messages_sent += 1
            except Exception:
                log.exception("telling the other processes that note %s is gone failed", note_id)
        room = self.rooms.get(note_id)
        if room is None:
            return
        room.mark_deleted()
        await self._unload(room)

