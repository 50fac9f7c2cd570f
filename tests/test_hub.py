"""The collaborative core without a server: Hub, Room and Saver on plain asyncio tasks.

The store is an in-memory fake (the core's only I/O); everything else is the real code.
"""

from __future__ import annotations

import asyncio
import gc
import json
import uuid
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
from conftest import wait_for

from notes.collab.access import Access
from notes.collab.document import LiveDocument
from notes.collab.hub import AsyncioTasks, Hub, HubClosed, HubLimits, save_task_name
from notes.collab.session import JSON

DEBOUNCE = 0.1
MAX_WAIT = 0.3


@dataclass
class Row:
    title: str
    content: str
    rev: int = 0
    yjs_state: bytes | None = None


@dataclass
class Save:
    at: float
    note_id: uuid.UUID
    rev: int
    content: str


@dataclass
class FakeStore:
    """load_live and save over a dict; saves can be delayed, held or made to fail."""

    rows: dict[uuid.UUID, Row] = field(default_factory=dict)
    saves: list[Save] = field(default_factory=list)
    attempts: list[float] = field(default_factory=list)
    loads: int = 0
    failures: int = 0  # the next this many saves raise
    delay: float = 0.0  # each save takes this long
    gate: asyncio.Event | None = None  # while set to an unset Event, saves wait for it

    def add(self, content: str = "", title: str = "t") -> uuid.UUID:
        note_id = uuid.uuid4()
        self.rows[note_id] = Row(title, content)
        return note_id

    async def load_live(self, note_id: uuid.UUID):
        self.loads += 1
        await asyncio.sleep(0)
        row = self.rows.get(note_id)
        if row is None:
            return None
        note = SimpleNamespace(title=row.title, content=row.content, rev=row.rev)
        return SimpleNamespace(note=note, yjs_state=row.yjs_state, log=[], refs=[])

    async def save(self, note_id, *, rev, merge, authors=()):
        loop = asyncio.get_running_loop()
        self.attempts.append(loop.time())
        if self.gate is not None:
            await self.gate.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the database is down")
        row = self.rows.get(note_id)
        if row is None:
            return None
        row.yjs_state, row.content, row.title = merge(row.yjs_state, row.content, row.title, [])
        row.rev = rev
        content = row.content
        self.saves.append(Save(loop.time(), note_id, rev, content))
        return row

    def saved(self, note_id: uuid.UUID) -> list[Save]:
        return [save for save in self.saves if save.note_id == note_id]


class FakeConnection:
    codec = JSON

    def __init__(self, name: str = "someone"):
        self.id = uuid.uuid4().hex[:12]
        self.name = name
        self.access = Access()
        self.messages: list[dict] = []
        self.closed: tuple[int, str] | None = None

    def send(self, text: str) -> None:
        self.messages.append(json.loads(text))

    def close(self, code: int, reason: str = "") -> None:
        self.closed = (code, reason)

    def of_type(self, kind: str) -> list[dict]:
        return [m for m in self.messages if m["type"] == kind]


@pytest.fixture
async def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
async def hub(store: FakeStore) -> AsyncIterator[Hub]:
    tasks = AsyncioTasks()
    hub = Hub(store, tasks, HubLimits(debounce=DEBOUNCE, max_wait=MAX_WAIT, history_limit=50))
    hub.saver.retry_initial = 0.05
    yield hub
    for task in list(tasks.tasks.values()):
        task.cancel()
    await asyncio.gather(*tasks.tasks.values(), return_exceptions=True)
    await asyncio.gather(*hub._releasing, return_exceptions=True)


def type_at_end(room, connection, text: str) -> None:
    room.apply_edit(room.rev, [{"retain": len(room.content)}, {"insert": text}] if room.content
                    else [{"insert": text}], origin=connection)


def now() -> float:
    return asyncio.get_running_loop().time()


# --- debounce ----------------------------------------------------------------------------------


