"""Debounced saves: many edits, few writes, and no edit lost.

One long-lived task per open room waits for a change, then for ``debounce`` seconds of quiet (never
longer than ``max_wait`` after the first unsaved change), and writes the room through ``save``.
The dirty state lives on the room, not in the task, so a final ``flush`` works after the tasks are
cancelled (Sanic cancels named tasks before ``before_server_stop``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pycrdt import get_state

from notes.collab.document import holds, merge_snapshot
from notes.collab.events import CHANGES, Event, SaveFailed
from notes.collab.room import Room
from notes.collab.yupdate import decode_state_vector

log = logging.getLogger(__name__)

SaveFunction = Callable[..., Awaitable[Any]]
# (stored Yjs state, content, title, the log's updates) -> the (Yjs state, content, title) to store
Merge = Callable[[bytes | None, str, str, list[bytes]], tuple[bytes, str, str]]


class SaveRejected(Exception):
    """The store refused this state for good (a constraint, invalid data), unlike a connection
    failure: retrying the same state would fail forever."""


class TaskRunner(Protocol):
    """Named background tasks (the Sanic app in production, plain asyncio in tests)."""

    def start(self, name: str, coroutine: Awaitable[None]) -> None: ...

    async def cancel(self, name: str) -> None: ...


class Saver:
    def __init__(self, save: SaveFunction, *, debounce: float, max_wait: float,
                 retry_initial: float = 0.5, retry_max: float = 30.0):
        self.save = save
        self.debounce = debounce
        self.max_wait = max_wait
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.saves = 0  # snapshots written
        self.save_seconds = 0.0  # the time they took, together
        self.save_failures = 0  # saves that raised (each is retried)
        self._wakeups: dict[int, asyncio.Event] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    def changed(self, room: Room) -> None:
        """Wake the room's save task: something needs saving."""
        self._event(room).set()

    def observe(self, room: Room, event: Event) -> None:
        """The room's observer: every change wakes the save task."""
        if isinstance(event, CHANGES):
            self.changed(room)

    async def flush(self, room: Room) -> Any:
        """Save the room now if it has unsaved changes; return what ``save`` returned (or None)."""
        async with self._lock(room):
            if not room.dirty or room.deleted:
                return None
            # The log rows of the changes so far first: the compaction then removes them.
            await room.stored()
            changes, rev, title = room.document.changes, room.rev, room.title
            snapshot_time = time.monotonic()
            try:
                stored = await self.save(room.note_id, rev=rev, merge=self._merge_with(room),
                                         authors=sorted(room.authors))
            except SaveRejected as refusal:
                self.save_failures += 1
                self._recover(room, refusal)
                raise
            except Exception:
                self.save_failures += 1
                raise
            if stored is None:
                room.deleted = True
                return None
            self.saves += 1
            self.save_seconds += time.monotonic() - snapshot_time
            room.mark_saved(changes, rev, title, snapshot_time)
            return stored

    @staticmethod
    def _merge_with(room: Room) -> Merge:
        """How the store merges the room's replica with what it holds: the stored snapshot and
        log are merged in unless the replica already has all of them."""
        state = room.document.encode_state()
        state_vector = room.document.state_vector()
        content, title = room.content, room.title

        def merge(stored_state: bytes | None, stored_content: str, stored_title: str,
                  log: list[bytes]) -> tuple[bytes, str, str]:
            # (a whole stored state has no gaps: its own state vector is exact, and native)
            if not log and stored_state is not None and holds(
                    state_vector, decode_state_vector(get_state(stored_state))):
                return state, content, title
            return merge_snapshot(room.note_id, stored_state, stored_content, stored_title,
                                  [*log, state])

        return merge

    @staticmethod
    def _recover(room: Room, refusal: SaveRejected) -> None:
        """A state the store refuses must not hold the note's other changes hostage."""
        done = room.recover_from_refused_save()
        log.error("note %s: the database refused to store it (%s); %s", room.note_id, refusal,
                  done or "nothing to undo: retrying")
        room.emit(SaveFailed(f"the note could not be stored ({refusal}); "
                             + (done or "retrying")))

    async def run(self, room: Room, *, unload: Callable[[Room], Awaitable[bool]]) -> None:
        """The room's save task: debounce, save, retry with backoff; unload the room when idle."""
        wakeup = self._event(room)
        while not room.deleted:
            await wakeup.wait()
            wakeup.clear()
            if room.dirty:
                await self._quiet_period(room)
                await self._flush_until_saved(room)
            if room.idle and not room.dirty and await unload(room):
                return

    async def _quiet_period(self, room: Room) -> None:
        # Notes opened and typed in together would all reach max_wait together: each waits
        # at most a random 75-100% of it, so that their saves spread out.
        max_wait = self.max_wait * random.uniform(0.75, 1.0)
        while True:
            now = time.monotonic()
            last = room.last_change or now
            first = room.first_unsaved or now
            deadline = min(last + self.debounce, first + max_wait)
            if deadline <= now:
                return
            await asyncio.sleep(deadline - now)

    async def _flush_until_saved(self, room: Room) -> None:
        delay = self.retry_initial
        while room.dirty and not room.deleted:
            try:
                await self.flush(room)
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if not isinstance(error, SaveRejected):  # (a refusal was logged by _recover)
                    log.exception("saving note %s failed; retrying in %.1fs", room.note_id,
                                  delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max)

    def forget(self, room: Room) -> None:
        self._wakeups.pop(id(room), None)
        self._locks.pop(id(room), None)

    def _event(self, room: Room) -> asyncio.Event:
        return self._wakeups.setdefault(id(room), asyncio.Event())

    def _lock(self, room: Room) -> asyncio.Lock:
        return self._locks.setdefault(id(room), asyncio.Lock())
