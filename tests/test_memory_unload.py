"""Thousands of notes opened and left: once the hub has unloaded them, the server's memory is
back where it was.

A real server process (one worker). Each round creates ROUND notes, opens a JSON socket on every
one at once (every note a loaded room), types an edit into each and waits for its ``ack``, closes
the sockets and waits until ``/health`` shows no open notes. The first round is the warm-up
(imports, caches, the allocator's arenas: not leaks); the second round's end RSS must be within
RSS_SLACK of the warm-up's end.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
from conftest import ServerProcess
from live_helpers import Raw, create_note

ROUND = 1500  # notes per round
PARALLEL = 64  # sockets opened or closed at a time
# Measured (2 rounds of 2,000): start 92 MB, the warm-up's end 187 MB, the second round's end
# 0.4 MB above it. Before LiveDocument.close (pycrdt keeps an observed Doc alive for good) the
# second round kept 21.5 MB: ~11 KB a note. Anything keeping a few KB per note shows.
RSS_SLACK_MB = 6


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def open_notes(http: httpx.AsyncClient) -> int:
    return (await http.get("/health")).json()["process"]["open_notes"]


async def one_round(server: ServerProcess, http: httpx.AsyncClient, tag: str) -> dict[str, str]:
    """Create ROUND notes, hold a socket on each at once, edit each, close all, wait until every
    room is unloaded. The content each note should now have, by id."""
    gate = asyncio.Semaphore(PARALLEL)

    async def create(i: int) -> str:
        async with gate:
            return await create_note(http, title=f"{tag}{i}", content="note ")

    note_ids = await asyncio.gather(*(create(i) for i in range(ROUND)))
    expected = {note_id: f"note {tag}-{i}" for i, note_id in enumerate(note_ids)}

    async def open_and_edit(note_id: str) -> Raw:
        async with gate:
            raw = await Raw.open(server.url, note_id, name=tag, expect_hello=False)
            raw.hello = await raw.next("hello", timeout=30)
            suffix = expected[note_id].removeprefix("note ")
            await raw.send({"type": "edit", "rev": raw.hello["rev"], "ref": uuid.uuid4().hex,
                            "delta": [{"retain": 5}, {"insert": suffix}]})
            ack = await raw.next("ack", timeout=20)
            assert ack["rev"] == raw.hello["rev"] + 1
            return raw

    sockets = await asyncio.gather(*(open_and_edit(note_id) for note_id in note_ids))
    assert await open_notes(http) >= ROUND

    async def close(raw: Raw) -> None:
        async with gate:
            await raw.close()

    await asyncio.gather(*(close(raw) for raw in sockets))
    unloaded = {"n": -1}

    async def poll() -> None:
        while unloaded["n"] != 0:
            unloaded["n"] = await open_notes(http)
            await asyncio.sleep(0.1)

    await asyncio.wait_for(poll(), 30)
    return expected


async def test_thousands_of_notes_opened_and_left_give_their_memory_back(database_url, sql):
    server = await asyncio.to_thread(ServerProcess(database_url, log_name="memory").start)
    try:
        assert server.process is not None
        pid = server.process.pid
        async with httpx.AsyncClient(base_url=server.url, timeout=30,
                                     limits=httpx.Limits(max_connections=PARALLEL)) as http:
            start = rss_mb(pid)
            first = await one_round(server, http, "w")
            warm = rss_mb(pid)
            second = await one_round(server, http, "m")
            end = rss_mb(pid)
        print(f"RSS: start {start:.1f} MB, after the warm-up {warm:.1f}, after round 2 {end:.1f}")
        assert end - warm <= RSS_SLACK_MB, (
            f"{ROUND} notes opened and unloaded kept {end - warm:.1f} MB "
            f"(start {start:.1f}, warm-up {warm:.1f}, end {end:.1f})")
        # Every note's edit was saved before its room went (the final save on unload).
        expected = {**first, **second}
        rows = await asyncio.to_thread(
            sql, "SELECT id::text, content FROM notes WHERE id = ANY(CAST(:ids AS uuid[]))",
            ids=list(expected))
        stored = {row.id: row.content for row in rows}
        wrong = [(i, stored.get(i), want) for i, want in expected.items() if stored.get(i) != want]
        assert not wrong, f"{len(wrong)} of {len(expected)} notes not saved: {wrong[:5]}"
    finally:
        await asyncio.to_thread(server.stop)