async def test_a_burst_is_saved_once_after_the_quiet_period(hub, store):
    note_id = store.add("")
    connection = FakeConnection()
    room = await hub.connect(note_id, connection)
    for char in "héllo 漢字 😀":
        type_at_end(room, connection, char)
    last_edit = now()
    await wait_for(lambda: store.saved(note_id), 2, "the save")
    (save,) = store.saved(note_id)
    assert DEBOUNCE - 0.02 <= save.at - last_edit < DEBOUNCE + 0.15
    assert (save.rev, save.content) == (room.rev, "héllo 漢字 😀")
    assert not room.dirty
    assert connection.of_type("saved") == [{"type": "saved", "rev": room.rev}]
    assert LiveDocument(state=store.rows[note_id].yjs_state).text == "héllo 漢字 😀"
    # Nothing changed since: the task waits for the next change, no further write is coming.
    assert not hub.saver._event(room).is_set()
    await hub.disconnect(room, connection)
    assert len(store.saved(note_id)) == 1


async def test_continuous_edits_are_saved_at_most_every_max_wait(hub, store):
    store.delay = 0.03  # slow writes: edits keep arriving while one is under way
    note_id = store.add("")
    connection = FakeConnection()
    room = await hub.connect(note_id, connection)
    started = now()
    while now() - started < 4 * MAX_WAIT:
        type_at_end(room, connection, "x")
        await asyncio.sleep(DEBOUNCE / 5)  # never quiet for the debounce
    stopped = now()
    await wait_for(lambda: not room.dirty, 2, "the last save")
    saves = store.saved(note_id)
    assert saves[-1].content == room.content
    during = [save.at for save in saves if save.at < stopped]
    assert during and during[0] - started < MAX_WAIT + store.delay + 0.1
    gaps = [b - a for a, b in zip(during, during[1:], strict=False)]
    # Each write starts at most MAX_WAIT after the first change it did not contain, and at
    # least 75% of it (the spread that keeps notes typed in together from saving together).
    shortest = 0.75 * MAX_WAIT
    assert all(gap >= shortest - 0.02 for gap in gaps), gaps
    assert len(saves) <= int((stopped - started) / shortest) + 2, [s.at - started for s in saves]
    await hub.disconnect(room, connection)


async def test_an_edit_during_a_save_is_saved_by_the_next_one(hub, store):
    store.gate = asyncio.Event()
    note_id = store.add("")
    connection = FakeConnection()
    room = await hub.connect(note_id, connection)
    type_at_end(room, connection, "a")
    await wait_for(lambda: store.attempts, 2, "a save to start")
    type_at_end(room, connection, "b")  # while the write of "a" is under way
    store.gate.set()
    await wait_for(lambda: len(store.saved(note_id)) == 2, 2, "the second save")
    first, second = store.saved(note_id)
    assert (first.content, second.content) == ("a", "ab")
    assert [m["rev"] for m in connection.of_type("saved")] == [first.rev, second.rev]
    await hub.disconnect(room, connection)


# --- failures ---------------------------------------------------------------------------------


async def test_a_failing_save_is_retried_with_backoff_and_the_room_stays(hub, store):
    note_id = store.add("")
    connection = FakeConnection()
    room = await hub.connect(note_id, connection)
    type_at_end(room, connection, "precious")
    store.failures = 3
    await hub.disconnect(room, connection)  # the last one out: the flush fails
    assert hub.get(note_id) is room, "a room with unsaved changes is never unloaded"
    assert room.dirty
    await wait_for(lambda: store.saved(note_id), 5, "the retried save")
    assert store.rows[note_id].content == "precious"
    assert len(store.attempts) == 4
    retries = store.attempts[1:]
    waits = [b - a for a, b in zip(retries, retries[1:], strict=False)]
    assert waits[0] >= 0.05 - 0.01 and waits[1] >= 2 * 0.05 - 0.01, waits  # backing off
    await wait_for(lambda: hub.get(note_id) is None, 2, "the unload once saved")
    assert save_task_name(note_id) not in hub.tasks.tasks


