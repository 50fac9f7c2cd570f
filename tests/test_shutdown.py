"""Clean shutdown: a server stopped right after edits (before any debounced save) loses nothing."""

from __future__ import annotations

import asyncio
import random
import signal
from collections import Counter

import httpx
from conftest import ServerProcess
from live_helpers import (
    Fresh,
    RecordingClient,
    close_all,
    connect_all,
    create_note,
    type_randomly,
    wait_converged,
    yjs_text,
)

# No debounced save fires within these tests: only the shutdown flush can store the edits.
LAZY = {"NOTES_SAVE_DEBOUNCE": "60", "NOTES_SAVE_MAX_WAIT": "120"}


async def start_server(database_url: str, name: str) -> ServerProcess:
    return await asyncio.to_thread(ServerProcess(database_url, LAZY, log_name=name).start)


async def stop_server(process: ServerProcess, sig: int) -> int:
    return await asyncio.to_thread(process.stop, sig)


def assert_each_typed_once(text: str, fresh: list[Fresh]) -> None:
    typed = [char for f in fresh for char in f.used]
    counts = Counter(text)
    missing = set(typed) - set(counts)
    doubled = [char for char, n in counts.items() if n > 1]
    assert not missing and not doubled, (len(missing), doubled)
    assert sorted(counts) == sorted(typed)


async def test_sigterm_and_sigint_flush_everything(database_url, db):
    servers: list[ServerProcess] = []
    clients: list[RecordingClient] = []
    try:
        servers.append(await start_server(database_url, "shutdown-1"))
        async with httpx.AsyncClient(base_url=servers[0].url) as http:
            note_id = await create_note(http, content="")
        clients = await connect_all(servers[0].url, note_id, 2, cls=RecordingClient)
        fresh = [Fresh(20 + i) for i in range(len(clients))]
        rng = random.Random(11)

        for round_, sig in enumerate((signal.SIGTERM, signal.SIGINT)):
            running = servers[-1]
            # Edits the server has acknowledged...
            await asyncio.gather(*(type_randomly(c, random.Random(rng.random()), 30,
                                                 deletes=False, chars=fresh[i])
                                   for i, c in enumerate(clients)))
            for client in clients:
                await client.synced()
            acked_rev = max(c.rev for c in clients)
            before = await db.row(note_id)
            assert before.rev < acked_rev, "nothing was saved yet: the debounce is long"
            # ...and a few more still in flight when the signal arrives.
            for i, client in enumerate(clients):
                await type_randomly(client, rng, 3, deletes=False, chars=fresh[i])
            code = await stop_server(running, sig)
            assert code == 0, running.log()[-3000:]
            assert "could not be saved" not in running.log()

            # Everything the server acknowledged is stored.
            row = await db.row(note_id)
            assert row.rev >= acked_rev
            for client in clients:
                assert row.rev >= client.state.rev
                assert set(client.state.server_text) <= set(row.content)
            assert yjs_text(row.yjs_state) == row.content
            counts = Counter(row.content)
            assert set(counts.values()) == {1}, "nothing doubled"
            assert set(counts) <= {char for f in fresh for char in f.used}

            # A new server on the same database: GET and the reconnecting clients agree.
            restarted = await start_server(database_url, f"shutdown-{round_ + 2}")
            servers.append(restarted)
            async with httpx.AsyncClient(base_url=restarted.url) as http:
                stored = (await http.get(f"/notes/{note_id}")).json()
                assert (stored["content"], stored["rev"]) == (row.content, row.rev)
                for client in clients:
                    client.base_url = restarted.url  # the next reconnect attempt goes there
                text = await wait_converged(clients, timeout=20)
                assert_each_typed_once(text, fresh)
                live = (await http.get(f"/notes/{note_id}")).json()
                assert (live["content"], live["rev"]) == (text, clients[0].rev)
            for client in clients:
                # A new process numbers revisions anew: the clients rebased onto its text (no
                # `missed`), and the edits they resent were recognised by their refs.
                resumed = client.hellos[-1]
                assert "missed" not in resumed and resumed["epoch"] != client.hellos[0]["epoch"]
    finally:
        await close_all(clients)
        for process in servers:
            await stop_server(process, signal.SIGTERM)


async def test_shutdown_with_idle_connections_and_no_edits_is_quick(database_url):
    process = await start_server(database_url, "shutdown-idle")
    try:
        async with httpx.AsyncClient(base_url=process.url) as http:
            note_id = await create_note(http, content="quiet")
        client = await RecordingClient.connect(process.url, note_id, reconnect=False)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await stop_server(process, signal.SIGTERM) == 0
        assert loop.time() - started < 5
        await client.wait_for(lambda: not client.connected)
        assert client.closed_code == 1001
    finally:
        await stop_server(process, signal.SIGTERM)
