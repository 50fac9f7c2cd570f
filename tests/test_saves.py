"""Debounced saves, counted in PostgreSQL: few writes, nothing left unsaved, flush on leave."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import TEST_SERVER_ENV, ServerProcess
from live_helpers import Db, Raw, close_all, create_note, type_randomly, yjs_text

from notes.client import LiveClient

DEBOUNCE = float(TEST_SERVER_ENV["NOTES_SAVE_DEBOUNCE"])
MAX_WAIT = float(TEST_SERVER_ENV["NOTES_SAVE_MAX_WAIT"])
SLACK = 0.7  # scheduling and a database round trip


class Writes:
    """Polls the row in the background and notes every change of its ``version``."""

    def __init__(self, db: Db, note_id: str):
        self.db, self.note_id = db, note_id
        self.samples: list[tuple[float, int]] = []
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> Writes:
        row = await self.db.row(self.note_id)
        self.samples.append((time.monotonic(), row.version))
        self._task = asyncio.create_task(self._poll())
        return self

    async def _poll(self) -> None:
        while True:
            row = await self.db.row(self.note_id)
            if row.version != self.samples[-1][1]:
                self.samples.append((time.monotonic(), row.version))
            await asyncio.sleep(0.01)

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        row = await self.db.row(self.note_id)
        if row.version != self.samples[-1][1]:
            self.samples.append((time.monotonic(), row.version))

    @property
    def count(self) -> int:
        return self.samples[-1][1] - self.samples[0][1]

    def times(self) -> list[float]:
        return [when for when, _ in self.samples[1:]]


async def test_hundreds_of_edits_make_a_handful_of_writes(server, db):
    async with httpx.AsyncClient(base_url=server.url) as http:
        note_id = await create_note(http, content="start ")
    typist = await LiveClient.connect(server.url, note_id, name="typist")
    other = await LiveClient.connect(server.url, note_id, name="other")
    try:
        async with Writes(db, note_id) as writes:
            started = time.monotonic()
            edits = 0
            rng = random.Random(3)
            # On a loaded machine the typing loop itself can stall; a stall as long as the
            # debounce is a quiet period, after which a save is due (not a max-wait save).
            quiet_periods, last_keystroke = 0, started
            while time.monotonic() - started < 3.2:
                await type_randomly(typist, rng, 2)
                await type_randomly(other, rng, 1)
                edits += 3
                now = time.monotonic()
                quiet_periods += now - last_keystroke > DEBOUNCE / 2
                last_keystroke = now
                await asyncio.sleep(0.002)  # typing speed, not synchronisation
            typing_ended = time.monotonic()
            await typist.synced()
            await other.synced()
            await other.wait_for(lambda: other.rev == typist.rev)
            last_ack = time.monotonic()
            final_text, final_rev = typist.text, typist.rev
            assert other.text == final_text
            assert edits >= 200 and final_rev >= 100

            # The stored text catches up within the debounce (the typing has stopped), and
            # certainly within the max wait.
            row = await db.wait_row(note_id,
                                    lambda r: r.rev == final_rev and r.content == final_text,
                                    MAX_WAIT + SLACK, "the final save")
            assert time.monotonic() - last_ack < MAX_WAIT + SLACK
            assert yjs_text(row.yjs_state) == final_text
            await typist.wait_for(lambda: typist.saved_rev == final_rev, 2)

        # While typing never paused for DEBOUNCE seconds, only the max wait made writes: at
        # most one per MAX_WAIT, plus the last one after the typing stopped.
        times = writes.times()
        during = [t for t in times if t < typing_ended]
        typing_time = typing_ended - started
        assert writes.count == len(times), f"two writes between polls: {writes.samples}"
        assert 2 <= writes.count <= int(typing_time / MAX_WAIT) + 2 + quiet_periods, (
            writes.samples, quiet_periods)
        assert during, "the max wait forced a write while the typing went on"
        assert during[0] - started < MAX_WAIT + SLACK
        if quiet_periods == 0:
            gaps = [b - a for a, b in zip(during, during[1:], strict=False)]
            assert all(gap > MAX_WAIT - SLACK for gap in gaps), gaps
    finally:
        await close_all([typist, other])


async def test_a_burst_then_quiet_is_one_write_after_the_debounce(server, db):
    async with httpx.AsyncClient(base_url=server.url) as http:
        note_id = await create_note(http, content="")
    client = await LiveClient.connect(server.url, note_id)
    try:
        async with Writes(db, note_id) as writes:
            for i in range(50):
                await client.insert(i, "é")
            await client.synced()
            synced_at = time.time()  # the server applied the last edit just before this
            row = await db.wait_row(note_id, lambda r: r.content == "é" * 50, MAX_WAIT + SLACK)
        assert writes.count == 1, writes.samples
        # The database stamps the write (same host, same wall clock).
        saved_after = row.updated_at.timestamp() - synced_at
        assert DEBOUNCE - 0.05 <= saved_after < DEBOUNCE + SLACK, saved_after
        assert row.rev == client.rev
    finally:
        await client.close()


# --- the last one out saves at once ------------------------------------------------------------


@pytest.fixture(scope="module")
def lazy_saver(database_url: str) -> Iterator[ServerProcess]:
    """A server whose debounce never fires within a test: any write comes from something else."""
    process = ServerProcess(database_url, log_name="lazy-saver", env={
        "NOTES_SAVE_DEBOUNCE": "60", "NOTES_SAVE_MAX_WAIT": "120"})
    try:
        yield process.start()
    finally:
        process.stop()


async def test_last_client_leaving_flushes_at_once_and_unloads(lazy_saver, db):
    async with httpx.AsyncClient(base_url=lazy_saver.url) as http:
        note_id = await create_note(http, content="abc")
        for round_ in range(3):
            first = await LiveClient.connect(lazy_saver.url, note_id, name="first")
            second = await Raw.open(lazy_saver.url, note_id, "second")
            await first.insert(0, f"{round_}漢😀")
            await first.synced()
            text, rev = first.text, first.rev
            before = await db.row(note_id)
            assert before.content != text, "nothing saves while people are connected"
            assert (await http.get(f"/notes/{note_id}")).json()["content"] == text, "GET is live"

            await second.close()
            await first.close()
            left = time.monotonic()
            row = await db.wait_row(note_id, lambda r, t=text: r.content == t, 3,
                                    "the flush on leaving")
            assert time.monotonic() - left < 3
            assert row.rev == rev and row.version == before.version + 1
            assert yjs_text(row.yjs_state) == text

            # Unloaded: a change made behind the server's back shows through GET and a new
            # connection, which would not happen while the live document is in memory.
            behind = f"changed in SQL {round_}"
            await db.execute("UPDATE notes SET content = :c, yjs_state = NULL"
                             " WHERE id = :id", c=behind, id=note_id)

            async def content(note: str = note_id) -> str:
                return (await http.get(f"/notes/{note}")).json()["content"]

            deadline = time.monotonic() + 3
            while await content() != behind:
                assert time.monotonic() < deadline, "the document stayed loaded"
                await asyncio.sleep(0.02)
        again = await LiveClient.connect(lazy_saver.url, note_id)
        try:
            assert again.text == "changed in SQL 2"
        finally:
            await again.close()


async def test_rest_write_to_a_closed_note_is_saved_and_not_kept_open(lazy_saver, db):
    async with httpx.AsyncClient(base_url=lazy_saver.url) as http:
        note_id = await create_note(http, content="one")
        response = await http.patch(f"/notes/{note_id}", json={"content": "two"})
        assert response.status_code == 200
        row = await db.row(note_id)
        assert row.content == "two" and yjs_text(row.yjs_state) == "two"
        await db.execute("UPDATE notes SET content = 'three', yjs_state = NULL WHERE id = :id",
                         id=note_id)
        assert (await http.get(f"/notes/{note_id}")).json()["content"] == "three"


async def test_a_save_the_database_refuses_does_not_hold_the_other_changes_hostage(server, db):
    """A title PostgreSQL refuses (here: a CHECK constraint; the validators catch NUL and
    surrogates before): the title goes back, the content is stored, everyone is told."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        note_id = await create_note(http, title="good title", content="")
    poison = f"poison {note_id}"
    constraint = f"test_refuse_{note_id.replace('-', '_')}"
    await db.execute(f"ALTER TABLE notes ADD CONSTRAINT {constraint} CHECK (title <> '{poison}')")
    raw = await Raw.open(server.url, note_id)
    try:
        await raw.send({"type": "title", "title": poison})
        rev = raw.hello["rev"]
        for i, char in enumerate("typed after"):
            await raw.send({"type": "edit", "rev": rev + i, "delta":
                            [{"retain": i}, {"insert": char}] if i else [{"insert": char}]})
            assert (await raw.next("ack"))["rev"] == rev + i + 1
        told = {}
        while len(told) < 2:
            message = await raw.next("error", "title", timeout=10)
            told[message["type"]] = message
        assert told["error"]["code"] == "save_failed" and "title" in told["error"]["message"]
        assert told["title"]["title"] == "good title"
        row = await db.wait_row(note_id, lambda r: r.content == "typed after", 10, "the save")
        assert row.title == "good title"
        assert yjs_text(row.yjs_state) == "typed after"
    finally:
        await raw.close()
        await db.execute(f"ALTER TABLE notes DROP CONSTRAINT {constraint}")
    log = server.log()
    assert f"note {note_id}: the database refused to store it" in log
    assert "typed after" not in log  # no note text in the logs