async def test_flush_all_saves_every_dirty_room(hub, store):
    notes = [store.add(f"note {i}") for i in range(3)]
    connections = [FakeConnection() for _ in notes]
    rooms = [await hub.connect(n, c) for n, c in zip(notes, connections, strict=True)]
    for room, connection in zip(rooms[:2], connections, strict=False):
        type_at_end(room, connection, " edited")
    assert await hub.flush_all() == 0
    assert [store.rows[n].content for n in notes] == ["note 0 edited", "note 1 edited",
                                                      "note 2"]
    assert [len(store.saved(n)) for n in notes] == [1, 1, 0]
    assert all(hub.get(n) is not None for n in notes), "still open: still loaded"

    for room, connection in zip(rooms, connections, strict=True):
        type_at_end(room, connection, "!")
    store.failures = 1000
    assert await hub.flush_all(attempts=1) == 3
    store.failures = 0
    assert await hub.shutdown() == 0
    assert all(c.closed == (1001, "server shutting down") for c in connections)
    assert [store.rows[n].content for n in notes] == ["note 0 edited!", "note 1 edited!",
                                                      "note 2!"]


async def test_after_shutdown_nobody_new_gets_a_room(hub, store):
    note = store.add("text")
    connection = FakeConnection()
    room = await hub.connect(note, connection)
    type_at_end(room, connection, " typed")
    assert await hub.shutdown() == 0
    with pytest.raises(HubClosed):
        await hub.acquire(note)
    assert store.rows[note].content == "text typed"


# --- leaving, deleting -------------------------------------------------------------------------


async def test_release_of_the_last_holder_saves_at_once_and_unloads(hub, store):
    note_id = store.add("")
    first, second = FakeConnection("first"), FakeConnection("second")
    room = await hub.connect(note_id, first)
    assert await hub.connect(note_id, second) is room
    assert store.loads == 1
    type_at_end(room, first, "bye")
    await hub.disconnect(room, first)
    assert store.saved(note_id) == [] and hub.get(note_id) is room
    assert second.of_type("leave") == [{"type": "leave", "client": first.id}]
    await hub.disconnect(room, second)
    assert [s.content for s in store.saved(note_id)] == ["bye"]  # no debounce: at once
    assert hub.get(note_id) is None
    assert save_task_name(note_id) not in hub.tasks.tasks
    # A REST holder (acquire/release) does the same.
    room = await hub.acquire(note_id)
    assert room is not None and room.content == "bye"
    room.replace_content("bye now")
    await hub.release(room)
    assert store.rows[note_id].content == "bye now" and hub.get(note_id) is None


async def test_the_final_save_survives_a_cancelled_caller(hub, store):
    """Sanic cancels a websocket handler again when its transport closes, mid-disconnect."""
    store.gate = asyncio.Event()
    note_id = store.add("")
    connection = FakeConnection()
    room = await hub.connect(note_id, connection)
    type_at_end(room, connection, "keep me")
    leaving = asyncio.create_task(hub.disconnect(room, connection))
    await wait_for(lambda: store.attempts, 2, "the final save to start")
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    store.gate.set()
    await wait_for(lambda: hub.get(note_id) is None, 2, "the unload")
    assert store.rows[note_id].content == "keep me"
    assert save_task_name(note_id) not in hub.tasks.tasks


async def test_unloading_an_old_room_again_leaves_its_successor_alone(hub, store):
    note_id = store.add("")
    old_connection = FakeConnection()
    old = await hub.connect(note_id, old_connection)
    await hub.disconnect(old, old_connection)
    assert hub.get(note_id) is None
    new_connection = FakeConnection()
    new = await hub.connect(note_id, new_connection)
    successor_task = hub.tasks.tasks[save_task_name(note_id)]
    await hub._unload(old)  # a late second unload of the old room
    assert hub.get(note_id) is new
    assert not successor_task.done()
    type_at_end(new, new_connection, "still saved by its task")
    await wait_for(lambda: store.saved(note_id), 2, "the debounced save")
    await hub.disconnect(new, new_connection)


