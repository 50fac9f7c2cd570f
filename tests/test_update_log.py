"""The update log against a real PostgreSQL, with hubs in this process (one hub = one process).

Acks wait for the commit; commits are grouped; a load is the snapshot plus the log tail; a save
compacts and, when two processes save at once, merges (nothing reverted); an update that arrives
before what it builds on is caught up from the log; resent refs are recognised from the log.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
from conftest import wait_for
from live_helpers import yjs_text
from sqlalchemy import text

from notes.collab.access import Access
from notes.collab.fanout import InProcessBus, Published
from notes.collab.hub import AsyncioTasks, Hub, HubLimits
from notes.collab.journal import LogEntry
from notes.collab.session import JSON
from notes.store.database import make_engine
from notes.store.queries import NoteStore


class Member:
    """A JSON protocol member that keeps what it is sent."""

    codec = JSON

    def __init__(self, name: str = "someone"):
        self.id = uuid.uuid4().hex[:12]
        self.name = name
        self.access = Access()
        self.messages: list[dict] = []

    def send(self, frame: str) -> None:
        self.messages.append(json.loads(frame))

    def close(self, code: int, reason: str = "") -> None:
        pass

    def of_type(self, kind: str) -> list[dict]:
        return [m for m in self.messages if m["type"] == kind]


class GatedStore(NoteStore):
    """The real store; while ``gate`` is clear, log appends wait (a slow commit), and the
    appends are counted."""

    def __init__(self, engine):
        super().__init__(engine)
        self.gate = asyncio.Event()
        self.gate.set()
        self.appends: list[int] = []

    async def append_updates(self, entries: Sequence[LogEntry], *args, **kwargs) -> list[int]:
        await self.gate.wait()
        ids = await super().append_updates(entries, *args, **kwargs)
        self.appends.append(len(entries))
        return ids


class DroppingBus(InProcessBus):
    """Delivers everything but the messages ``drop`` says no to (a missed notification)."""

    def __init__(self, store=None):
        super().__init__(store)
        self.dropped = 0
        self.drop_next = 0

    def deliver(self, message: Published, origin: str) -> None:
        if self.drop_next:
            self.drop_next -= 1
            self.dropped += 1
            return
        super().deliver(message, origin)


LIMITS = HubLimits(debounce=60, max_wait=120)  # no debounced save unless a test flushes


@pytest.fixture
async def engine(database_url):
    engine = make_engine(database_url, pool_size=4)
    yield engine
    await engine.dispose()


class Processes:
    """Hubs sharing one bus (and one database): each is one server process."""

    def __init__(self, engine, bus: InProcessBus):
        self.engine = engine
        self.bus = bus
        self.hubs: list[Hub] = []
        self.tasks: list[AsyncioTasks] = []

    async def start(self, durable: bool = True) -> Hub:
        store = self.bus.store if self.bus.store is not None else NoteStore(self.engine)
        tasks = AsyncioTasks()
        hub = Hub(store, tasks, LIMITS, fanout=self.bus.connect(), durable=durable)
        await hub.start()
        self.hubs.append(hub)
        self.tasks.append(tasks)
        return hub

    async def stop(self) -> None:
        for tasks in self.tasks:
            for task in tasks.tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.tasks.values(), return_exceptions=True)


@pytest.fixture
async def gated(engine) -> AsyncIterator[tuple[Processes, GatedStore]]:
    store = GatedStore(engine)
    processes = Processes(engine, InProcessBus(store))
    yield processes, store
    store.gate.set()
    await processes.stop()


@pytest.fixture
async def dropping(engine) -> AsyncIterator[tuple[Processes, DroppingBus]]:
    bus = DroppingBus(NoteStore(engine))
    processes = Processes(engine, bus)
    yield processes, bus
    await processes.stop()


async def new_note(engine, content: str = "") -> uuid.UUID:
    return (await NoteStore(engine).create("log", content)).id


async def log_rows(engine, note_id: uuid.UUID) -> int:
    async with engine.connect() as connection:
        return (await connection.execute(
            text("SELECT count(*) FROM note_updates WHERE note_id = :n"), {"n": note_id})
        ).scalar_one()


def insert_at_end(room, member, chars: str, ref: str | None = None) -> None:
    delta = ([{"retain": len(room.content)}] if room.content else []) + [{"insert": chars}]
    room.apply_edit(room.rev, delta, origin=member, ref=ref)


# --- acks mean stored ----------------------------------------------------------------------------


async def test_nobody_hears_of_an_edit_before_its_commit(gated, engine):
    # Not the author (its ack means stored), and not the others: a client that saw a change the
    # server then lost would bring it back after a crash, besides the author's resend.
    processes, store = gated
    hub = await processes.start()
    note_id = await new_note(engine)
    author, reader = Member("author"), Member("reader")
    room = await hub.connect(note_id, author)
    room.join(reader)
    store.gate.clear()  # the commit is slow
    insert_at_end(room, author, "é漢😀", ref="a:1")
    insert_at_end(room, author, "!", ref="a:2")
    await asyncio.sleep(0.05)  # (time for frames that would not wait)
    assert author.of_type("ack") == [] and reader.of_type("edit") == []
    assert await log_rows(engine, note_id) == 0
    store.gate.set()
    await wait_for(lambda: len(author.of_type("ack")) == 2, 5, "the acks")
    assert [(m["rev"], m["ref"]) for m in author.of_type("ack")] == [(1, "a:1"), (2, "a:2")]
    assert [m["rev"] for m in reader.of_type("edit")] == [1, 2]
    assert await log_rows(engine, note_id) == 2


async def test_frames_for_the_author_wait_behind_its_ack(gated, engine):
    # The author must hear of revision 2 (someone else's) after its own ack of revision 1.
    processes, store = gated
    hub = await processes.start()
    note_id = await new_note(engine)
    author, other = Member("author"), Member("other")
    room = await hub.connect(note_id, author)
    room.join(other)
    store.gate.clear()
    insert_at_end(room, author, "a", ref="a:1")
    room.apply_edit(1, [{"retain": 1}, {"insert": "b"}], origin=other, ref="o:1")
    assert [m["type"] for m in author.messages if m["type"] in ("ack", "edit")] == []
    store.gate.set()
    await wait_for(lambda: other.of_type("ack"), 5, "the other's ack")
    kinds = [(m["type"], m["rev"]) for m in author.messages if m["type"] in ("ack", "edit")]
    assert kinds == [("ack", 1), ("edit", 2)]


async def test_commits_are_grouped_under_load(gated, engine):
    processes, store = gated
    hub = await processes.start()
    notes = [await new_note(engine) for _ in range(5)]
    members = [Member(f"m{i}") for i in range(20)]
    rooms = [await hub.connect(notes[i % 5], m) for i, m in enumerate(members)]
    edits = 0
    for burst in range(10):
        for member, room in zip(members, rooms, strict=True):
            insert_at_end(room, member, chr(0x4E00 + edits), ref=f"{member.id}:{burst}")
            edits += 1
        await asyncio.sleep(0)  # a commit starts; what follows joins the next one
    await wait_for(lambda: hub.journal.pending == 0 and hub.journal.written == edits, 10,
                   "everything written")
    assert sum(store.appends) == edits == 200
    # One write per edit is the anchor to beat: here far fewer commits than edits.
    assert hub.journal.commits == len(store.appends) <= edits // 10
    assert sum(len(m.of_type("ack")) for m in members) == edits


# --- load = snapshot + log; save = compaction ----------------------------------------------------


async def test_a_load_is_the_snapshot_and_the_log_tail(gated, engine):
    processes, _ = gated
    first = await processes.start()
    note_id = await new_note(engine, "snapshot ")
    member = Member()
    room = await first.connect(note_id, member)
    for i, chars in enumerate(["é", "漢", "😀"]):
        insert_at_end(room, member, chars, ref=f"m:{i}")
    await room.stored()
    assert await log_rows(engine, note_id) == 3
    # A process that dies now (never saves): another one loads the same text.
    second = await processes.start()
    again = await second.acquire(note_id)
    assert again.content == "snapshot é漢😀"
    assert again.document.knows_ref("m:2")
    assert again.dirty  # it compacts the tail
    await second.flush(again)
    assert await log_rows(engine, note_id) == 0
    row = await NoteStore(engine).load_live(note_id)
    assert row.note.content == yjs_text(row.yjs_state) == "snapshot é漢😀"
    assert set(row.refs) == {"m:0", "m:1", "m:2"}
    await second.release(again)


async def test_two_processes_saving_at_once_never_revert_text(engine):
    # Two replicas that have not heard of each other's edits (no fan-out between them) save
    # at the same moment: the snapshot is the merge of both, every time.
    stores = [NoteStore(engine), NoteStore(engine)]
    hubs = [Hub(store, AsyncioTasks(), LIMITS) for store in stores]
    for round_ in range(10):
        note_id = await new_note(engine, "base")
        rooms = [await hub.acquire(note_id) for hub in hubs]
        for i, room in enumerate(rooms):
            at = [{"retain": 2}] if i else []
            room.apply_edit(room.rev, [*at, {"insert": f"<{i}:{round_}>"}])
        await asyncio.gather(*(hub.flush(room) for hub, room in zip(hubs, rooms, strict=True)))
        stored = await stores[0].load_live(note_id)
        content = stored.note.content
        assert f"<0:{round_}>" in content and f"<1:{round_}>" in content, content
        assert content.replace(f"<0:{round_}>", "").replace(f"<1:{round_}>", "") == "base"
        assert yjs_text(stored.yjs_state) == content
        # Saving again (a replica still without the other's edit) does not revert it either.
        rooms[1].apply_edit(rooms[1].rev, [{"insert": "!"}])
        await hubs[1].flush(rooms[1])
        again = (await stores[0].load_live(note_id)).note.content
        # (where "!" lands against the other's insert at the same place is the CRDT's order)
        assert sorted(again) == sorted("!" + content)
        for hub, room in zip(hubs, rooms, strict=True):
            room.holders -= 1  # (no save task was started by acquire's tasks here)
            hub.rooms.pop(note_id, None)


# --- between processes ---------------------------------------------------------------------------


async def test_a_missed_update_is_caught_up_from_the_log(dropping, engine):
    processes, bus = dropping
    writer, reader = await processes.start(), await processes.start()
    note_id = await new_note(engine, "x")
    author, follower = Member("author"), Member("follower")
    room = await writer.connect(note_id, author)
    replica = await reader.connect(note_id, follower)
    insert_at_end(room, author, "1", ref="a:1")
    await room.stored()
    await wait_for(lambda: replica.content == "x1", 5, "the first update")
    bus.drop_next = 1  # the notification of the next update is lost
    insert_at_end(room, author, "2", ref="a:2")
    await room.stored()
    insert_at_end(room, author, "3", ref="a:3")  # builds on the lost one
    await room.stored()
    await wait_for(lambda: replica.content == "x123", 5, "the catch-up")
    assert bus.dropped == 1 and reader.catch_ups >= 1
    assert replica.document.knows_ref("a:2")
    # (counted for /metrics: three updates published, two arrived)
    assert writer.messages_sent == 3 and reader.messages_received == 2
    # The follower heard of all of it, in order, as edits.
    edits = follower.of_type("edit")
    assert edits and edits[-1]["rev"] == replica.rev


async def test_a_resent_edit_stored_by_another_process_is_not_applied_twice(gated, engine):
    processes, _ = gated
    first = await processes.start()
    note_id = await new_note(engine, "ab")
    member = Member()
    room = await first.connect(note_id, member)
    # Another process has the note open, and will miss the edit's notification.
    second = await processes.start()
    processes.bus.members.remove(second.fanout)
    other = await second.acquire(note_id)
    room.apply_edit(0, [{"retain": 1}, {"insert": "😀"}], origin=member, ref="s:1")
    await room.stored()
    # The ack was lost: the client reconnects to that other process.
    other.apply_edit(0, [{"retain": 2}, {"insert": "c"}])  # someone typed there meanwhile
    client = Member("client")
    other.join(client)
    # Rebased onto "abc", the client resends its awaiting edit with the same ref.
    await second.recognise_ref(other, "s:1")
    other.apply_edit(other.rev, [{"retain": 1}, {"insert": "😀"}], origin=client, ref="s:1")
    assert other.content == "a😀bc"
    # (The ack goes out behind what the room holds for its commit: the "c" typed there.)
    await wait_for(lambda: client.of_type("ack"), message="the resent edit's ack")
    (ack,) = client.of_type("ack")
    assert ack["ref"] == "s:1" and ack["rev"] <= other.rev
    await second.release(other)


async def test_after_a_listen_gap_every_open_note_catches_up(dropping, engine):
    # The last updates before the gap ended are lost and nothing later builds on them: only the
    # catch-up that follows a reconnect (``catch_up_all``) can bring them.
    processes, bus = dropping
    writer, reader = await processes.start(), await processes.start()
    notes = [await new_note(engine, f"{i}:") for i in range(3)]
    authors = [Member(f"a{i}") for i in range(3)]
    rooms = [await writer.connect(n, a) for n, a in zip(notes, authors, strict=True)]
    replicas = [await reader.connect(n, Member()) for n in notes]
    bus.drop_next = 3
    for room, author in zip(rooms, authors, strict=True):
        insert_at_end(room, author, "漢😀")
    for room in rooms:
        await room.stored()
    assert bus.dropped == 3
    assert [r.content for r in replicas] == ["0:", "1:", "2:"]
    await reader.catch_up_all()
    assert [r.content for r in replicas] == ["0:漢😀", "1:漢😀", "2:漢😀"]


async def test_an_unsaved_log_shows_in_get_and_is_compacted_when_overdue(gated, engine):
    processes, _ = gated
    dead = await processes.start()
    note_id = await new_note(engine, "saved ")
    member = Member()
    room = await dead.connect(note_id, member)
    insert_at_end(room, member, "then acknowledged 😀", ref="d:1")
    await room.stored()
    # The process dies here: its edit is only in the log.
    store = NoteStore(engine)
    assert (await store.get(note_id)).content == "saved then acknowledged 😀"
    survivor = await processes.start()
    assert note_id not in await survivor.compact_stale_logs()  # not overdue yet
    survivor.limits = HubLimits(max_wait=0)  # overdue at once
    assert note_id in await survivor.compact_stale_logs()
    assert await log_rows(engine, note_id) == 0
    row = await store.load_live(note_id)
    assert row.note.content == yjs_text(row.yjs_state) == "saved then acknowledged 😀"
    assert row.refs == ["d:1"]
    listed = [n for n in await store.list(query="acknowledged", limit=10) if n.id == note_id]
    assert listed and listed[0].content == "saved then acknowledged 😀"


# --- the PostgreSQL fan-out, in this process ----------------------------------------------------


@pytest.fixture
async def postgres_hubs(engine, database_url) -> AsyncIterator[list]:
    from notes.store.fanout import PostgresFanout

    started: list[tuple[Hub, AsyncioTasks]] = []

    async def start(durable: bool = True) -> Hub:
        store = NoteStore(engine)
        tasks = AsyncioTasks()
        hub = Hub(store, tasks, LIMITS, fanout=PostgresFanout(store, database_url),
                  durable=durable)
        await hub.start()
        started.append((hub, tasks))
        return hub

    yield start
    for hub, tasks in started:
        await hub.fanout.stop()
        for task in tasks.tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.tasks.values(), return_exceptions=True)


async def test_large_updates_travel_by_log_id_and_deletion_reaches_every_process(
        postgres_hubs, engine):
    writer, reader = await postgres_hubs(), await postgres_hubs()
    note_id = await new_note(engine, "small")
    author, follower = Member("author"), Member("follower")
    room = await writer.connect(note_id, author)
    replica = await reader.connect(note_id, follower)
    big = "漢字😀é" * 3000  # ~36 KB of UTF-8: too large for a notification's payload
    insert_at_end(room, author, big, ref="a:big")
    insert_at_end(room, author, "!", ref="a:small")
    await room.stored()
    await wait_for(lambda: replica.content == "small" + big + "!", 5, "the large update")
    assert replica.document.knows_ref("a:big") and replica.document.knows_ref("a:small")
    # Deleting on one process closes the note's sockets on the others too.
    assert await NoteStore(engine).delete(note_id)
    await writer.note_deleted(note_id)
    await wait_for(lambda: follower.of_type("deleted"), 5, "the deletion on the other process")
    assert note_id not in reader.rooms


async def test_debounce_acks_at_once_and_still_reaches_other_processes_without_log_rows(
        postgres_hubs, engine):
    writer, reader = await postgres_hubs(durable=False), await postgres_hubs(durable=False)
    note_id = await new_note(engine)
    author, follower = Member("author"), Member("follower")
    room = await writer.connect(note_id, author)
    replica = await reader.connect(note_id, follower)
    for i, chars in enumerate("é漢😀"):
        insert_at_end(room, author, chars, ref=f"a:{i}")
    assert [m["rev"] for m in author.of_type("ack")] == [1, 2, 3]  # at once, not stored yet
    await wait_for(lambda: replica.content == "é漢😀", 5, "the notifications")
    assert await log_rows(engine, note_id) == 0
    assert writer.journal.commits >= 1 and writer.stats()["durability"] == "debounce"


async def test_a_note_deleted_with_changes_queued_does_not_hold_up_the_others(gated, engine):
    processes, store = gated
    hub = await processes.start()
    doomed, kept = await new_note(engine), await new_note(engine)
    author = Member()
    rooms = [await hub.connect(doomed, author), await hub.connect(kept, author)]
    store.gate.clear()
    insert_at_end(rooms[0], author, "gone", ref="g:1")
    insert_at_end(rooms[1], author, "kept", ref="k:1")
    assert await NoteStore(engine).delete(doomed)
    store.gate.set()
    await wait_for(lambda: any(m["ref"] == "k:1" for m in author.of_type("ack")), 5,
                   "the other note's ack")
    assert await log_rows(engine, kept) == 1 and await log_rows(engine, doomed) == 0
    assert hub.journal.pending == 0


async def test_a_log_of_more_rows_than_a_statement_has_parameters_is_compacted(engine):
    # (asyncpg takes at most 32,767 parameters in one statement)
    from pycrdt import Doc, Text

    store = NoteStore(engine)
    note_id = await new_note(engine)
    doc = Doc()
    content = doc.get("content", type=Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for i in range(33_000):
        content += "é" if i % 2 else "z"
    await store.append_updates([LogEntry(note_id, update) for update in updates])
    hub = Hub(store, AsyncioTasks(), LIMITS)
    room = await hub.acquire(note_id)
    assert room.content == "zé" * 16_500
    await hub.flush(room)
    assert await log_rows(engine, note_id) == 0
    assert (await store.get(note_id)).content == "zé" * 16_500
    room.holders -= 1
