"""The listening connection of one instance is killed by PostgreSQL mid-typing: nothing is missed.

Two real server processes on one database. While clients on the first type, the second's LISTEN
connection is terminated (``pg_terminate_backend``); the updates stored while it was gone reach
it by the catch-up from the log, so its clients end with exactly the same text.
"""

from __future__ import annotations

import asyncio
import random
import signal

import httpx
from conftest import ServerProcess, wait_for
from live_helpers import Fresh, close_all, connect_all, create_note, type_randomly
from sqlalchemy import text


async def start(database_url: str, name: str) -> ServerProcess:
    return await asyncio.to_thread(ServerProcess(database_url, log_name=name).start)


async def listener_pids(db, server_pid: int) -> list[int]:
    async with db.engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT pid FROM pg_stat_activity WHERE application_name = :name"),
            {"name": f"notes-listen {server_pid}"})
        return [row.pid for row in rows]


async def test_a_terminated_listen_connection_misses_nothing(database_url, db):
    servers = [await start(database_url, "listen-a"), await start(database_url, "listen-b")]
    clients = []
    try:
        async with httpx.AsyncClient() as http:
            note_id = await create_note(httpx.AsyncClient(base_url=servers[0].url))
            health = (await http.get(servers[1].url + "/health")).json()["process"]
            writers = await connect_all(servers[0].url, note_id, 2)
            readers = await connect_all(servers[1].url, note_id, 2)
            clients = writers + readers
            fresh = [Fresh(40 + i) for i in range(len(clients))]
            (pid,) = await listener_pids(db, health["pid"])
            rng = random.Random(5)

            async def typing(rounds: int) -> None:
                for _ in range(rounds):
                    await asyncio.gather(*(type_randomly(c, rng, 3, deletes=False,
                                                         chars=fresh[i])
                                           for i, c in enumerate(clients)))
                    await asyncio.sleep(0.005)

            async def terminate_midway() -> None:
                await wait_for(lambda: len(fresh[0].used) >= 30, 10, "typing under way")
                async with db.engine.connect() as connection:
                    killed = (await connection.execute(
                        text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})).scalar_one()
                assert killed

            await asyncio.gather(typing(40), terminate_midway())
            # (revision numbers are per process: the texts must agree, and nothing be pending)
            await wait_for(lambda: len({c.text for c in clients}) == 1 and all(
                c.state.awaiting is None and c.state.buffer is None for c in clients), 20,
                "the clients of both instances to converge")
            converged = clients[0].text
            typed = [char for f in fresh for char in f.used]
            assert sorted(converged) == sorted(typed), "each typed character exactly once"
            after = (await http.get(servers[1].url + "/health")).json()["process"]
            assert after["listen_reconnects"] >= 1 and after["catch_ups"] >= 1
            assert await listener_pids(db, health["pid"]) not in ([], [pid])
            for server in servers:
                body = (await http.get(f"{server.url}/notes/{note_id}")).json()
                assert body["content"] == converged
    finally:
        await close_all(clients)
        for server in servers:
            await asyncio.to_thread(server.stop, signal.SIGTERM)
