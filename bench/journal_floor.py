"""The floor of a durable ack: the server's own commit path, without the server around it.

``python bench/journal_floor.py DATABASE_URL NOTE_ID COUNT`` prints JSON. It runs with the
server's code (the bench starts it with the server's PYTHONPATH, as it starts the server) on a
database the server migrated, in a process of its own on uvloop, one change at a time:

- ``append``: ``NoteStore.append_updates`` of one entry with its notification (the statement a
  group commit is, through the SQLAlchemy pool);
- ``journal``: ``Journal.write`` of one entry until its future is done (the journal's task hops
  around that statement): what an ack waits for when nothing else is going on.

A LISTEN connection on the channel is open meanwhile, as in a server (it ignores what it gets).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

# This checkout's server code, unless PYTHONPATH holds a --server-path copy (found first).
sys.path.append(str(Path(__file__).resolve().parent.parent))


async def measure(url: str, note_id: uuid.UUID, count: int) -> dict:
    import asyncpg

    from notes.collab.journal import Journal, LogEntry
    from notes.store.database import asyncpg_dsn, make_engine
    from notes.store.fanout import CHANNEL
    from notes.store.queries import NoteStore

    listener = await asyncpg.connect(asyncpg_dsn(url))
    await listener.add_listener(CHANNEL, lambda *args: None)
    engine = make_engine(url)
    store = NoteStore(engine)
    update = bytes(28)  # a keystroke's Yjs update is about this long (nothing applies these)

    async def append(entries) -> None:
        await store.append_updates(entries, announce=(CHANNEL, "journal-floor"))

    out: dict = {}
    try:
        for i in range(20):  # warm the pool and the prepared statements
            await append([LogEntry(note_id, update, f"warm:{i}")])
        lat = []
        for i in range(count):
            t0 = time.perf_counter_ns()
            await append([LogEntry(note_id, update, f"a:{i}")])
            lat.append(time.perf_counter_ns() - t0)
        out["append"] = lat
        journal = Journal(append)
        writer = asyncio.ensure_future(journal.run())
        lat = []
        for i in range(count):
            t0 = time.perf_counter_ns()
            await journal.write(LogEntry(note_id, update, f"j:{i}"))
            lat.append(time.perf_counter_ns() - t0)
        out["journal"] = lat
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        await listener.execute("DELETE FROM note_updates WHERE note_id = $1", note_id)
    finally:
        await listener.close()
        await engine.dispose()
    return out


def main() -> int:
    url, note_id, count = sys.argv[1], uuid.UUID(sys.argv[2]), int(sys.argv[3])
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(measure(url, note_id, count))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