async def test_note_deleted_closes_connections_with_4404(hub, store):
    note_id = store.add("doomed")
    connections = [FakeConnection() for _ in range(2)]
    room = await hub.connect(note_id, connections[0])
    await hub.connect(note_id, connections[1])
    type_at_end(room, connections[0], "!")
    del store.rows[note_id]
    await hub.note_deleted(note_id)
    for connection in connections:
        assert connection.messages[-1] == {"type": "deleted"}
        assert connection.closed == (4404, "note deleted")
    assert hub.get(note_id) is None
    assert save_task_name(note_id) not in hub.tasks.tasks
    # The sockets then go away as usual: nothing is saved for a deleted note.
    for connection in connections:
        await hub.disconnect(room, connection)
    assert store.attempts == []
    assert await hub.connect(note_id, FakeConnection()) is None
    await hub.note_deleted(uuid.uuid4())  # unknown or not open: nothing to do


async def test_concurrent_opens_load_once(hub, store):
    note_id = store.add("shared")
    connections = [FakeConnection() for _ in range(5)]
    rooms = await asyncio.gather(*(hub.connect(note_id, c) for c in connections))
    assert store.loads == 1
    assert all(room is rooms[0] for room in rooms)
    assert [len(m["peers"]) for m in (c.messages[0] for c in connections)] == [0, 1, 2, 3, 4]
    for connection in connections:
        await hub.disconnect(rooms[0], connection)
    assert hub.get(note_id) is None
    assert await hub.connect(uuid.uuid4(), FakeConnection()) is None


# --- open notes per process --------------------------------------------------------------------


async def test_past_max_open_notes_the_least_recently_used_idle_saved_room_is_unloaded(
        store, caplog):
    tasks = AsyncioTasks()
    hub = Hub(store, tasks, HubLimits(debounce=DEBOUNCE, max_wait=MAX_WAIT, max_open_notes=3))
    try:
        old, used, unsaved, held = (store.add(name) for name in ("old", "used", "unsaved", "held"))
        rooms = {note_id: await hub.acquire(note_id) for note_id in (old, used, unsaved)}
        # Idle but not yet unloaded (as between a release and its unload): only the hub's
        # limit unloads them now.
        for room in rooms.values():
            room.holders -= 1
        store.gate = asyncio.Event()  # the unsaved room's save cannot finish
        type_at_end(rooms[unsaved], None, " edited")
        await hub.acquire(used)  # now the most recently used
        rooms[used].holders -= 1
        assert list(hub.rooms) == [old, unsaved, used]

        held_room = await hub.acquire(held)  # one too many: the oldest idle, saved one goes
        assert list(hub.rooms) == [unsaved, used, held]
        assert save_task_name(old) not in tasks.tasks
        assert rooms[unsaved].dirty  # never unloaded with unsaved changes

        # Nothing left to unload (held, unsaved, held): the new note opens anyway, one warning.
        await hub.acquire(used)
        caplog.clear()
        for note_id in (store.add("more"), store.add("and more")):
            assert await hub.acquire(note_id) is not None
        assert len(hub.rooms) == 5 and unsaved in hub.rooms
        warnings = [r for r in caplog.records if "NOTES_MAX_OPEN_NOTES" in r.getMessage()]
        assert len(warnings) == 1, caplog.text
        # The unloaded note opens again from the store, with what it had.
        assert (await hub.acquire(old)).content == "old" and held_room.content == "held"
    finally:
        store.gate.set()
        for task in list(tasks.tasks.values()):
            task.cancel()
        await asyncio.gather(*tasks.tasks.values(), *hub._releasing, return_exceptions=True)


async def test_an_unloaded_room_and_its_document_are_freed(hub, store):
    note_id = store.add("x")
    connection = FakeConnection()
    room = await hub.connect(note_id, connection)
    type_at_end(room, connection, "y")
    await hub.disconnect(room, connection)
    assert hub.get(note_id) is None and store.rows[note_id].content == "xy"
    # (pycrdt keeps an observed Doc, and whatever its observers hold, alive until unobserved)
    room_ref, document_ref = weakref.ref(room), weakref.ref(room.document)
    del room
    gc.collect()
    assert room_ref() is None and document_ref() is None
